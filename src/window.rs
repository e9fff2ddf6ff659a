//! Intensity windows: how stored values wider than 8 bits (16-bit TIFF/PNG, DICOM, NIfTI)
//! become the 0–255 grey levels the model sees, as a radiologist's viewer would show them.
//!
//! One representation for every source: a DICOM VOI window (centre, width and the VOI LUT
//! function of PS3.3 C.11.2.1.2–3). A percentile window is the `LINEAR_EXACT` window whose
//! ends are the two percentiles; a window typed by the user is a DICOM `LINEAR` window, as in
//! every DICOM viewer. A DICOM file may give its VOI as a lookup table instead ([`VoiLut`]).
//! The window used is recorded with each result ([`AppliedWindow`]).

use std::sync::Arc;

use serde::Serialize;
use serde::ser::SerializeStruct;

use crate::error::{Error, Result};

/// The percentiles an automatic window spans. The 0.5th and 99.5th: stored ranges rarely
/// match the content (12-bit data in 16-bit words, CT padding at −2048, a few hot pixels), so
/// neither the type's range (a dark image) nor min–max (set by one outlier) shows the anatomy;
/// clipping 0.5 % at each end ignores such outliers while keeping the tissue contrast. It is
/// the intensity clipping nnU-Net applies to CT, the common default of medical segmentation.
pub const AUTO_PERCENTILES: (f64, f64) = (0.5, 99.5);

/// The VOI LUT function (DICOM VOILUTFunction) that maps a value through a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoiFunction {
    /// DICOM's default: a ramp from `centre − 0.5 − (width − 1)/2` to `centre − 0.5 + (width − 1)/2`.
    Linear,
    /// A ramp from `centre − width/2` to `centre + width/2`.
    LinearExact,
    /// `1 / (1 + exp(−4 (x − centre) / width))`.
    Sigmoid,
}

/// A window: which stored (modality-scaled) values map to black, grey and white.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub centre: f64,
    pub width: f64,
    pub function: VoiFunction,
}

impl Window {
    /// The `LINEAR_EXACT` window from `low` (black) to `high` (white).
    pub fn from_range(low: f64, high: f64) -> Self {
        Window {
            centre: (low + high) / 2.0,
            width: high - low,
            function: VoiFunction::LinearExact,
        }
    }

    /// `x` through the window, in [0, 1] (PS3.3 C.11.2.1.2–3 with y_min = 0, y_max = 1).
    pub fn apply(&self, x: f64) -> f64 {
        let (c, w) = (self.centre, self.width);
        let (low, high) = match self.function {
            VoiFunction::Sigmoid => return 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
            VoiFunction::Linear => (c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0),
            VoiFunction::LinearExact => (c - w / 2.0, c + w / 2.0),
        };
        if x <= low {
            0.0
        } else if x > high {
            1.0
        } else {
            (x - low) / (high - low)
        }
    }

    /// `x` through the window as an 8-bit grey level.
    pub fn to_u8(&self, x: f64) -> u8 {
        (self.apply(x) * 255.0).round() as u8
    }
}

/// A DICOM VOI LUT (PS3.3 C.11.2.1.1, VOI LUT Sequence item): value `first_mapped + i` maps to
/// `table[i]`, values below `first_mapped` to the first entry, values past the last to the
/// last; entries span `0..=2^bits − 1`. Written into results as its size and place only
/// (`{"function": "LUT", "entries", "first_mapped", "bits"}`), never the table.
#[derive(Clone, PartialEq)]
pub struct VoiLut {
    pub first_mapped: i32,
    /// The LUT Descriptor's bits per entry (1–16): the output range, whatever the entries hold.
    pub bits: u8,
    /// Shared: a file's LUT is cloned into every frame's window.
    pub table: Arc<[u16]>,
}

impl VoiLut {
    /// `x` through the table, in [0, 1]. A value between two inputs takes the lower one's
    /// entry (pydicom's `apply_voi` truncates the same way).
    pub fn apply(&self, x: f64) -> f64 {
        let last = self.table.len().saturating_sub(1);
        let offset = (x - f64::from(self.first_mapped)).floor();
        // NaN and values below the first input take the first entry.
        let index = if offset >= 0.0 {
            (offset as usize).min(last)
        } else {
            0
        };
        let top = f64::from((1u32 << self.bits) - 1);
        let entry = self.table.get(index).copied().unwrap_or(0);
        (f64::from(entry) / top).min(1.0)
    }
}

impl std::fmt::Debug for VoiLut {
    /// The table's size and place, not its entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiLut")
            .field("entries", &self.table.len())
            .field("first_mapped", &self.first_mapped)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl Serialize for VoiLut {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("VoiLut", 4)?;
        s.serialize_field("function", "LUT")?;
        s.serialize_field("entries", &self.table.len())?;
        s.serialize_field("first_mapped", &self.first_mapped)?;
        s.serialize_field("bits", &self.bits)?;
        s.end()
    }
}

