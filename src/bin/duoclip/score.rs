//! `duoclip score`: anomaly maps and scores for a batch of images.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use clap::Args;
use duoclip::detect::config::{AdapterKind, DetectorConfig, Pairing, Preset, TtaMode};
use duoclip::detect::presets::Choices;
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::image::{ImageLimits, RgbImage, decode};
use duoclip::prompts::{AnchorCache, Domain, choose, text_anchors};
use duoclip::{Error, Result, overlay};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::model_args::ModelArgs;
use crate::output::{write_json, write_npy, write_png};

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// anovl (AnoVL's official computation, text map only) or product (adds visual references).
    #[arg(long, default_value = "product")]
    preset: Preset,
    /// Prompt domain: object, texture, brain-mri, liver-ct, retinal-oct, chest-xray,
    /// histopathology, or custom (with --domain-phrases).
    #[arg(long, default_value = "object")]
    domain: String,
    /// Your own domain phrases for `--domain custom`, comma-separated (e.g. "x-ray,radiograph").
    #[arg(long, value_delimiter = ',')]
    domain_phrases: Vec<String>,
    /// What the images show, as in the prompts ("metal_nut", "brain"). Medical domains have a
    /// default.
    #[arg(long)]
    object: Option<String>,
    /// pairs: consecutive images reference each other; set: every other image of the batch is
    /// a reference. Default: pairs for an even count, set for an odd count ≥ 3.
    #[arg(long)]
    pairing: Option<Pairing>,
    /// Known-good images: every image is compared with these instead of with the batch.
    #[arg(long = "reference")]
    references: Vec<PathBuf>,
    /// Views for the image score: 1 (fast) or 22 (AnoVL's).
    #[arg(long, default_value_t = 1)]
    views: usize,
    /// Test-time adaptation: off, anovl or synth.
    #[arg(long, default_value = "off")]
    tta: TtaMode,
    /// AnoVL TTA adapter: tanh (objects, MVTec) or linear (VisA).
    #[arg(long, default_value = "tanh")]
    adapter: AdapterKind,
    /// Keep the TTA optimizer state across the images of the run (AnoVL's quirk).
    #[arg(long)]
    tta_keep_optimizer: bool,
    /// Weight of the visual map in the fused map (0..=1; default 0.5 for product).
    #[arg(long)]
    lambda: Option<f32>,
    /// 0-based blocks whose ordinary-stream tokens join the V-V tokens for matching
    /// (default: ¼, ½, ¾ of the depth).
    #[arg(long, value_delimiter = ',')]
    ref_layers: Option<Vec<usize>>,
    /// Neighbourhood averaging of tokens before matching: 1 or 3.
    #[arg(long, default_value_t = 1)]
    neighbourhood: usize,
    /// Seed of every random draw (TTA init, noise, synthesized anomalies).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: scores.json, <stem>.npy (float32 map), <stem>.png (overlay).
    #[arg(long)]
    out: PathBuf,
    /// The images to score (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let (domain, object) = choose(&args.domain, &args.domain_phrases, args.object.as_deref())?;
    // Every image is decoded before the model loads: a bad file fails in a second, not a minute.
    let images = decode_all(&args.images)?;
    let references = decode_all(&args.references)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(args.out.display(), e))?;
    let model = args.model.load()?;
    let config = DetectorConfig::choose(model.clip.vision.blocks.len(), &choices(&args));
    let mut cache = AnchorCache::new(anchor_cache_dir());
    let model_id = cache.model_id(&model.path)?;
    let tokenizer = duoclip::clip::Tokenizer::new();
    let anchors = cache.get_or_compute(&model_id, &domain, &object, &model.device, || {
        text_anchors(&model.clip, &tokenizer, &domain, &object)
    })?;
    for warning in cache.warnings() {
        eprintln!("duoclip: warning: {warning}");
    }
    let detector = Detector::new(model.clip, anchors, config.clone(), model.device)?;
    let prepared: Vec<Prepared> = images.iter().map(|i| detector.prepare(i)).collect();
    let refs: Vec<Prepared> = references.iter().map(|i| detector.prepare(i)).collect();
    let detections = run_batches(&detector, &prepared, &refs, args.pairing)?;
    write_results(&args, &images, &detections, &config, &domain, &object)
}

fn choices(args: &ScoreArgs) -> Choices {
    Choices {
        preset: Some(args.preset),
        views: Some(args.views),
        pairing: args.pairing,
        lambda: args.lambda,
        ref_layers: args.ref_layers.clone(),
        neighbourhood: Some(args.neighbourhood),
        tta: Some(args.tta),
        adapter: Some(args.adapter),
        keep_optimizer: args.tta_keep_optimizer,
        seed: Some(args.seed),
    }
}

/// Anchors are cached next to the downloaded models; without a cache dir, in memory only.
fn anchor_cache_dir() -> Option<PathBuf> {
    duoclip::download::cache_root()
        .ok()
        .map(|root| root.join("anchors"))
}

fn decode_all(paths: &[PathBuf]) -> Result<Vec<RgbImage>> {
    paths
        .iter()
        .map(|p| {
            let name = p.display().to_string();
            let bytes = std::fs::read(p).map_err(|e| Error::io(&name, e))?;
            decode(&bytes, &name, &ImageLimits::default())
        })
        .collect()
}

/// Scores the batch in the groups its pairing implies, with a progress bar for >1 image.
fn run_batches(
    detector: &Detector,
    images: &[Prepared],
    refs: &[Prepared],
    pairing: Option<Pairing>,
) -> Result<Vec<Detection>> {
    let bar = progress(images.len());
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

fn progress(n: usize) -> ProgressBar {
    if n <= 1 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, ETA {eta}")
            .expect("valid template"),
    );
    bar
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
            "references": args.references.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
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
            let stem = safe_stem(p);
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

fn safe_stem(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match clean.trim_start_matches('.') {
        "" => "image".into(),
        s => s.into(),
    }
}
