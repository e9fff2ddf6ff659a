//! `duoclip calibrate`: decision thresholds from known-good images (README "Decisions"), and
//! the checks that let `score --calibration` use them only where they hold.

use std::path::{Path, PathBuf};

use clap::Args;
use duoclip::decide::{self, DEFAULT_FALSE_ALARM, Thresholds};
use duoclip::detect::config::{DetectorConfig, Pairing, Preset};
use duoclip::detect::{Detector, Prepared};
use duoclip::prompts::Domain;
use duoclip::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::detector_args::{Anchors, DetectorArgs};
use crate::inputs::{Opened, Sources, expand};
use crate::model_args::ModelArgs;
use crate::output::{progress, write_json};
use crate::score::resolve_domain;

/// The `format` of a calibration file.
const FORMAT: &str = "duoclip-calibration";

#[derive(Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    detector: DetectorArgs,
    /// The false-alarm rate α: at most this share of good images is called anomalous (with
    /// at least ⌈1/α⌉ − 1 good images; fewer give the bound 1/(N+1), said in the output).
    #[arg(long, default_value_t = DEFAULT_FALSE_ALARM)]
    false_alarm: f64,
    /// The calibration file to write (JSON), for `score --calibration`.
    #[arg(long)]
    out: PathBuf,
    /// Known-good images, scored leave-one-out: each against all the others as references.
    #[arg(required = true, value_name = "GOOD")]
    good: Vec<PathBuf>,
}

/// What `calibrate` writes and `score --calibration` reads.
#[derive(Serialize, Deserialize)]
pub struct Calibration {
    pub format: String,
    /// The duoclip version that wrote it.
    pub duoclip: String,
    /// sha256 of the model's weights file: the model, wherever it lies.
    pub model_sha256: String,
    /// Every setting that changes an image's score ([`score_settings`]).
    pub settings: Value,
    pub thresholds: Thresholds,
    /// Each good image's score and map maximum, the inputs of the thresholds.
    pub images: Vec<Value>,
}

pub fn calibrate(args: CalibrateArgs) -> Result<()> {
    decide::check_false_alarm(args.false_alarm)?;
    refuse_batch_options(&args.detector)?;
    let options = args.detector.read_options()?;
    let Opened { inputs, hints, .. } = expand(&args.good, &options)?;
    if inputs.is_empty() {
        return Err(no_good_images(&args.good));
    }
    let (domain, _) = resolve_domain(&args.detector, &hints, args.good.len())?;
    let object = args.detector.object(&domain, None)?;
    let model = args.model.load()?;
    let config = args.detector.config(model.clip.vision.blocks.len());
    let mut anchors = Anchors::new(&model.path)?;
    let model_sha256 = anchors.model_sha256().to_string();
    let text = anchors.get(&model.clip, &model.device, &domain, &object)?;
    let detector = Detector::new(model.clip, text, config, model.device)?;
    let mut sources = Sources::new(options);
    let prepared = inputs
        .iter()
        .map(|input| Ok(detector.prepare(&sources.part(input)?.image)))
        .collect::<Result<Vec<Prepared>>>()?;
    let (scores, peaks) = score_leave_one_out(&detector, &prepared)?;
    let thresholds = decide::calibrate(&scores, &peaks, args.false_alarm)?;
    let images = inputs.iter().zip(scores.iter().zip(&peaks));
    let calibration = Calibration {
        format: FORMAT.into(),
        duoclip: env!("CARGO_PKG_VERSION").into(),
        model_sha256,
        settings: score_settings(
            &args.model,
            &args.detector,
            detector.config(),
            (&domain, &object),
        ),
        thresholds,
        images: images
            .map(|(input, (s, p))| json!({ "file": input.name(), "score": s, "peak": p }))
            .collect(),
    };
    let doc = serde_json::to_value(&calibration).map_err(|e| Error::Model(e.to_string()))?;
    write_json(&args.out, &doc)?;
    print_thresholds(&calibration.thresholds, &args.out);
    Ok(())
}

/// `--reference` and `--pairing` decide how `score` groups a batch; calibration always
/// compares each good image with all the others.
fn refuse_batch_options(detector: &DetectorArgs) -> Result<()> {
    let given = [
        ("reference", !detector.references.is_empty()),
        ("pairing", detector.pairing.is_some()),
    ];
    match given.iter().find(|(_, given)| *given) {
        Some((option, _)) => Err(Error::Option {
            option: (*option).into(),
            message: "does not apply to calibrate, which scores each good image against all \
                      the others; give every known-good image as GOOD"
                .into(),
        }),
        None => Ok(()),
    }
}

fn no_good_images(files: &[PathBuf]) -> Error {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    Error::Image {
        path: names.join(", "),
        message: "no images in these files; calibrate needs at least one known-good image".into(),
    }
}