/// A VOI transformation: a window, or a DICOM file's lookup table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Voi {
    Window(Window),
    Lut(VoiLut),
}

impl Voi {
    /// `x` through the window or table, in [0, 1].
    pub fn apply(&self, x: f64) -> f64 {
        match self {
            Voi::Window(window) => window.apply(x),
            Voi::Lut(lut) => lut.apply(x),
        }
    }

    /// `x` through the window or table as an 8-bit grey level.
    pub fn to_u8(&self, x: f64) -> u8 {
        (self.apply(x) * 255.0).round() as u8
    }

    /// The window, where this is one.
    pub fn as_window(&self) -> Option<&Window> {
        match self {
            Voi::Window(window) => Some(window),
            Voi::Lut(_) => None,
        }
    }
}

impl From<Window> for Voi {
    fn from(window: Window) -> Self {
        Voi::Window(window)
    }
}

/// A window and where it came from, as written into the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedWindow {
    #[serde(flatten)]
    pub window: Voi,
    /// `"percentile 0.5-99.5"`, `"file 1 of 2"`, `"file VOI LUT 1 of 3"`, `"preset lung"` or
    /// `"given"`. For a DICOM file's own, N in "N of T" is the `--window file:N` that picks it.
    pub source: String,
}

/// The window a user asks for; [`WindowChoice::Auto`] unless one is given.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum WindowChoice {
    /// A DICOM file's first VOI (its first VOI LUT, else its first window), else the
    /// [`AUTO_PERCENTILES`] window.
    #[default]
    Auto,
    /// The [`AUTO_PERCENTILES`] window even where the file has its own.
    Percentile,
    /// A DICOM file's VOI by 1-based index: its VOI LUTs first, then its windows.
    File(usize),
    /// A CT preset ([`CT_PRESETS`]), in Hounsfield units.
    Preset(&'static str, Window),
    /// Centre and width given by the user.
    Given(Window),
}

/// The usual CT windows (centre, width in HU), as radiology departments and viewers name them.
pub const CT_PRESETS: [(&str, f64, f64); 4] = [
    ("brain", 40.0, 80.0),
    ("lung", -600.0, 1500.0),
    ("abdomen", 40.0, 400.0),
    ("bone", 400.0, 1800.0),
];

impl WindowChoice {
    /// Parses `auto`, `percentile`, `file`, `file:N`, a CT preset name, or `CENTRE,WIDTH`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = |why: &str| Error::Option {
            option: "window".into(),
            message: format!(
                "{text:?}: {why}; give auto, percentile, file, file:N (the file's N-th window), \
                 one of {} or CENTRE,WIDTH (e.g. 40,400)",
                CT_PRESETS.map(|p| p.0).join(", ")
            ),
        };
        if let Some(&(name, c, w)) = CT_PRESETS.iter().find(|p| p.0 == text) {
            return Ok(WindowChoice::Preset(name, linear(c, w)));
        }
        match text {
            "auto" => return Ok(WindowChoice::Auto),
            "percentile" => return Ok(WindowChoice::Percentile),
            "file" => return Ok(WindowChoice::File(1)),
            _ => {}
        }
        if let Some(index) = text.strip_prefix("file:") {
            return match index.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(WindowChoice::File(n)),
                _ => Err(bad("the file's windows are numbered from 1")),
            };
        }
        let Some((c, w)) = text.split_once(',') else {
            return Err(bad("not a window"));
        };
        match (c.trim().parse::<f64>(), w.trim().parse::<f64>()) {
            (Ok(c), Ok(w)) if c.is_finite() && w.is_finite() && w >= 1.0 => {
                Ok(WindowChoice::Given(linear(c, w)))
            }
            (Ok(_), Ok(_)) => Err(bad("the width must be at least 1")),
            _ => Err(bad("CENTRE and WIDTH must be numbers")),
        }
    }

    /// The window this choice fixes without looking at the data, with its source.
    pub fn fixed(&self) -> Option<AppliedWindow> {
        match *self {
            WindowChoice::Preset(name, window) => Some(AppliedWindow {
                window: window.into(),
                source: format!("preset {name}"),
            }),
            WindowChoice::Given(window) => Some(AppliedWindow {
                window: window.into(),
                source: "given".into(),
            }),
            _ => None,
        }
    }
}

fn linear(centre: f64, width: f64) -> Window {
    Window {
        centre,
        width,
        function: VoiFunction::Linear,
    }
}

/// The [`AUTO_PERCENTILES`] window of `values` (NaN ignored), or `None` when no value is
/// finite. Percentiles interpolate linearly between order statistics, as numpy's default.
/// Reorders `values`.
pub fn percentile_window(values: &mut [f32]) -> Option<AppliedWindow> {
    let mut finite = 0;
    for i in 0..values.len() {
        if values[i].is_finite() {
            values.swap(finite, i);
            finite += 1;
        }
    }
    let values = &mut values[..finite];
    if values.is_empty() {
        return None;
    }
    let (p_low, p_high) = AUTO_PERCENTILES;
    let low = percentile(values, p_low);
    let high = percentile(values, p_high);
    Some(AppliedWindow {
        window: Window::from_range(low, high).into(),
        source: format!("percentile {p_low}-{p_high}"),
    })
}

