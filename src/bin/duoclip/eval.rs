//! `duoclip eval`: benchmark metrics of the detector, or of any method's precomputed maps,
//! on MVTec AD, VisA, BMAD or a generic folder layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args};
use duoclip::decide::{self, DEFAULT_FALSE_ALARM};
use duoclip::detect::config::{DetectorConfig, Pairing, Preset};
use duoclip::detect::tta::Rng;
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::eval::datasets::{self, Category, Dataset, Layout, Sample, Skipped, default_domain};
use duoclip::eval::decisions::{ClassCalibration, GoodImage};
use duoclip::eval::maps::{self, ClassResult, EvalOptions, GivenScores};
use duoclip::eval::plot;
use duoclip::eval::report::{Report, results_json, results_markdown};
use duoclip::image::RgbImage;
use duoclip::source::ReadOptions;
use duoclip::{Error, Result};
use indicatif::ProgressBar;
use serde_json::{Value, json};

use crate::calibrate::score_leave_one_out;
use crate::detector_args::{Anchors, DetectorArgs};
use crate::inputs::single_image;
use crate::model_args::{Loaded, ModelArgs};
use crate::output::{
    cli_message, progress, safe_name, write_atomic, write_json, write_npy, write_png,
};
use crate::resume::{
    append_progress, check_settings, read_progress, record_settings, run_settings,
};

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["model", "maps"])))]
pub struct EvalArgs {
    /// The dataset: its root folder, or one class folder.
    #[arg(long)]
    data: PathBuf,
    /// bmad, mvtec, visa (class folders, or split_csv/1cls.csv when present) or folder
    /// (<class>/good/ + any defect folders, optional <class>/masks/<defect>/).
    #[arg(long, value_parser = parse_layout)]
    layout: Layout,
    /// Only these classes (comma-separated or repeated; default all).
    #[arg(long, value_delimiter = ',')]
    category: Vec<String>,
    /// test, or BMAD's valid (tune on valid, report on test).
    #[arg(long, default_value = "test")]
    split: String,
    /// Evaluate precomputed maps of any method instead of running the detector:
    /// MAPS/<class>/<split>/<defect>/<stem>.npy (float32, any resolution). Image scores
    /// come from a scores.json beside the maps, else each map's maximum. Detector options
    /// are not used.
    #[arg(long, conflicts_with = "model")]
    maps: Option<PathBuf>,
    /// Short side of the evaluation grid (default: each map's own size, the model input
    /// for the detector). Maps are resized bilinearly (align_corners), masks nearest.
    #[arg(long)]
    eval_size: Option<usize>,
    /// FPR limit of both AUPRO variants.
    #[arg(long, default_value_t = 0.3)]
    fpr_limit: f64,
    /// Also evaluate decisions: calibrate thresholds on each class's known-good training
    /// images (train/good/) as `duoclip calibrate` does and report the image-level precision
    /// and recall of the verdicts and the pixel-level precision, recall and F1 of the map
    /// above the pixel threshold (README "Evaluation"). Needs the detector, not --maps.
    #[arg(long)]
    decide: bool,
    /// The false-alarm rate α of the calibration (--decide).
    #[arg(long, default_value_t = DEFAULT_FALSE_ALARM, requires = "decide")]
    false_alarm: f64,
    /// How many of a class's training images to calibrate on (--decide): the first N by file
    /// name. 20 bound false alarms by 1/21 < 0.05.
    #[arg(long, default_value_t = 20, requires = "decide")]
    calibration_goods: usize,
    #[command(flatten)]
    model: Option<ModelArgs>,
    #[command(flatten)]
    detector: DetectorArgs,
    /// Output folder: results.json, results.md, plots/*.png; with the detector also
    /// maps/, progress.jsonl and run.json, from which a rerun resumes.
    #[arg(long)]
    out: PathBuf,
}

fn parse_layout(s: &str) -> Result<Layout> {
    s.parse()
}

