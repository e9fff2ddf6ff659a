//! `duoclip eval` as a user runs it: precomputed maps against scikit-learn and the MVTec
//! reference, the detector end to end on tiny sets of every layout, resuming, and bad input
//! named file by file while the rest is still evaluated.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const METRICS: [&str; 8] = [
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1max",
    "aupro",
    "aupro_fast",
];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn data(layout_dir: &str) -> PathBuf {
    fixture("eval/datasets").join(layout_dir)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `eval` with the tiny model on `data` in `layout`, plus `extra` options.
fn eval_detector(data: &Path, layout: &str, out: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["--data", s(data), "--layout", layout, "--out", s(out)];
    args.extend(extra);
    run_with_tiny_model("eval", &args)
}

/// `eval --maps` on an MVTec-layout set.
fn eval_maps(maps: &Path, data: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    eval_maps_in(maps, data, "mvtec", out, extra)
}

fn eval_maps_in(
    maps: &Path,
    data: &Path,
    layout: &str,
    out: &Path,
    extra: &[&str],
) -> (bool, String) {
    let mut args = vec!["eval", "--maps", s(maps), "--data", s(data)];
    args.extend(["--layout", layout, "--out", s(out)]);
    args.extend(extra);
    run_duoclip(&args)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

/// A new user's check: maps of another method on an MVTec-layout set give every metric
/// within 1e-6 of scikit-learn and the MVTec AD reference AUPRO (tools/gen_eval_fixtures.py).
/// `widget` has a scores.json beside its crack maps; `tile`'s maps are twice the masks' size.
#[test]
fn precomputed_maps_match_sklearn_and_the_mvtec_reference() {
    let out = temp_dir("eval-maps");
    let maps = fixture("eval/maps/mvtec");
    let (ok, err) = eval_maps(&maps, &data("mvtec"), &out, &[]);
    assert!(ok, "{err}");
    let got = read_json(&out.join("results.json"));
    let want = read_json(&maps.join("expected.json"));
    for class in ["widget", "tile", "mean"] {
        let g = match class {
            "mean" => &got["mean"],
            c => &got["categories"][c],
        };
        for key in METRICS {
            let (g, w) = (g[key].as_f64().unwrap(), want[class][key].as_f64().unwrap());
            eprintln!("{class} {key}: |Δ| = {:e}", (g - w).abs());
            assert!((g - w).abs() <= 1e-6, "{class} {key}: {g} vs reference {w}");
        }
    }
    assert_eq!(
        got["categories"]["tile"]["evaluation_grids"][0],
        serde_json::json!([48, 48])
    );
    assert_eq!(got["settings"]["fpr_limit"], 0.3);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for needle in [
        "FPR limit 0.3",
        "AUPRO-fast",
        "evaluation resolution",
        "| widget | 6 (3) |",
        "grids (width×height): 48×48 (tile); 24×24 (widget)",
    ] {
        assert!(md.contains(needle), "results.md lacks `{needle}`:\n{md}");
    }
    for plot in ["widget_roc", "widget_pr", "widget_pro", "tile_pro"] {
        let img = image::open(out.join("plots").join(format!("{plot}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (480, 400), "{plot}");
    }
}

#[test]
fn the_fpr_limit_and_eval_size_are_options_and_reported() {
    let out = temp_dir("eval-options");
    let maps = fixture("eval/maps/mvtec");
    let (ok, err) = eval_maps(
        &maps,
        &data("mvtec"),
        &out,
        &["--fpr-limit", "1", "--eval-size", "24"],
    );
    assert!(ok, "{err}");
    let got = read_json(&out.join("results.json"));
    assert_eq!(got["settings"]["fpr_limit"], 1.0);
    assert_eq!(
        got["categories"]["tile"]["evaluation_grids"][0],
        serde_json::json!([24, 24])
    );
    // Up to FPR 1 the exact AUPRO is the whole area under the PRO curve: larger than to 0.3
    // for this imperfect map.
    let full = got["categories"]["widget"]["aupro"].as_f64().unwrap();
    let want = read_json(&maps.join("expected.json"))["widget"]["aupro"]
        .as_f64()
        .unwrap();
    assert!(full > want, "AUPRO to FPR 1 ({full}) vs to 0.3 ({want})");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("24 pixels on the short side") && md.contains("FPR limit 1"),
        "{md}"
    );
}

/// Every layout end to end with the detector. The maps it writes evaluate to the same pixel
/// metrics through `--maps`, and with the faithful preset each map is the one `duoclip
/// score` makes for that image.
#[test]
fn the_detector_runs_every_layout_end_to_end() {
    // (folder, layout, classes with their image counts, classes with image labels only)
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, u64)],
        &'static [&'static str],
    );
    let cases: [Case; 5] = [
        ("mvtec", "mvtec", &[("tile", 5), ("widget", 6)], &[]),
        ("visa", "visa", &[("candle", 4)], &[]),
        ("visa_csv", "visa", &[("candle", 4), ("macaroni1", 4)], &[]),
        (
            "bmad",
            "bmad",
            &[("Brain", 4), ("Chest", 4), ("Liver", 4)],
            &["Chest"],
        ),
        (
            "folder",
            "folder",
            &[("parts", 4), ("plain", 4)],
            &["plain"],
        ),
    ];
    for (dir, layout, counts, image_only) in cases {
        let classes: Vec<&str> = counts.iter().map(|c| c.0).collect();
        let out = temp_dir(&format!("eval-{dir}"));
        let (ok, err) = eval_detector(&data(dir), layout, &out, &[]);
        assert!(ok, "{dir}: {err}");
        let doc = read_json(&out.join("results.json"));
        let got: Vec<&String> = doc["categories"].as_object().unwrap().keys().collect();
        assert_eq!(got, classes, "{dir}");
        for (class, count) in counts {
            let c = &doc["categories"][class];
            assert_eq!(c["images"], *count, "{dir}/{class}");
            for key in METRICS {
                let pixel = key.starts_with("pixel") || key.starts_with("aupro");
                match (pixel && image_only.contains(class), c[key].as_f64()) {
                    (true, v) => assert_eq!(v, None, "{dir}/{class} {key}: no masks"),
                    (false, Some(v)) => {
                        assert!((0.0..=1.0).contains(&v), "{dir}/{class} {key} = {v}")
                    }
                    (false, None) => panic!("{dir}/{class} {key} undefined"),
                }
            }
        }
        assert!(
            out.join("plots")
                .join(format!("{}_roc.png", classes[0]))
                .exists()
        );
        let again = temp_dir(&format!("eval-{dir}-maps"));
        let (ok, err) = eval_maps_in(&out.join("maps"), &data(dir), layout, &again, &[]);
        assert!(ok, "{dir} --maps: {err}");
        let from_maps = read_json(&again.join("results.json"));
        for class in &classes {
            for key in ["pixel_auroc", "pixel_ap", "aupro", "aupro_fast"] {
                assert_eq!(
                    doc["categories"][class][key], from_maps["categories"][class][key],
                    "{dir}/{class} {key}"
                );
            }
        }
    }
}

