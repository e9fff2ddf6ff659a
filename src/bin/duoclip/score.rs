//! `duoclip score`: anomaly maps and scores for a batch of images.
//!
//! Resumable: each group of images scored together (a pair, a set) has its maps written and
//! then one `progress.jsonl` line per image appended in a single write, so a run killed at
//! any point continues where it stopped and ends with the same files as one never stopped.
//! Overlays and `scores.json` come last, from the maps on disk: their colour range spans
//! every map, and memory stays that of one group however many images there are.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use clap::Args;
use duoclip::decide::Thresholds;
use duoclip::detect::config::DetectorConfig;
use duoclip::detect::plan::{self, check_set_size};
use duoclip::detect::{Detector, Prepared, display_image};
use duoclip::eval::maps::read_map;
use duoclip::image::RgbImage;
use duoclip::prompts::{Domain, choose_domain};
use duoclip::source::DomainHint;
use duoclip::{Error, Result, overlay};
use serde_json::{Value, json};

use crate::calibrate::{add_decisions, calibration_for_score};
use crate::detector_args::{Anchors, DetectorArgs};
use crate::inputs::{Input, Opened, Sources, expand};
use crate::model_args::ModelArgs;
use crate::output::{progress, safe_name, write_atomic, write_json, write_npy, write_png};
use crate::resume::{append_lines, check_settings, progress_lines, record_settings, run_settings};

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    detector: DetectorArgs,
    /// With --pairing set: consecutive sets of this many images instead of one set of all
    /// (matching a set costs N² time; a last lone image joins the set before it).
    #[arg(long)]
    set_size: Option<usize>,
    /// A calibration from `duoclip calibrate`, made with this model and these settings: each
    /// image gains a verdict (ok, anomalous, uncertain), its margin and its regions.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Output folder: scores.json, <stem>.npy (float32 map), <stem>.png (overlay),
    /// <stem>.map.nii.gz (a NIfTI input's maps over its voxels), and progress.jsonl +
    /// run.json, from which a rerun of the same command resumes.
    #[arg(long)]
    out: PathBuf,
    /// The images to score: PNG, JPEG, TIFF, WebP or BMP files, or medical ones (README
    /// "Medical images"), whose slices or frames are each an image.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

/// What the progress file says about one finished image.
#[derive(Clone, Copy)]
struct Finished {
    score: f32,
    /// The map's least and greatest value (the overlays' colour range spans all maps).
    low: f32,
    high: f32,
}

/// Output name (`<stem>.npy`) → finished image.
type Done = HashMap<String, Finished>;

pub fn score(args: ScoreArgs) -> Result<()> {
    check_set_size(args.set_size, args.detector.pairing)?;
    let options = args.detector.read_options()?;
    // Every file is opened before the model loads: a bad file fails in a second, not a minute
    // (and before run.json, so fixing it is no change of settings). Opening also finds the
    // slices of volumes and the frames of multi-frame files.
    let Opened {
        inputs,
        shapes,
        hints,
    } = expand(&args.images, &options)?;
    let (domain, domain_from) = resolve_domain(&args.detector, &hints, args.images.len())?;
    let object = args.detector.object(&domain, None)?;
    let stems = unique_stems(&inputs);
    let settings = score_settings(&args);
    let run_file = args.out.join("run.json");
    check_settings(&run_file, &settings)?;
    // Progress without the settings it was made with vouches for nothing.
    let done = if run_file.is_file() {
        read_done(&args.out, &stems)?
    } else {
        Done::new()
    };
    let mut sources = Sources::new(options);
    let references = expand(&args.detector.references, &options)?
        .inputs
        .iter()
        .map(|r| Ok(sources.part(r)?.image))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(args.out.display(), e))?;
    let model = args.model.load()?;
    let config = args.detector.config(model.clip.vision.blocks.len());
    let mut anchors = Anchors::new(&model.path)?;
    let sha256 = anchors.model_sha256();
    let calibration = match args.calibration.as_deref() {
        Some(path) => Some(calibration_for_score(
            path,
            sha256,
            &args.model,
            &args.detector,
            &config,
            (&domain, &object),
        )?),
        None => None,
    };
    let anchors = anchors.get(&model.clip, &model.device, &domain, &object)?;
    let detector = Detector::new(model.clip, anchors, config.clone(), model.device)?;
    let refs: Vec<Prepared> = references.iter().map(|i| detector.prepare(i)).collect();
    let groups = plan::groups(
        &detector,
        &shapes,
        refs.len(),
        args.detector.pairing,
        args.set_size,
    )?;
    record_settings(&run_file, &settings)?;
    let scored = Scored {
        inputs: &inputs,
        stems: &stems,
    };
    let done = score_groups(&detector, &refs, &groups, &args, scored, &mut sources, done)?;
    write_results(
        &args,
        scored,
        &done,
        (&config, (&domain, &domain_from), &object),
        args.calibration
            .as_deref()
            .zip(calibration.as_ref().map(|c| &c.thresholds)),
        &mut sources,
    )
}

