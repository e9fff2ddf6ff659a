//! results.json and results.md: per class and the unweighted mean over classes, every metric
//! named with its variant, the FPR limit and the evaluation resolution.

use serde_json::{Map, Value, json};

use super::datasets::Skipped;
use super::decisions::DecisionMetrics;
use super::maps::{ClassResult, EvalOptions};

/// The metric keys of results.json, in table order, with their column titles.
pub const METRICS: [(&str, &str); 8] = [
    ("image_auroc", "I-AUROC"),
    ("image_ap", "I-AP"),
    ("image_f1max", "I-F1max"),
    ("pixel_auroc", "P-AUROC"),
    ("pixel_ap", "P-AP"),
    ("pixel_f1max", "P-F1max"),
    ("aupro", "AUPRO"),
    ("aupro_fast", "AUPRO-fast"),
];

/// The decision metrics (`eval --decide`) averaged over classes, keyed in results.json's
/// `mean.decisions`, with their column titles.
pub const DECISION_METRICS: [(&str, &str); 7] = [
    ("image_precision", "I-precision"),
    ("image_recall", "I-recall"),
    ("image_precision_with_uncertain", "I-precision (+uncertain)"),
    ("image_recall_with_uncertain", "I-recall (+uncertain)"),
    ("pixel_precision", "P-precision"),
    ("pixel_recall", "P-recall"),
    ("pixel_f1", "P-F1"),
];

fn decision_values(m: &DecisionMetrics) -> [Option<f64>; 7] {
    let p = m.pixel.as_ref();
    [
        m.image.precision,
        m.image.recall,
        m.image_or_uncertain.precision,
        m.image_or_uncertain.recall,
        p.and_then(|p| p.precision),
        p.and_then(|p| p.recall),
        p.and_then(|p| p.f1),
    ]
}

/// What was evaluated, for the report's header.
pub struct Report<'a> {
    pub results: &'a [ClassResult],
    pub options: EvalOptions,
    pub skipped: &'a [Skipped],
    /// Layout, split, data folder, method settings: copied into results.json as `run`.
    pub run: Value,
}

fn values(r: &ClassResult) -> [Option<f64>; 8] {
    let m = &r.metrics;
    let p = m.pixel.as_ref();
    [
        m.image.auroc,
        m.image.ap,
        m.image.f1max,
        p.and_then(|p| p.binary.auroc),
        p.and_then(|p| p.binary.ap),
        p.and_then(|p| p.binary.f1max),
        p.and_then(|p| p.aupro),
        p.and_then(|p| p.aupro_fast),
    ]
}

/// Unweighted mean over the classes where each metric is defined, and how many those are.
fn means(results: &[ClassResult]) -> [(Option<f64>, usize); 8] {
    mean_of(&results.iter().map(values).collect::<Vec<_>>())
}

/// The decision metrics' means over the classes decided on (`None` without `--decide`).
fn decision_means(results: &[ClassResult]) -> Option<[(Option<f64>, usize); 7]> {
    let rows: Vec<[Option<f64>; 7]> = results
        .iter()
        .filter_map(|r| r.decisions.as_ref())
        .map(|d| decision_values(&d.metrics))
        .collect();
    (!rows.is_empty()).then(|| mean_of(&rows))
}

