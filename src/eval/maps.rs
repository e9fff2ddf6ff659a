//! Evaluating anomaly maps of any method stored as `.npy` files: one float32 map per test
//! image at `<maps>/<class>/<split>/<defect>/<stem>.npy`, any resolution. The image score
//! is, in order: the score the caller gives (the detector's), a `scores.json` beside the
//! maps (`duoclip score`'s format, or `{"<stem>": score}`), else the map's maximum.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::datasets::{Dataset, Mask, Sample, Skipped, load_mask};
use super::decisions::{ClassCalibration, ClassDecisions, DecisionCounts};
use super::{ClassAccumulator, ClassMetrics, Grid, eval_grid, resize_map, resize_mask};
use crate::decide::Thresholds;
use crate::{Error, Result};

/// How maps become metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Short side of the evaluation grid; `None`: each map's own size.
    pub eval_size: Option<usize>,
    /// FPR limit of both AUPRO variants (METHOD.md: 0.3).
    pub fpr_limit: f64,
}

/// One class's metrics and the grids it was evaluated on.
#[derive(Debug, Clone)]
pub struct ClassResult {
    pub name: String,
    pub metrics: ClassMetrics,
    /// Distinct evaluation grids (width, height) seen in this class.
    pub grids: Vec<(usize, usize)>,
    /// With calibrated thresholds (`eval --decide`): what the decisions give.
    pub decisions: Option<ClassDecisions>,
}

/// Scores given by the caller, keyed by the map's path below the maps folder.
pub type GivenScores = HashMap<PathBuf, f32>;

/// Metrics of every class of `dataset` from the maps under `maps`. Images whose map is
/// missing or unusable are added to `skipped` (the file named) and left out; with `given`
/// scores, an image without one was left out by whoever scored (and reported it there).
/// `on_image` is called once per image considered. Classes named in `calibrations` are also
/// decided on with their thresholds.
pub fn evaluate(
    dataset: &Dataset,
    maps: &Path,
    given: Option<&GivenScores>,
    calibrations: &BTreeMap<String, ClassCalibration>,
    options: EvalOptions,
    skipped: &mut Vec<Skipped>,
    mut on_image: impl FnMut(),
) -> Result<Vec<ClassResult>> {
    let mut score_files = ScoreFiles::default();
    let mut results = Vec::new();
    for category in &dataset.categories {
        let mut acc = ClassAccumulator::new(category.pixel_level);
        let calibration = calibrations.get(&category.name);
        let mut decisions = calibration.map(|c| (DecisionCounts::new(category.pixel_level), c));
        let mut grids = Vec::new();
        for sample in &category.samples {
            on_image();
            let rel = sample.map_path(&category.name, &dataset.split);
            if given.is_some_and(|g| !g.contains_key(&rel)) {
                continue; // the scorer left it out and said why
            }
            let path = maps.join(&rel);
            let outcome = read_map(&path).and_then(|(map, w, h)| {
                let score = match given.and_then(|g| g.get(&rel)) {
                    Some(s) => *s,
                    None => score_files
                        .score(&path, &sample.stem)?
                        .unwrap_or_else(|| map.iter().copied().fold(f32::NEG_INFINITY, f32::max)),
                };
                let decide = decisions
                    .as_mut()
                    .map(|(counts, c)| (counts, &c.thresholds));
                add_image(
                    &mut acc,
                    decide,
                    sample,
                    score,
                    &map,
                    (w, h),
                    options.eval_size,
                )
                .map_err(|reason| Error::Image {
                    path: path.display().to_string(),
                    message: reason,
                })
            });
            match outcome {
                Ok(Some(grid)) if !grids.contains(&grid) => grids.push(grid),
                Ok(_) => {}
                Err(e) => skipped.push(Skipped {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                }),
            }
        }
        results.push(ClassResult {
            name: category.name.clone(),
            metrics: acc.finish(options.fpr_limit),
            grids,
            decisions: decisions.map(|(counts, c)| ClassDecisions {
                calibration: c.clone(),
                metrics: counts.finish(),
            }),
        });
    }
    Ok(results)
}