/// numpy's `percentile(values, p)` (method "linear") by selection, not a full sort.
fn percentile(values: &mut [f32], p: f64) -> f64 {
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let below = rank.floor() as usize;
    let fraction = rank - below as f64;
    let (_, &mut lo, above) = values.select_nth_unstable_by(below, f32::total_cmp);
    let lo = f64::from(lo);
    if fraction == 0.0 || above.is_empty() {
        return lo;
    }
    let hi = f64::from(
        *above
            .iter()
            .min_by(|a, b| a.total_cmp(b))
            .expect("not empty"),
    );
    lo + (hi - lo) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_dicom_c_11_2_1_2() {
        // Centre 40, width 80: x ≤ 0 → 0, x > 79 → 1, a ramp in between.
        let w = linear(40.0, 80.0);
        assert_eq!(w.apply(0.0), 0.0);
        assert_eq!(w.apply(79.5), 1.0);
        assert!((w.apply(39.5) - 0.5).abs() < 1e-12);
        assert_eq!(w.to_u8(-1000.0), 0);
        assert_eq!(w.to_u8(1000.0), 255);
        let exact = Window::from_range(10.0, 20.0);
        assert_eq!(exact.apply(15.0), 0.5);
        let sigmoid = Window {
            function: VoiFunction::Sigmoid,
            ..exact
        };
        assert_eq!(sigmoid.apply(15.0), 0.5);
    }

    #[test]
    fn voi_lut_follows_dicom_c_11_2_1_1_and_serializes_without_its_table() {
        // Inputs 10, 11, 12 → 0, 2, 3 of 0..=3 (2 bits); below → first, above → last.
        let lut = Voi::Lut(VoiLut {
            first_mapped: 10,
            bits: 2,
            table: vec![0, 2, 3].into(),
        });
        let cases = [
            (-5.0, 0.0),
            (10.0, 0.0),
            (11.0, 2.0 / 3.0),
            (11.9, 2.0 / 3.0),
        ];
        for (x, want) in cases
            .into_iter()
            .chain([(12.0, 1.0), (1e9, 1.0), (f64::NAN, 0.0)])
        {
            assert_eq!(lut.apply(x), want, "{x}");
        }
        let applied = AppliedWindow {
            window: lut,
            source: "file VOI LUT 1 of 1".into(),
        };
        assert_eq!(
            serde_json::to_value(&applied).unwrap(),
            serde_json::json!({"function": "LUT", "entries": 3, "first_mapped": 10, "bits": 2,
                "source": "file VOI LUT 1 of 1"})
        );
        let window = AppliedWindow {
            window: linear(40.0, 400.0).into(),
            source: "given".into(),
        };
        assert_eq!(
            serde_json::to_value(&window).unwrap(),
            serde_json::json!({"centre": 40.0, "width": 400.0, "function": "LINEAR",
                "source": "given"})
        );
    }

    #[test]
    fn percentiles_match_numpy_linear_interpolation() {
        // numpy.percentile(arange(1, 201), [0.5, 99.5]) == [1.995, 199.005]
        let mut values: Vec<f32> = (1..=200).rev().map(|v| v as f32).collect();
        values.push(f32::NAN);
        let applied = percentile_window(&mut values).expect("finite values");
        let w = applied.window.as_window().expect("a window");
        assert!((w.centre - w.width / 2.0 - 1.995).abs() < 1e-9);
        assert!((w.centre + w.width / 2.0 - 199.005).abs() < 1e-9);
        assert!(percentile_window(&mut [f32::NAN]).is_none());
    }

    #[test]
    fn choices_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(WindowChoice::parse("auto").unwrap(), WindowChoice::Auto);
        assert_eq!(
            WindowChoice::parse("file:2").unwrap(),
            WindowChoice::File(2)
        );
        assert_eq!(
            WindowChoice::parse("40, 400").unwrap(),
            WindowChoice::Given(linear(40.0, 400.0))
        );
        let lung = WindowChoice::parse("lung").unwrap().fixed().unwrap();
        assert_eq!(
            (
                lung.window.as_window().unwrap().centre,
                lung.source.as_str()
            ),
            (-600.0, "preset lung")
        );
        for bad in ["file:0", "40", "40,0", "x,y", "soft"] {
            let Err(Error::Option { option, message }) = WindowChoice::parse(bad) else {
                panic!("{bad} accepted");
            };
            assert_eq!(option, "window");
            assert!(message.contains("CENTRE,WIDTH"), "{message}");
        }
    }
}