#[test]
fn faithful_maps_are_the_score_commands_maps() {
    let out = temp_dir("eval-faithful");
    let (ok, err) = eval_detector(
        &data("mvtec"),
        "mvtec",
        &out,
        &["--preset", "anovl", "--category", "widget"],
    );
    assert!(ok, "{err}");
    let image = data("mvtec").join("widget/test/crack/001.png");
    let scored = temp_dir("eval-faithful-score");
    let (ok, err) = run_with_tiny_model(
        "score",
        &[
            "--object",
            "widget",
            "--preset",
            "anovl",
            "--out",
            s(&scored),
            s(&image),
        ],
    );
    assert!(ok, "{err}");
    let read = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<f32>()
            .unwrap()
    };
    let a = read(&out.join("maps/widget/test/crack/001.npy"));
    let b = read(&scored.join("001.npy"));
    assert_eq!(a.len(), 32 * 32);
    assert_eq!(a, b, "eval's map differs from score's");
    let progress = std::fs::read_to_string(out.join("progress.jsonl")).unwrap();
    let line = progress
        .lines()
        .find(|l| l.contains("crack/001.npy"))
        .unwrap();
    let entry: Value = serde_json::from_str(line).unwrap();
    let scores = read_json(&scored.join("scores.json"));
    assert_eq!(entry["score"], scores["images"][0]["score"]);
}