pub fn eval(args: EvalArgs) -> Result<()> {
    check_options(&args)?;
    let dataset = datasets::open(&args.data, args.layout, &args.split, &args.category)?;
    report_skipped(&dataset.skipped);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(args.out.display(), e))?;
    let mut skipped = dataset.skipped.clone();
    let goods = calibration_goods(&args, &dataset, &mut skipped)?;
    let (maps_dir, given, calibrations, method) =
        maps_to_evaluate(&args, &dataset, &goods, &mut skipped)?;
    let options = EvalOptions {
        eval_size: args.eval_size,
        fpr_limit: args.fpr_limit,
    };
    let total = dataset.categories.iter().map(|c| c.samples.len()).sum();
    let bar = progress(total, "images evaluated");
    let before = skipped.len();
    let results = maps::evaluate(
        &dataset,
        &maps_dir,
        given.as_ref(),
        &calibrations,
        options,
        &mut skipped,
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    report_skipped(&skipped[before..]);
    let run = json!({
        "data": args.data.display().to_string(),
        "layout": args.layout.name(),
        "split": args.split,
        "method": method,
    });
    write_report(&args.out, &results, options, &skipped, run)
}

/// With `--decide`, each class's calibration images: the first `--calibration-goods` of its
/// training images by name (the same in every run, and one a user can repeat with `duoclip
/// calibrate`). Looked up before any scoring, so a class without them stops the run at once.
fn calibration_goods(
    args: &EvalArgs,
    dataset: &Dataset,
    skipped: &mut Vec<Skipped>,
) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    if !args.decide {
        return Ok(BTreeMap::new());
    }
    let before = skipped.len();
    let mut goods = BTreeMap::new();
    for category in &dataset.categories {
        let mut files = datasets::train_good(args.layout, category, skipped)?;
        files.truncate(args.calibration_goods);
        goods.insert(category.name.clone(), files);
    }
    report_skipped(&skipped[before..]);
    Ok(goods)
}

/// The folder of the maps to evaluate, their image scores where known, each class's
/// calibration (`--decide`) and the method to report: `--maps` as given, or the detector's
/// maps, scored first into `out/maps/`.
fn maps_to_evaluate(
    args: &EvalArgs,
    dataset: &Dataset,
    goods: &BTreeMap<String, Vec<PathBuf>>,
    skipped: &mut Vec<Skipped>,
) -> Result<(PathBuf, Option<GivenScores>, Calibrations, Value)> {
    match (&args.maps, &args.model) {
        (Some(maps), _) => Ok((
            maps.clone(),
            None,
            Calibrations::new(),
            json!({ "maps": maps.display().to_string() }),
        )),
        (None, Some(model)) => {
            let (given, calibrations, settings) =
                score_dataset(args, model, dataset, goods, skipped)?;
            Ok((args.out.join("maps"), Some(given), calibrations, settings))
        }
        (None, None) => Err(Error::Option {
            option: "model".into(),
            message: "eval needs --model (run the detector) or --maps (evaluate precomputed maps)"
                .into(),
        }),
    }
}

/// Each class's thresholds and the images they came from, by class name.
type Calibrations = BTreeMap<String, ClassCalibration>;

fn check_options(args: &EvalArgs) -> Result<()> {
    if args.decide {
        check_decide_options(args)?;
    }
    if !(args.fpr_limit > 0.0 && args.fpr_limit <= 1.0) {
        return Err(Error::Option {
            option: "fpr_limit".into(),
            message: format!("{} is outside (0, 1]; METHOD.md uses 0.3", args.fpr_limit),
        });
    }
    if args.eval_size.is_some_and(|s| s < 2) {
        return Err(Error::Option {
            option: "eval_size".into(),
            message: "must be at least 2 pixels".into(),
        });
    }
    Ok(())
}

fn check_decide_options(args: &EvalArgs) -> Result<()> {
    if args.maps.is_some() {
        return Err(Error::Option {
            option: "decide".into(),
            message: "cannot be used with --maps: calibrating thresholds means scoring each \
                      class's known-good training images, which needs the detector; run eval \
                      with --model instead of --maps"
                .into(),
        });
    }
    decide::check_false_alarm(args.false_alarm)?;
    if args.calibration_goods == 0 {
        return Err(Error::Option {
            option: "calibration_goods".into(),
            message: "must be at least 1: the thresholds come from known-good images".into(),
        });
    }
    Ok(())
}

