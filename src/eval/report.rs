//! results.json and results.md: per class and the unweighted mean over classes, every metric
//! named with its variant, the FPR limit and the evaluation resolution.

use serde_json::{Map, Value, json};

use super::datasets::Skipped;
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
    std::array::from_fn(|k| {
        let defined: Vec<f64> = results.iter().filter_map(|r| values(r)[k]).collect();
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
        classes.insert(r.name.clone(), Value::Object(entry));
    }
    let mut mean = Map::new();
    let mut counts = Map::new();
    for ((key, _), (v, n)) in METRICS.iter().zip(means(report.results)) {
        mean.insert(key.to_string(), json!(v));
        counts.insert(key.to_string(), json!(n));
    }
    mean.insert("classes".into(), Value::Object(counts));
    json!({
        "categories": classes,
        "mean": mean,
        "settings": settings(&report.options),
        "run": report.run,
        "skipped": report.skipped.iter().map(|s| json!({"file": s.file, "reason": s.reason})).collect::<Vec<_>>(),
    })
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
    let means = means(report.results);
    md += "| **mean** | |";
    for (v, _) in means {
        md += &format!(" **{}** |", cell(v));
    }
    md += "\n| classes in the mean | |";
    for (_, n) in means {
        md += &format!(" {n} |");
    }
    md += "\n";
    if !report.skipped.is_empty() {
        md += &format!("\n## Skipped ({})\n\n", report.skipped.len());
        for s in report.skipped {
            md += &format!("- `{}`: {}\n", s.file, s.reason);
        }
    }
    md
}