#[test]
fn a_rerun_resumes_without_scoring_an_image_twice() {
    let out = temp_dir("eval-resume");
    let bmad = data("bmad");
    let (ok, err) = eval_detector(&bmad, "bmad", &out, &[]);
    assert!(ok, "{err}");
    let first = read_json(&out.join("results.json"));
    let progress = out.join("progress.jsonl");
    assert_eq!(lines(&progress), 12, "one line per image");
    std::fs::remove_file(out.join("results.json")).unwrap();
    let (ok, err) = eval_detector(&bmad, "bmad", &out, &[]);
    assert!(ok, "{err}");
    assert_eq!(lines(&progress), 12, "nothing was scored again");
    let second = read_json(&out.join("results.json"));
    assert_eq!(first["categories"], second["categories"]);
    assert_eq!(first["mean"], second["mean"]);
    // A crash mid-line: the torn line is ignored, its image (only) is scored again.
    let text = std::fs::read_to_string(&progress).unwrap();
    std::fs::write(&progress, &text[..text.len() - 10]).unwrap();
    let (ok, err) = eval_detector(&bmad, "bmad", &out, &[]);
    assert!(ok, "{err}");
    assert_eq!(lines(&progress), 13, "torn line kept, one image rescored");
    assert_eq!(first["mean"], read_json(&out.join("results.json"))["mean"]);
    // Other settings never mix into the same folder.
    let (ok, err) = eval_detector(&bmad, "bmad", &out, &["--seed", "7"]);
    assert!(
        !ok && err.contains("--out") && err.contains("seed: 0 → 7"),
        "{err}"
    );
}

#[test]
fn bad_files_are_named_skipped_and_the_rest_evaluated() {
    let root = temp_dir("eval-bad");
    let (set, maps) = (root.join("data"), root.join("maps"));
    copy_dir(&data("mvtec"), &set);
    copy_dir(&fixture("eval/maps/mvtec"), &maps);
    let widget = set.join("widget");
    image::GrayImage::new(16, 16)
        .save(widget.join("ground_truth/crack/000_mask.png"))
        .unwrap();
    std::fs::remove_file(widget.join("ground_truth/hole/000_mask.png")).unwrap();
    std::fs::write(widget.join("test/good/notes.txt"), "not an image").unwrap();
    std::fs::create_dir_all(set.join("empty/test/good")).unwrap();
    std::fs::write(maps.join("tile/test/good/002.npy"), "garbage").unwrap();
    let out = root.join("out");
    let (ok, err) = eval_maps(&maps, &set, &out, &[]);
    assert!(ok, "{err}");
    let crack = widget.join("test/crack/000.png");
    for (file, why) in [
        (s(&crack).to_owned(), "is 16×16 but the image is 24×24"),
        (
            s(&widget.join("test/hole/000.png")).to_owned(),
            "no ground-truth mask",
        ),
        (
            s(&widget.join("test/good/notes.txt")).to_owned(),
            "not an image file duoclip reads",
        ),
        ("empty".to_owned(), "no usable test images"),
        (
            s(&maps.join("tile/test/good/002.npy")).to_owned(),
            "not a .npy file",
        ),
    ] {
        assert!(
            err.contains(&format!("skipped {file}: ")) && err.contains(why),
            "{file}: {why}\n{err}"
        );
    }
    let doc = read_json(&out.join("results.json"));
    assert_eq!(doc["skipped"].as_array().unwrap().len(), 5);
    assert_eq!(doc["categories"]["widget"]["images"], 4);
    assert_eq!(doc["categories"]["tile"]["images"], 4);
    assert!(doc["categories"].get("empty").is_none());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("## Skipped (5)") && md.contains("notes.txt"),
        "{md}"
    );
    // The detector skips an image it cannot decode and scores the others.
    std::fs::write(widget.join("test/good/001.png"), "not a png").unwrap();
    let (ok, err) = eval_detector(&set, "mvtec", &root.join("out2"), &["--category", "widget"]);
    assert!(ok, "{err}");
    assert!(err.contains("001.png") && err.contains("PNG"), "{err}");
    let doc = read_json(&root.join("out2/results.json"));
    assert_eq!(doc["categories"]["widget"]["images"], 3);
    let skipped = doc["skipped"].as_array().unwrap();
    let about = |name: &str| {
        skipped
            .iter()
            .filter(|s| s["file"].as_str().unwrap().ends_with(name))
            .count()
    };
    assert_eq!(about("good/001.png"), 1, "reported once: {skipped:?}");
}