/// The prompt domain: `--domain`, else the one the files point to ([`domain_from_files`]),
/// and where it came from.
pub fn resolve_domain(
    detector: &DetectorArgs,
    hints: &[DomainHint],
    files: usize,
) -> Result<(Domain, String)> {
    match detector.given_domain()? {
        Some(domain) => Ok((domain, "--domain".to_string())),
        None => domain_from_files(detector, hints, files),
    }
}

/// The prompt domain without `--domain`, and where it came from: the one every file that
/// points to a domain agrees on (said on stderr), else the default.
fn domain_from_files(
    detector: &DetectorArgs,
    hints: &[DomainHint],
    files: usize,
) -> Result<(Domain, String)> {
    let mut named: Vec<&str> = hints.iter().map(|h| h.domain).collect();
    named.sort_unstable();
    named.dedup();
    match named[..] {
        [] => Ok((detector.domain(None)?, "default".into())),
        [one] => {
            let because = &hints[0].because;
            eprintln!(
                "duoclip: domain {one}, from the files' {because} ({} of {files} files); give \
                 --domain to choose another",
                hints.len()
            );
            Ok((choose_domain(one, &[])?, because.clone()))
        }
        _ => {
            let list = named.join(", ");
            let default = detector.domain(None)?;
            eprintln!(
                "duoclip: the files point to different domains ({list}); scoring with the \
                 default, {}: give --domain to choose one",
                default.name()
            );
            Ok((default, format!("default (the files point to {list})")))
        }
    }
}

/// The run's settings: the detector's, the images in order (they decide the groups and the
/// output names) and the set size.
fn score_settings(args: &ScoreArgs) -> Value {
    let mut settings = run_settings(&args.model, &args.detector);
    settings["set_size"] = json!(args.set_size);
    settings["images"] = json!(
        args.images
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    );
    settings
}

/// Finished images of an earlier run of these settings: progress lines whose map is there.
fn read_done(out: &Path, stems: &[String]) -> Result<Done> {
    let names: HashSet<String> = stems.iter().map(|s| map_name(s)).collect();
    let finished = |line: &Value| -> Option<(String, Finished)> {
        let map = line["map"].as_str()?;
        let entry = Finished {
            score: line["score"].as_f64()? as f32,
            low: line["low"].as_f64()? as f32,
            high: line["high"].as_f64()? as f32,
        };
        (names.contains(map) && out.join(map).is_file()).then(|| (map.to_string(), entry))
    };
    Ok(progress_lines(&out.join("progress.jsonl"))?
        .iter()
        .filter_map(finished)
        .collect())
}

fn map_name(stem: &str) -> String {
    format!("{stem}.npy")
}

/// The images of the run and their output names.
#[derive(Clone, Copy)]
struct Scored<'a> {
    inputs: &'a [Input],
    stems: &'a [String],
}

/// Scores every group with an unfinished image, writing its maps and progress lines.
fn score_groups(
    det: &Detector,
    refs: &[Prepared],
    groups: &[Vec<usize>],
    args: &ScoreArgs,
    Scored { inputs, stems }: Scored,
    sources: &mut Sources,
    mut done: Done,
) -> Result<Done> {
    let total = inputs.len();
    if done.len() == total {
        return Ok(done);
    }
    let bar = progress(total, "images");
    bar.set_position(done.len() as u64);
    // AdamW state kept across images only comes out the same when finished groups are scored
    // again (not written) before the first unfinished one.
    let replay = det.config().tta.keep_optimizer;
    let progress_file = args.out.join("progress.jsonl");
    for group in groups {
        let pending = group
            .iter()
            .any(|&i| !done.contains_key(&map_name(&stems[i])));
        if !pending && !replay {
            continue;
        }
        let prepared = group
            .iter()
            .map(|&i| Ok(det.prepare(&sources.part(&inputs[i])?.image)))
            .collect::<Result<Vec<Prepared>>>()?;
        let batch: Vec<&Prepared> = prepared.iter().collect();
        let mut lines = Vec::new();
        for (&i, d) in group.iter().zip(det.score(&batch, refs)?) {
            let name = map_name(&stems[i]);
            if done.contains_key(&name) {
                continue;
            }
            write_npy(&args.out.join(&name), &d.map, d.height, d.width)?;
            let (low, high) = value_range(&d.map);
            let line = json!({ "map": name, "score": d.score, "low": low, "high": high,
                "image": inputs[i].name() });
            lines.push(line);
            done.insert(
                name,
                Finished {
                    score: d.score,
                    low,
                    high,
                },
            );
            bar.inc(1);
        }
        append_lines(&progress_file, &lines)?;
    }
    bar.finish_and_clear();
    Ok(done)
}