/// Each good image's score and map maximum, scored as `score --reference` scores a test
/// image: against the other N − 1 good images (one set). A lone image, and every image under
/// the anovl preset (which uses no references), is scored alone. `eval --decide` calibrates
/// each class with it too.
pub(crate) fn score_leave_one_out(
    det: &Detector,
    prepared: &[Prepared],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = prepared.len();
    let groups = det.groups(n, 0, (n >= 2).then_some(Pairing::Set))?;
    let bar = progress(groups.len(), "good images");
    let how = if groups.len() == n {
        "each alone"
    } else {
        "each against the others"
    };
    eprintln!("duoclip: scoring {n} good images, {how}");
    let (mut scores, mut peaks) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for group in &groups {
        let batch: Vec<&Prepared> = group.iter().map(|&i| &prepared[i]).collect();
        for d in det.score(&batch, &[])? {
            scores.push(d.score);
            peaks.push(d.map.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((scores, peaks))
}

fn print_thresholds(t: &Thresholds, out: &Path) {
    println!(
        "{} good images (scores {:.4}..{:.4}, median {:.4})",
        t.good.count, t.good.min, t.good.max, t.good.median
    );
    println!(
        "image threshold {:.4} ± {} (uncertain band), pixel threshold {:.4}",
        t.image,
        readable(t.band),
        t.pixel
    );
    if t.bound > t.false_alarm {
        println!(
            "false alarms: at most {:.4} of good images, not the {} asked for: that needs at \
             least {} good images",
            t.bound,
            t.false_alarm,
            decide::good_images_needed(t.false_alarm)
        );
    } else {
        println!("false alarms: at most {:.4} of good images", t.bound);
    }
    println!("written to {}", out.display());
}

/// Four decimals, or two significant digits for a value too small to show in four (a band
/// of good scores nearly alike).
fn readable(value: f32) -> String {
    if value.abs() >= 1e-3 {
        format!("{value:.4}")
    } else {
        format!("{value:.1e}")
    }
}

/// Every setting that changes an image's score besides the model (its sha256, kept apart),
/// as the run resolved it: the detector's (λ, reference layers, views, TTA, ...; not the
/// pairing, as calibration is always leave-one-out), the model's overrides, the prompts'
/// domain and object, and the intensity window. Not the references or the slicing, which
/// pick images, not scores.
fn score_settings(
    model: &ModelArgs,
    d: &DetectorArgs,
    config: &DetectorConfig,
    (domain, object): (&Domain, &str),
) -> Value {
    let mut settings = json!({
        "image_size": model.image_size,
        "vision_heads": model.vision_heads,
        "text_heads": model.text_heads,
        "act": model.act.map(|a| format!("{a:?}")),
        "domain": domain.name(),
        "domain_phrases": d.domain_phrases,
        "object": object,
        "window": d.window,
    });
    if let (Value::Object(all), Value::Object(detector)) = (&mut settings, json!(config)) {
        all.extend(detector.into_iter().filter(|(key, _)| key != "pairing"));
    }
    settings
}

/// `score --calibration`: the calibration at `path`, if it was made for this model and this
/// run's settings (else an error naming each mismatch with both values).
pub fn calibration_for_score(
    path: &Path,
    model_sha256: &str,
    model: &ModelArgs,
    detector: &DetectorArgs,
    config: &DetectorConfig,
    prompts: (&Domain, &str),
) -> Result<Calibration> {
    let settings = score_settings(model, detector, config, prompts);
    let calibration = read_calibration(path, model_sha256, &settings)?;
    note_setting(detector);
    Ok(calibration)
}

fn read_calibration(path: &Path, model_sha256: &str, settings: &Value) -> Result<Calibration> {
    let calibration = parse(path)?;
    let mut mismatches = differences(&calibration.settings, settings);
    if calibration.model_sha256 != model_sha256 {
        mismatches.insert(
            0,
            format!(
                "model sha256 {} (calibration) vs {model_sha256} (now)",
                calibration.model_sha256
            ),
        );
    }
    if mismatches.is_empty() {
        return Ok(calibration);
    }
    Err(Error::Option {
        option: "calibration".into(),
        message: format!(
            "{} was made in another setting: {}; score with the calibration's settings, or \
             make a new one with `duoclip calibrate` and these",
            path.display(),
            mismatches.join("; ")
        ),
    })
}

fn parse(path: &Path) -> Result<Calibration> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let bad = |why: String| Error::Option {
        option: "calibration".into(),
        message: format!(
            "{}: {why}; give a file written by `duoclip calibrate`",
            path.display()
        ),
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    if doc["format"] != FORMAT {
        return Err(bad(format!(
            "its format is {}, not {FORMAT}",
            doc["format"]
        )));
    }
    serde_json::from_value(doc).map_err(|e| bad(format!("not a calibration ({e})")))
}

/// `key: calibration vs now` for each setting that differs.
fn differences(calibration: &Value, now: &Value) -> Vec<String> {
    let mut keys: Vec<&String> = [calibration, now]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|o| o.keys())
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| calibration.get(k.as_str()) != now.get(k.as_str()))
        .map(|k| {
            let value = |v: &Value| v.get(k.as_str()).cloned().unwrap_or(Value::Null);
            format!(
                "{k} {} (calibration) vs {} (now)",
                value(calibration),
                value(now)
            )
        })
        .collect()
}

/// Adds to an image's `scores.json` entry its verdict, margin and the regions of its map
/// (in map pixels, the overlay's grid) above the pixel threshold.
pub fn add_decisions(
    entry: &mut Value,
    score: f32,
    (map, width, height): (&[f32], usize, usize),
    t: &Thresholds,
) -> Result<()> {
    let (verdict, margin) = decide::verdict(score, t);
    entry["verdict"] = json!(verdict);
    entry["margin"] = json!(margin);
    entry["regions"] = json!(decide::regions(map, width, height, t.pixel)?);
    Ok(())
}

/// Says so where a calibration made against good references meets a run that compares the
/// images with each other instead (its scores may sit on another scale).
fn note_setting(detector: &DetectorArgs) {
    if detector.preset == Preset::Product && detector.references.is_empty() {
        eprintln!(
            "duoclip: note: the calibration's thresholds are for images scored against \
             known-good ones; give them with --reference for verdicts on that footing"
        );
    }
}