/// Column by column: the unweighted mean of the defined values, and how many those are.
fn mean_of<const N: usize>(rows: &[[Option<f64>; N]]) -> [(Option<f64>, usize); N] {
    std::array::from_fn(|k| {
        let defined: Vec<f64> = rows.iter().filter_map(|r| r[k]).collect();
        let mean =
            (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
        (mean, defined.len())
    })
}

fn settings(options: &EvalOptions) -> Value {
    json!({
        "evaluation_resolution": resolution(options),
        "fpr_limit": options.fpr_limit,
        "smoothing": "none",
        "mask_resize": "nearest neighbour at pixel centres (stays binary; non-zero = anomalous)",
        "map_resize": "bilinear, align_corners = true (as the detector upsamples)",
        "connectivity": 8,
        "aupro": format!("MVTec AD reference: exact PRO curve (one point per distinct score), trapezoid area up to FPR {} with PRO interpolated there, divided by {}", options.fpr_limit, options.fpr_limit),
        "aupro_fast": format!("AnoVL/cflow: 200 thresholds over [min, max) of the class's maps, points with FPR < {} kept, FPRs min-max rescaled to [0, 1], trapezoid area", options.fpr_limit),
        "image_ap": "average precision (scikit-learn average_precision_score)",
        "f1max": "max over the precision-recall curve of 2PR/(P+R)",
        "mean": "unweighted mean over the classes where the metric is defined",
    })
}

fn resolution(options: &EvalOptions) -> String {
    match options.eval_size {
        None => "each map's own grid (for the detector: the model input size)".into(),
        Some(s) => format!("{s} pixels on the short side, the map's aspect kept"),
    }
}

pub fn results_json(report: &Report<'_>) -> Value {
    let mut classes = Map::new();
    for r in report.results {
        let mut entry = Map::new();
        for ((key, _), v) in METRICS.iter().zip(values(r)) {
            entry.insert(key.to_string(), json!(v));
        }
        let m = &r.metrics;
        entry.insert("images".into(), json!(m.images));
        entry.insert("anomalous_images".into(), json!(m.anomalous_images));
        if let Some(p) = &m.pixel {
            entry.insert("pixels".into(), json!(p.pixels));
            entry.insert("anomalous_pixels".into(), json!(p.anomalous_pixels));
            entry.insert("regions".into(), json!(p.regions));
            entry.insert("evaluation_grids".into(), json!(r.grids));
        }
        if let Some(d) = &r.decisions {
            entry.insert("decisions".into(), json!(d));
        }
        classes.insert(r.name.clone(), Value::Object(entry));
    }
    let mut mean = mean_json(&METRICS, &means(report.results));
    if let Some(means) = decision_means(report.results) {
        let decisions = mean_json(&DECISION_METRICS, &means);
        mean.insert("decisions".into(), Value::Object(decisions));
    }
    json!({
        "categories": classes,
        "mean": mean,
        "settings": settings(&report.options),
        "run": report.run,
        "skipped": report.skipped.iter().map(|s| json!({"file": s.file, "reason": s.reason})).collect::<Vec<_>>(),
    })
}

/// Each metric's mean by its key, and under `classes` how many classes it is defined on.
fn mean_json(metrics: &[(&str, &str)], means: &[(Option<f64>, usize)]) -> Map<String, Value> {
    let mut mean = Map::new();
    let mut counts = Map::new();
    for ((key, _), (v, n)) in metrics.iter().zip(means) {
        mean.insert(key.to_string(), json!(v));
        counts.insert(key.to_string(), json!(n));
    }
    mean.insert("classes".into(), Value::Object(counts));
    mean
}

/// `24×24 (widget), 48×48 (tile)`: each grid used with its classes; `None` without masks.
fn grids_used(results: &[ClassResult]) -> Option<String> {
    let mut grids: Vec<((usize, usize), Vec<&str>)> = Vec::new();
    for r in results {
        for g in &r.grids {
            match grids.iter_mut().find(|(seen, _)| seen == g) {
                Some((_, classes)) => classes.push(&r.name),
                None => grids.push((*g, vec![&r.name])),
            }
        }
    }
    let parts: Vec<String> = grids
        .iter()
        .map(|((w, h), classes)| format!("{w}×{h} ({})", classes.join(", ")))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2}", 100.0 * v))
}