fn report_skipped(skipped: &[Skipped]) {
    for s in skipped {
        eprintln!("duoclip: skipped {}: {}", s.file, s.reason);
    }
}

/// Scores every image not scored yet into `out/maps/` (+ a line of `progress.jsonl` each)
/// and calibrates the classes of `goods`; returns every score so far, the calibrations and
/// the settings of the run.
fn score_dataset(
    args: &EvalArgs,
    model_args: &ModelArgs,
    dataset: &Dataset,
    goods: &BTreeMap<String, Vec<PathBuf>>,
    skipped: &mut Vec<Skipped>,
) -> Result<(GivenScores, Calibrations, Value)> {
    let options = args.detector.read_options()?;
    let references = args
        .detector
        .references
        .iter()
        .map(|path| single_image(path, &options))
        .collect::<Result<Vec<_>>>()?;
    let written = Written::read(&args.out)?;
    let todo: Vec<&Category> = dataset
        .categories
        .iter()
        .filter(|c| pending_in(c, &dataset.split, &written.done) > 0 || goods.contains_key(&c.name))
        .collect();
    let settings = run_settings(model_args, &args.detector);
    check_settings(&args.out.join("run.json"), &settings)?;
    record_settings(&args.out.join("run.json"), &settings)?;
    if todo.is_empty() {
        return Ok((written.done, Calibrations::new(), settings));
    }
    let total: usize = dataset.categories.iter().map(|c| c.samples.len()).sum();
    let bar = progress(total, "images scored");
    bar.set_position((total - pending(dataset, &written.done)) as u64);
    let model = model_args.load()?;
    let config = args.detector.config(model.clip.vision.blocks.len());
    let mut anchors = Anchors::new(&model.path)?;
    let mut scoring = Scoring {
        args,
        options,
        split: &dataset.split,
        references,
        written,
        skipped,
        bar,
    };
    let mut calibrations = Calibrations::new();
    for category in todo {
        let detector = class_detector(args, &model, &config, &mut anchors, &category.name)?;
        scoring.score_class(&detector, category)?;
        if let Some(files) = goods.get(&category.name) {
            // A detector of its own, so that TTA state kept across images never passes
            // between the training and the test images: the test maps are the same with
            // and without --decide.
            let detector = class_detector(args, &model, &config, &mut anchors, &category.name)?;
            let calibration = scoring.calibrate(&detector, &category.name, files)?;
            calibrations.insert(category.name.clone(), calibration);
        }
    }
    scoring.bar.finish_and_clear();
    Ok((scoring.written.done, calibrations, settings))
}

/// A detector of its own for each class: the class's text anchors, and TTA optimizer state
/// starting afresh as AnoVL's does per class. Cloning the model shares its weights.
fn class_detector(
    args: &EvalArgs,
    model: &Loaded,
    config: &DetectorConfig,
    anchors: &mut Anchors,
    class: &str,
) -> Result<Detector> {
    let domain = class_domain(args, class)?;
    let object = args.detector.object(&domain, Some(class))?;
    let class_anchors = anchors.get(&model.clip, &model.device, &domain, &object)?;
    Detector::new(
        model.clip.clone(),
        class_anchors,
        config.clone(),
        model.device.clone(),
    )
}

/// The maps of this run and of the runs it resumes, kept so that a rerun can trust them.
struct Written {
    maps_dir: PathBuf,
    progress_file: PathBuf,
    /// The score of every image whose map is written, by map path.
    done: GivenScores,
}

impl Written {
    /// What earlier runs left: a progress line counts only while its map is still there.
    fn read(out: &Path) -> Result<Self> {
        let maps_dir = out.join("maps");
        let progress_file = out.join("progress.jsonl");
        let mut done = read_progress(&progress_file)?;
        done.retain(|rel, _| maps_dir.join(rel).is_file());
        Ok(Written {
            maps_dir,
            progress_file,
            done,
        })
    }

