//! Every setting of the detector, with the presets of METHOD.md.

use serde::Serialize;

use crate::{Error, Result};

/// `anovl` reproduces AnoVL's official computation; `product` adds visual references,
/// fusion and the synthesized-anomaly TTA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    Anovl,
    Product,
}

/// How images of a batch reference each other (METHOD.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Consecutive pairs (the paper's setting).
    Pairs,
    /// Every other image of the batch is a reference.
    Set,
}

/// Test-time adaptation (METHOD.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TtaMode {
    Off,
    /// AnoVL's adapter on pseudo-labels.
    Anovl,
    /// Linear adapter on synthesized anomalies.
    Synth,
}

/// AnoVL's two adapter flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// `tanh(W·x̂ + b)·E` (objects / MVTec).
    Tanh,
    /// `W·x̂ + b` (VisA).
    Linear,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TtaConfig {
    pub mode: TtaMode,
    pub adapter: AdapterKind,
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub noise_std: f32,
    /// AnoVL's quirk: keep AdamW state across the images of a class.
    pub keep_optimizer: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorConfig {
    pub preset: Preset,
    /// 1 (fast) or 22 (AnoVL's views for the image score).
    pub views: usize,
    pub pairing: Pairing,
    /// Fusion weight of the visual map: `M = (1−λ)·M_text + λ·M_vis`.
    pub lambda: f32,
    /// Ordinary-stream blocks (0-based) whose patch tokens join the V-V tokens for matching.
    pub ref_layers: Vec<usize>,
    /// Neighbourhood averaging of tokens before matching: 1 or 3.
    pub neighbourhood: usize,
    pub tta: TtaConfig,
    pub seed: u64,
}

/// The words each setting accepts, shared by the CLI (`--preset anovl`) and the browser
/// (`{preset: "anovl"}`); the error names the option by its key.
macro_rules! parse_words {
    ($type:ty, $option:literal, $($word:literal => $value:expr),+) => {
        impl std::str::FromStr for $type {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($word => Ok($value),)+
                    _ => Err(Error::Option {
                        option: $option.into(),
                        message: format!(
                            "`{s}` is not accepted; use one of {}",
                            [$($word),+].join(", ")
                        ),
                    }),
                }
            }
        }
    };
}

parse_words!(Preset, "preset", "anovl" => Preset::Anovl, "product" => Preset::Product);
parse_words!(Pairing, "pairing", "pairs" => Pairing::Pairs, "set" => Pairing::Set);
parse_words!(TtaMode, "tta", "off" => TtaMode::Off, "anovl" => TtaMode::Anovl,
    "synth" => TtaMode::Synth);
parse_words!(AdapterKind, "adapter", "tanh" => AdapterKind::Tanh,
    "linear" => AdapterKind::Linear);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_and_bad_words_name_the_option() {
        assert_eq!("anovl".parse::<Preset>().unwrap(), Preset::Anovl);
        assert_eq!("set".parse::<Pairing>().unwrap(), Pairing::Set);
        assert_eq!("synth".parse::<TtaMode>().unwrap(), TtaMode::Synth);
        assert_eq!(
            "linear".parse::<AdapterKind>().unwrap(),
            AdapterKind::Linear
        );
        let e = "fast".parse::<TtaMode>().unwrap_err().to_string();
        assert!(
            e.contains("`tta`") && e.contains("off, anovl, synth"),
            "{e}"
        );
    }
}