pub fn results_markdown(report: &Report<'_>) -> String {
    let o = &report.options;
    let mut md = String::from("# Evaluation results\n\n");
    if let Some(run) = report.run.as_object() {
        for (k, v) in run {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            md += &format!("- {k}: `{v}`\n");
        }
    }
    md += &format!(
        "- evaluation resolution: {}; masks resized nearest-neighbour (binary), maps bilinear \
         (align_corners); no smoothing\n",
        resolution(o)
    );
    if let Some(grids) = grids_used(report.results) {
        md += &format!("- evaluation grids (width×height): {grids}\n");
    }
    md += &format!(
        "- AUPRO = MVTec AD reference (exact curve, FPR limit {0}, PRO interpolated at {0}, \
         ÷ {0}); AUPRO-fast = AnoVL/cflow (200 thresholds, FPR < {0}, FPRs rescaled to [0,1]); \
         both over 8-connected regions\n",
        o.fpr_limit
    );
    md += "- AP = average precision (sklearn); F1max = max 2PR/(P+R) over the PR curve; \
           pixel metrics pool all pixels of a class; mean = unweighted over classes; \
           values in %; – = undefined (one class only, or no masks)\n\n";
    md += "| class | images (anomalous) |";
    for (_, title) in METRICS {
        md += &format!(" {title} |");
    }
    md += "\n|---|---|";
    md += &"---|".repeat(METRICS.len());
    md += "\n";
    for r in report.results {
        md += &format!(
            "| {} | {} ({}) |",
            r.name, r.metrics.images, r.metrics.anomalous_images
        );
        for v in values(r) {
            md += &format!(" {} |", cell(v));
        }
        md += "\n";
    }
    md += &mean_rows("| |", &means(report.results));
    if let Some(means) = decision_means(report.results) {
        md += &decisions_markdown(report.results, means);
    }
    if !report.skipped.is_empty() {
        md += &format!("\n## Skipped ({})\n\n", report.skipped.len());
        for s in report.skipped {
            md += &format!("- `{}`: {}\n", s.file, s.reason);
        }
    }
    md
}

/// The `--decide` table: each class's thresholds, verdicts and decision metrics, then means.
fn decisions_markdown(results: &[ClassResult], means: [(Option<f64>, usize); 7]) -> String {
    let mut md = String::from(
        "\n## Decisions (calibrated thresholds)\n\n\
         - thresholds: split conformal on each class's known-good training images, scored each \
         against the others; verdict `anomalous` when score > threshold + band, `ok` when \
         < threshold − band, else `uncertain`\n\
         - I-precision/I-recall count `anomalous` verdicts only; (+uncertain) counts \
         `uncertain` as anomalous too; P-* = map > pixel threshold against the masks, on the \
         evaluation grid; verdicts as anomalous/uncertain/ok; values in %; – = undefined\n\n\
         | class | calibration images | image threshold ± band | pixel threshold | false-alarm bound | \
         verdicts on anomalous | on normal |",
    );
    for (_, title) in DECISION_METRICS {
        md += &format!(" {title} |");
    }
    md += "\n|---|---|---|---|---|---|---|";
    md += &"---|".repeat(DECISION_METRICS.len());
    md += "\n";
    for r in results {
        let Some(d) = &r.decisions else { continue };
        let t = &d.calibration.thresholds;
        let v = &d.metrics.verdicts;
        let tally =
            |t: &super::decisions::Tally| format!("{}/{}/{}", t.anomalous, t.uncertain, t.ok);
        md += &format!(
            "| {} | {} | {:.4} ± {:.1e} | {:.4} | {:.4} | {} | {} |",
            r.name,
            t.good.count,
            t.image,
            t.band,
            t.pixel,
            t.bound,
            tally(&v.anomalous_images),
            tally(&v.normal_images)
        );
        for v in decision_values(&d.metrics) {
            md += &format!(" {} |", cell(v));
        }
        md += "\n";
    }
    md + &mean_rows("| | | | | | |", &means)
}

/// The table's `mean` row and the number of classes in each mean; `blank` fills the columns
/// between the first and the metrics.
fn mean_rows(blank: &str, means: &[(Option<f64>, usize)]) -> String {
    let mut md = format!("| **mean** {blank}");
    for (v, _) in means {
        md += &format!(" **{}** |", cell(*v));
    }
    md += &format!("\n| classes in the mean {blank}");
    for (_, n) in means {
        md += &format!(" {n} |");
    }
    md + "\n"
}