#[test]
fn bad_options_are_named() {
    let out = temp_dir("eval-options-bad");
    let maps = fixture("eval/maps/mvtec");
    let mvtec = data("mvtec");
    let (ok, err) = eval_maps(&maps, &mvtec, &out, &["--split", "valid"]);
    assert!(
        !ok && err.contains("--split") && err.contains("bmad"),
        "{err}"
    );
    let (ok, err) = eval_maps(&maps, &mvtec, &out, &["--category", "bottle"]);
    assert!(
        !ok && err.contains("bottle") && err.contains("tile, widget"),
        "{err}"
    );
    let (ok, err) = eval_maps(&maps, &mvtec, &out, &["--fpr-limit", "0"]);
    assert!(!ok && err.contains("--fpr-limit"), "{err}");
    let (ok, err) = eval_maps(&maps, &out, &out, &[]);
    assert!(
        !ok && err.contains("--data") && err.contains("no test images"),
        "{err}"
    );
    let (ok, err) = run_duoclip(&[
        "eval",
        "--data",
        s(&mvtec),
        "--layout",
        "mvtec",
        "--out",
        s(&out),
    ]);
    assert!(
        !ok && err.contains("--model") && err.contains("--maps"),
        "{err}"
    );
    let (ok, err) = run_duoclip(&[
        "eval",
        "--maps",
        s(&maps),
        "--data",
        s(&mvtec),
        "--layout",
        "kaggle",
        "--out",
        s(&out),
    ]);
    assert!(
        !ok && err.contains("kaggle") && err.contains("mvtec"),
        "{err}"
    );
    assert!(
        !out.join("results.json").exists(),
        "failed runs write no results"
    );
}

/// A wide image is tiled by the detector (S×W′ map); its mask is brought to that grid.
#[test]
fn wide_images_are_evaluated_on_the_tiled_map_grid() {
    let root = temp_dir("eval-wide");
    let class = root.join("data/strip");
    for dir in ["good", "bad", "masks/bad"] {
        std::fs::create_dir_all(class.join(dir)).unwrap();
    }
    let picture = |shade: u8| {
        image::RgbImage::from_fn(48, 24, |x, y| {
            image::Rgb([shade, (x * 5) as u8, (y * 9) as u8])
        })
    };
    picture(90).save(class.join("good/a.png")).unwrap();
    picture(160).save(class.join("good/b.png")).unwrap();
    picture(40).save(class.join("bad/c.png")).unwrap();
    image::GrayImage::from_fn(48, 24, |x, _| image::Luma([if x > 40 { 255 } else { 0 }]))
        .save(class.join("masks/bad/c.png"))
        .unwrap();
    let out = root.join("out");
    let (ok, err) = eval_detector(&root.join("data"), "folder", &out, &[]);
    assert!(ok, "{err}");
    let doc = read_json(&out.join("results.json"));
    let strip = &doc["categories"]["strip"];
    // The tiny model's input is 32: 24 rows → 32, 48 columns → 64.
    assert_eq!(strip["evaluation_grids"], serde_json::json!([[64, 32]]));
    assert_eq!(strip["pixels"], 3 * 64 * 32);
    // Columns 41..=47 of 48 are anomalous; output column x samples ⌊(x + ½)·48/64⌋, which
    // is ≥ 41 for x = 55..=63: 9 of 64 columns.
    assert_eq!(strip["anomalous_pixels"], 9 * 32);
}

/// Copies the folder `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `--split valid` evaluates BMAD's validation images, not its test images: a copy of the
/// fixture whose Brain/valid holds one anomalous image fewer than Brain/test tells them apart;
/// Chest (image labels only) has no validation split in BMAD and is not evaluated there.
#[test]
fn the_valid_split_is_evaluated_where_bmad_has_one() {
    let bmad = temp_dir("bmad-valid").join("bmad");
    copy_tree(&data("bmad"), &bmad);
    for part in ["img", "label"] {
        std::fs::remove_file(bmad.join(format!("Brain/valid/Ungood/{part}/1.png"))).unwrap();
    }
    let images = |extra: &[&str]| {
        let out = temp_dir("eval-bmad-split");
        let (ok, err) = eval_detector(&bmad, "bmad", &out, extra);
        assert!(ok, "{extra:?}: {err}");
        let doc = read_json(&out.join("results.json"));
        let categories = doc["categories"].as_object().unwrap();
        let counts: Vec<(String, u64)> = categories
            .iter()
            .map(|(class, c)| (class.clone(), c["images"].as_u64().unwrap()))
            .collect();
        (counts, doc["run"]["split"].clone())
    };
    let pairs = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
    };
    let (valid, split) = images(&["--split", "valid"]);
    assert_eq!(valid, pairs(&[("Brain", 3), ("Liver", 4)]));
    assert_eq!(split, "valid");
    let (test, split) = images(&[]);
    assert_eq!(test, pairs(&[("Brain", 4), ("Chest", 4), ("Liver", 4)]));
    assert_eq!(split, "test");
}