    /// The map first, then its progress line, so that a line never names a missing map.
    fn record(&mut self, rel: &Path, image: &Path, detection: &Detection) -> Result<()> {
        let path = self.maps_dir.join(rel);
        let parent = path.parent().expect("maps live in class folders");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        write_npy(&path, &detection.map, detection.height, detection.width)?;
        append_progress(&self.progress_file, rel, detection.score, image)?;
        self.done.insert(rel.to_path_buf(), detection.score);
        Ok(())
    }
}

/// What scoring the classes one after another shares.
struct Scoring<'a> {
    args: &'a EvalArgs,
    /// How image files are read: the limits, `--window` and the slicing.
    options: ReadOptions,
    split: &'a str,
    /// The known-good images of `--reference`, decoded once for every class.
    references: Vec<RgbImage>,
    written: Written,
    skipped: &'a mut Vec<Skipped>,
    bar: ProgressBar,
}

impl Scoring<'_> {
    /// A class's groups in order; finished ones are skipped unless the TTA optimizer state
    /// must pass through them.
    fn score_class(&mut self, detector: &Detector, category: &Category) -> Result<()> {
        let refs: Vec<Prepared> = self
            .references
            .iter()
            .map(|i| detector.prepare(i))
            .collect();
        let groups = class_groups(
            detector,
            category.samples.len(),
            refs.len(),
            self.args.detector.pairing,
            self.args.detector.seed,
        )?;
        for group in groups {
            let rels: Vec<PathBuf> = group
                .iter()
                .map(|&i| category.samples[i].map_path(&category.name, self.split))
                .collect();
            // AdamW state kept across a class's images only comes out the same when its
            // finished groups are scored again (not written) before the first unfinished one.
            let finished = rels.iter().all(|r| self.written.done.contains_key(r));
            if finished && !detector.config().tta.keep_optimizer {
                continue;
            }
            self.score_group(detector, category, &group, &rels, &refs)?;
        }
        Ok(())
    }

    /// Scores a group's images together (they reference each other) and writes the maps not
    /// written yet; an image that does not decode leaves the group rather than ending the run.
    fn score_group(
        &mut self,
        detector: &Detector,
        category: &Category,
        group: &[usize],
        rels: &[PathBuf],
        refs: &[Prepared],
    ) -> Result<()> {
        let mut members = Vec::new();
        let mut prepared = Vec::new();
        for (&i, rel) in group.iter().zip(rels) {
            let sample = &category.samples[i];
            if let Some(image) = self.decode(sample) {
                prepared.push(detector.prepare(&image));
                members.push((sample, rel));
            }
        }
        if members.is_empty() {
            return Ok(());
        }
        let batch: Vec<&Prepared> = prepared.iter().collect();
        for ((sample, rel), detection) in members.into_iter().zip(detector.score(&batch, refs)?) {
            if self.written.done.contains_key(rel) {
                continue;
            }
            self.written.record(rel, &sample.image, &detection)?;
            self.bar.inc(1);
        }
        Ok(())
    }

    /// The image, or `None` once it is reported as skipped (and counted on the bar).
    fn decode(&mut self, sample: &Sample) -> Option<RgbImage> {
        let image = self.read(&sample.image);
        if image.is_none() {
            self.bar.inc(1);
        }
        image
    }

    /// The image, or `None` once it is reported as skipped.
    fn read(&mut self, path: &Path) -> Option<RgbImage> {
        match single_image(path, &self.options) {
            Ok(image) => Some(image),
            Err(e) => {
                self.skipped.push(Skipped {
                    file: path.display().to_string(),
                    reason: cli_message(&e),
                });
                report_skipped(&self.skipped[self.skipped.len() - 1..]);
                None
            }
        }
    }

    /// A class's thresholds from its known-good training `files`, scored leave-one-out as
    /// `duoclip calibrate` scores them: each against all the others, as one set. Files that
    /// do not decode are skipped; a class left with none is an error.
    fn calibrate(
        &mut self,
        detector: &Detector,
        class: &str,
        files: &[PathBuf],
    ) -> Result<ClassCalibration> {
        let mut used = Vec::new();
        let mut prepared = Vec::new();
        for file in files {
            if let Some(image) = self.read(file) {
                prepared.push(detector.prepare(&image));
                used.push(file);
            }
        }
        if prepared.is_empty() {
            return Err(Error::Option {
                option: "decide".into(),
                message: format!(
                    "none of the {} known-good training images of class `{class}` could be \
                     read (each is named above); thresholds need at least one",
                    files.len()
                ),
            });
        }
        let (scores, peaks) = score_leave_one_out(detector, &prepared)?;
        let thresholds = decide::calibrate(&scores, &peaks, self.args.false_alarm)?;
        let images = used
            .into_iter()
            .zip(scores.into_iter().zip(peaks))
            .map(|(file, (score, peak))| GoodImage {
                file: file.display().to_string(),
                score,
                peak,
            })
            .collect();
        Ok(ClassCalibration { thresholds, images })
    }
}