/// Adds one image on its evaluation grid (and to the decision counts, with thresholds);
/// returns the grid (pixel-level classes).
fn add_image(
    acc: &mut ClassAccumulator,
    decide: Option<(&mut DecisionCounts, &Thresholds)>,
    sample: &Sample,
    score: f32,
    map: &[f32],
    (w, h): (usize, usize),
    eval_size: Option<usize>,
) -> std::result::Result<Option<(usize, usize)>, String> {
    let (gw, gh) = eval_grid(w, h, eval_size);
    let mask = match &sample.mask {
        Mask::None => {
            acc.add(score, sample.anomalous, None)?;
            if let Some((counts, t)) = decide {
                counts.add(t, score, sample.anomalous, None);
            }
            return Ok(None);
        }
        Mask::Normal => vec![false; gw * gh],
        Mask::File(path) => {
            let (mask, mw, mh) = load_mask(path).map_err(|e| e.to_string())?;
            resize_mask(&mask, mw, mh, gw, gh)
        }
    };
    let map = resize_map(map, w, h, gw, gh);
    let grid = Grid {
        map: &map,
        mask: &mask,
        width: gw,
        height: gh,
    };
    acc.add(score, sample.anomalous, Some(grid))?;
    if let Some((counts, t)) = decide {
        counts.add(t, score, sample.anomalous, Some((&map, &mask)));
    }
    Ok(Some((gw, gh)))
}

/// A float32 `.npy` map, shape `[h, w]` or `[1, h, w]`. Returns (values, width, height).
pub fn read_map(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bad = |message: String| Error::Image {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("no map for this image (expected this file)".into()),
        _ => Error::io(path.display(), e),
    })?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let (h, w) = match *npy.shape() {
        [h, w] | [1, h, w] if h > 0 && w > 0 => (h as usize, w as usize),
        ref shape => {
            return Err(bad(format!(
                "map shape {shape:?}; expected [height, width]"
            )));
        }
    };
    let values = npy
        .into_vec::<f32>()
        .map_err(|e| bad(format!("map must be float32 ({e})")))?;
    Ok((values, w, h))
}

/// `scores.json` files beside the maps, read once per folder.
#[derive(Default)]
struct ScoreFiles {
    folders: HashMap<PathBuf, Option<HashMap<String, f32>>>,
}

impl ScoreFiles {
    fn score(&mut self, map: &Path, stem: &str) -> Result<Option<f32>> {
        let folder = map.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !self.folders.contains_key(&folder) {
            let file = folder.join("scores.json");
            let parsed = if file.is_file() {
                Some(read_scores(&file)?)
            } else {
                None
            };
            self.folders.insert(folder.clone(), parsed);
        }
        Ok(self.folders[&folder]
            .as_ref()
            .and_then(|s| s.get(stem).copied()))
    }
}

/// Stem → score from `duoclip score`'s `{"images":[{"file","score","map"}]}` or a plain
/// `{"<stem>": score}` object.
fn read_scores(file: &Path) -> Result<HashMap<String, f32>> {
    let bad = |message: String| Error::Image {
        path: file.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file.display(), e))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let stem_of = |s: &str| {
        Path::new(s)
            .file_stem()
            .map(|x| x.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let mut out = HashMap::new();
    match &doc {
        Value::Object(o) if o.contains_key("images") => {
            for (i, entry) in o["images"].as_array().into_iter().flatten().enumerate() {
                let name = entry["map"].as_str().or(entry["file"].as_str());
                match (name, entry["score"].as_f64()) {
                    (Some(n), Some(s)) => out.insert(stem_of(n), s as f32),
                    _ => {
                        return Err(bad(format!(
                            "images[{i}] needs \"map\" (or \"file\") and a numeric \"score\""
                        )));
                    }
                };
            }
        }
        Value::Object(o) => {
            for (stem, v) in o {
                let s = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("key `{stem}`: score must be a number")))?;
                out.insert(stem.clone(), s as f32);
            }
        }
        _ => {
            return Err(bad(
                "expected {\"images\": [...]} or {\"<stem>\": score}".into()
            ));
        }
    }
    Ok(out)
}
