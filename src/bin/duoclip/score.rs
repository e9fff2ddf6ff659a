//! `duoclip score`: anomaly maps and scores for a batch of images.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::Args;
use duoclip::detect::config::{DetectorConfig, Pairing};
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::image::RgbImage;
use duoclip::prompts::Domain;
use duoclip::{Error, Result, overlay};
use serde_json::json;

use crate::detector_args::{Anchors, DetectorArgs, decode_all};
use crate::model_args::ModelArgs;
use crate::output::{progress, safe_name, write_json, write_npy, write_png};

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    detector: DetectorArgs,
    /// Output folder: scores.json, <stem>.npy (float32 map), <stem>.png (overlay).
    #[arg(long)]
    out: PathBuf,
    /// The images to score (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let domain = args.detector.domain(None)?;
    let object = args.detector.object(&domain, None)?;
    // Every image is decoded before the model loads: a bad file fails in a second, not a minute.
    let limits = args.detector.image_limits();
    let images = decode_all(&args.images, &limits)?;
    let references = decode_all(&args.detector.references, &limits)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(args.out.display(), e))?;
    let model = args.model.load()?;
    let config = args.detector.config(model.clip.vision.blocks.len());
    let anchors = Anchors::new(&model.path)?.get(&model.clip, &model.device, &domain, &object)?;
    let detector = Detector::new(model.clip, anchors, config.clone(), model.device)?;
    let prepared: Vec<Prepared> = images.iter().map(|i| detector.prepare(i)).collect();
    let refs: Vec<Prepared> = references.iter().map(|i| detector.prepare(i)).collect();
    let detections = run_batches(&detector, &prepared, &refs, args.detector.pairing)?;
    write_results(&args, &images, &detections, &config, &domain, &object)
}

/// Scores the batch in the groups its pairing implies, with a progress bar for >1 image.
fn run_batches(
    detector: &Detector,
    images: &[Prepared],
    refs: &[Prepared],
    pairing: Option<Pairing>,
) -> Result<Vec<Detection>> {
    let bar = progress(images.len(), "images");
    let groups = detector.groups(images.len(), refs.len(), pairing)?;
    let mut results: Vec<Option<Detection>> = (0..images.len()).map(|_| None).collect();
    for group in groups {
        let batch: Vec<&Prepared> = group.iter().map(|&i| &images[i]).collect();
        for (i, d) in group.iter().zip(detector.score(&batch, refs)?) {
            results[*i] = Some(d);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(results
        .into_iter()
        .map(|d| d.expect("every image belongs to one group"))
        .collect())
}

fn write_results(
    args: &ScoreArgs,
    images: &[RgbImage],
    detections: &[Detection],
    config: &DetectorConfig,
    domain: &Domain,
    object: &str,
) -> Result<()> {
    let stems = unique_stems(&args.images);
    let range = detections
        .iter()
        .flat_map(|d| d.map.iter().copied())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let mut entries = Vec::new();
    for ((path, stem), (image, d)) in args
        .images
        .iter()
        .zip(&stems)
        .zip(images.iter().zip(detections))
    {
        write_npy(
            &args.out.join(format!("{stem}.npy")),
            &d.map,
            d.height,
            d.width,
        )?;
        let shown = duoclip::detect::display_image(image, d.width, d.height);
        write_png(
            &args.out.join(format!("{stem}.png")),
            &overlay::overlay(&shown, &d.map, range, 0.5),
        )?;
        entries.push(json!({ "file": path.display().to_string(), "score": d.score, "map": format!("{stem}.npy") }));
    }
    let doc = json!({
        "images": entries,
        "config": {
            "model": args.model.model,
            "domain": domain.name(),
            "object": object,
            "references": args.detector.references.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "detector": config,
            "map_range": [range.0, range.1],
        },
    });
    write_json(&args.out.join("scores.json"), &doc)
}

/// Output names from the image file names: unsafe characters replaced, repeats numbered, so
/// `a/x.png` and `b/x.png` never overwrite each other and nothing lands outside `--out`.
fn unique_stems(paths: &[PathBuf]) -> Vec<String> {
    let mut seen = HashSet::new();
    paths
        .iter()
        .map(|p| {
            let stem = safe_name(
                &p.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default(),
            );
            let mut name = stem.clone();
            let mut k = 2;
            while !seen.insert(name.clone()) {
                name = format!("{stem}-{k}");
                k += 1;
            }
            name
        })
        .collect()
}