fn pending_in(category: &Category, split: &str, done: &GivenScores) -> usize {
    category
        .samples
        .iter()
        .filter(|s| !done.contains_key(&s.map_path(&category.name, split)))
        .count()
}

fn pending(dataset: &Dataset, done: &GivenScores) -> usize {
    dataset
        .categories
        .iter()
        .map(|c| pending_in(c, &dataset.split, done))
        .sum()
}

/// `--domain`, else the class's benchmark domain; a BMAD set of unknown modality must say.
fn class_domain(args: &EvalArgs, class: &str) -> Result<duoclip::prompts::Domain> {
    let default = default_domain(args.layout, class);
    if args.detector.domain.is_none() && default.is_none() {
        return Err(Error::Option {
            option: "domain".into(),
            message: format!(
                "the modality of BMAD set `{class}` is not known from its name; give it, e.g. \
                 --domain brain-mri --category {class}"
            ),
        });
    }
    args.detector.domain(default)
}

/// How a class's images are batched: the detector's rule over the images in a seeded random
/// order, so the folders they come from (their labels) never decide which images reference
/// each other. Without `--pairing` an odd count is consecutive pairs plus one triple rather
/// than one set of all images (matching a set costs N²).
fn class_groups(
    det: &Detector,
    n: usize,
    refs: usize,
    pairing: Option<Pairing>,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let alone = det.config().preset == Preset::Anovl || refs > 0;
    let groups = if alone || pairing.is_some() || n.is_multiple_of(2) || n < 5 {
        det.groups(n, refs, pairing)?
    } else {
        let mut groups = det.groups(n - 3, refs, Some(Pairing::Pairs))?;
        groups.push(vec![n - 3, n - 2, n - 1]);
        groups
    };
    let order = shuffled(n, seed);
    Ok(groups
        .into_iter()
        .map(|g| g.into_iter().map(|k| order[k]).collect())
        .collect())
}

/// The stream of the seed that orders images for pairing (distinct from the TTA draws).
const PAIRING_STREAM: u64 = 0x5041_4952; // "PAIR"

/// 0..n in a Fisher–Yates order drawn from `seed`.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::stream(seed, PAIRING_STREAM);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

fn write_report(
    out: &Path,
    results: &[ClassResult],
    options: EvalOptions,
    skipped: &[Skipped],
    run: Value,
) -> Result<()> {
    let report = Report {
        results,
        options,
        skipped,
        run,
    };
    write_plots(out, results, options.fpr_limit)?;
    write_json(&out.join("results.json"), &results_json(&report))?;
    let md = results_markdown(&report);
    write_atomic(&out.join("results.md"), md.as_bytes())?;
    println!("{md}");
    Ok(())
}

/// plots/<class>_roc.png, _pr.png and _pro.png.
fn write_plots(out: &Path, results: &[ClassResult], fpr_limit: f64) -> Result<()> {
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    for r in results {
        let name = safe_name(&r.name);
        for (kind, img) in plot::class_plots(r, fpr_limit) {
            write_png(&dir.join(format!("{name}_{kind}.png")), &img)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shuffled;

    #[test]
    fn the_pairing_order_is_a_seeded_permutation() {
        let a = shuffled(9, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..9).collect::<Vec<_>>());
        assert_eq!(a, shuffled(9, 0));
        assert_ne!(a, shuffled(9, 1));
        assert_ne!(a, sorted, "consecutive images must not stay together");
    }
}