fn value_range(map: &[f32]) -> (f32, f32) {
    map.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Overlays (one map in memory at a time) and `scores.json`, the run's last file.
fn write_results(
    args: &ScoreArgs,
    Scored { inputs, stems }: Scored,
    done: &Done,
    (config, (domain, domain_from), object): (&DetectorConfig, (&Domain, &str), &str),
    calibration: Option<(&Path, &Thresholds)>,
    sources: &mut Sources,
) -> Result<()> {
    let finished = stems
        .iter()
        .map(|stem| {
            done.get(&map_name(stem)).copied().ok_or_else(|| {
                Error::Model(format!(
                    "{stem}: the detector gave no result for this image"
                ))
            })
        })
        .collect::<Result<Vec<Finished>>>()?;
    let range = finished
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), f| {
            (lo.min(f.low), hi.max(f.high))
        });
    let volume_maps = write_volume_maps(&args.out, Scored { inputs, stems }, sources)?;
    let bar = progress(stems.len(), "overlays");
    let mut entries = Vec::new();
    for (((input, stem), f), volume_map) in inputs.iter().zip(stems).zip(&finished).zip(volume_maps)
    {
        let part = sources.part(input)?;
        let (map, width, height) = read_map(&args.out.join(map_name(stem)))?;
        let outline = calibration.map(|(_, t)| t.pixel);
        let drawn = (&map[..], width, height);
        write_overlay(&args.out, &part.image, stem, drawn, (range, outline))?;
        let mut entry = json!({ "file": input.name(), "score": f.score, "map": map_name(stem) });
        if let Some((_, thresholds)) = calibration {
            add_decisions(&mut entry, f.score, (&map, width, height), thresholds)?;
        }
        if let Some(name) = volume_map {
            entry["volume_map"] = json!(name);
        }
        if let Some(window) = part.window {
            entry["window"] = json!(window);
        }
        if !part.withheld.is_empty() {
            entry["withheld"] = json!(part.withheld);
        }
        entries.push(entry);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut doc = json!({
        "images": entries,
        "config": {
            "model": args.model.model,
            "domain": domain.name(),
            "domain_from": domain_from,
            "object": object,
            "references": args.detector.references.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "detector": config,
            "map_range": [range.0, range.1],
        },
    });
    if let Some((path, thresholds)) = calibration {
        doc["calibration"] =
            json!({ "file": path.display().to_string(), "thresholds": thresholds });
    }
    write_json(&args.out.join("scores.json"), &doc)
}

/// `<stem>.png`: the image as the model saw it under its map, coloured over `range`, with
/// the outlines of the regions above the pixel threshold where a calibration gives one.
fn write_overlay(
    out: &Path,
    image: &RgbImage,
    stem: &str,
    (map, width, height): (&[f32], usize, usize),
    (range, outline): ((f32, f32), Option<f32>),
) -> Result<()> {
    let shown = display_image(image, width, height);
    let mut picture = overlay::overlay(&shown, map, range, 0.5);
    if let Some(threshold) = outline {
        overlay::outline(&mut picture, map, threshold);
    }
    write_png(&out.join(format!("{stem}.png")), &picture)
}

/// Output names from the image file names (and an image's label within its file):
/// unsafe characters replaced, repeats numbered, so `a/x.png` and `b/x.png` never overwrite
/// each other and nothing lands outside `--out`.
fn unique_stems(inputs: &[Input]) -> Vec<String> {
    let mut seen = HashSet::new();
    inputs
        .iter()
        .map(|input| {
            let file = file_stem(&input.path);
            let stem = safe_name(&match &input.label {
                Some(label) if input.private => label.clone(),
                Some(label) => format!("{file}-{label}"),
                None => file,
            });
            numbered(&mut seen, stem)
        })
        .collect()
}

/// A file's name without its extension: `scan.nii.gz` → `scan`, as `scan.png` → `scan`.
fn file_stem(path: &Path) -> String {
    let file = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    file.strip_suffix(".nii").unwrap_or(&file).to_string()
}

/// `stem`, or `stem-2`, `stem-3`, ... where an earlier name of `seen` took it.
fn numbered(seen: &mut HashSet<String>, stem: String) -> String {
    let mut name = stem.clone();
    let mut k = 2;
    while !seen.insert(name.clone()) {
        name = format!("{stem}-{k}");
        k += 1;
    }
    name
}

/// `<stem>.map.nii.gz` for each NIfTI volume: its slices' maps put back into its voxels, so
/// a viewer overlays them on the scan. Written after every slice is scored, from the maps on
/// disk, so a resumed run writes the same file. Returns each image's volume map, if any.
fn write_volume_maps(
    out: &Path,
    Scored { inputs, stems }: Scored,
    sources: &mut Sources,
) -> Result<Vec<Option<String>>> {
    let mut names = vec![None; inputs.len()];
    let mut seen = HashSet::new();
    let mut first = 0;
    // One file's images: consecutive inputs of one path, numbered on from 0.
    for file in inputs.chunk_by(|a, b| a.path == b.path && b.index == a.index + 1) {
        let start = first;
        first += file.len();
        let source = sources.source(&file[0].path)?;
        let Some(volume) = source.map_volume(|n| read_map(&out.join(map_name(&stems[start + n]))))
        else {
            continue;
        };
        let name = numbered(&mut seen, safe_name(&file_stem(&file[0].path))) + ".map.nii.gz";
        write_atomic(&out.join(&name), &volume?)?;
        names[start..first].fill(Some(name));
    }
    Ok(names)
}
