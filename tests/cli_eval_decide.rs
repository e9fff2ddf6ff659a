//! `duoclip eval --decide` as a user runs it: thresholds calibrated on each class's known-good
//! training images, equal to `duoclip calibrate`'s on the same images, and decision metrics
//! equal to a recomputation here from the maps and scores eval wrote; bad input named.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32_of(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

/// The spot every anomalous test image has, and its mask marks.
fn in_spot(x: u32, y: u32) -> bool {
    (10..20).contains(&x) && (8..16).contains(&y)
}

/// A 32×32 picture (the tiny model's input size, so maps and masks share a grid).
fn picture(shade: u8, spot: bool) -> image::RgbImage {
    image::RgbImage::from_fn(32, 32, |x, y| {
        if spot && in_spot(x, y) {
            image::Rgb([250, 20, 20])
        } else {
            image::Rgb([shade, (x * 7) as u8, (y * 5) as u8])
        }
    })
}

/// A folder-layout class `parts`: four training goods, two good and two bad test images
/// with masks of the spot.
fn dataset(root: &Path) -> (PathBuf, Vec<PathBuf>) {
    let class = root.join("data/parts");
    for dir in ["train/good", "good", "bad", "masks/bad"] {
        std::fs::create_dir_all(class.join(dir)).unwrap();
    }
    let train: Vec<PathBuf> = (0..4)
        .map(|i| class.join(format!("train/good/t{i}.png")))
        .collect();
    for (i, file) in train.iter().enumerate() {
        picture(80 + 20 * i as u8, false).save(file).unwrap();
    }
    picture(90, false).save(class.join("good/g0.png")).unwrap();
    picture(130, false).save(class.join("good/g1.png")).unwrap();
    for (stem, shade) in [("b0", 110), ("b1", 60)] {
        picture(shade, true)
            .save(class.join(format!("bad/{stem}.png")))
            .unwrap();
        image::GrayImage::from_fn(32, 32, |x, y| image::Luma([255 * in_spot(x, y) as u8]))
            .save(class.join(format!("masks/bad/{stem}.png")))
            .unwrap();
    }
    (root.join("data"), train)
}

/// `eval --decide --false-alarm 0.5 --calibration-goods 3` on four training goods: the first
/// three by name are used; k = ⌈(3+1)·0.5⌉ = 2, so the thresholds are the second smallest
/// score and map maximum. The verdicts and pixel counts are recomputed from the written maps.
/// Under both presets: test images in pairs (product) and each alone (anovl).
#[test]
fn decisions_follow_thresholds_calibrated_on_the_training_goods() {
    for preset in ["product", "anovl"] {
        decisions_under(preset);
    }
}

fn decisions_under(preset: &str) {
    let root = temp_dir(&format!("eval-decide-{preset}"));
    let (data, train) = dataset(&root);
    let out = root.join("out");
    let decide = [
        "--decide",
        "--false-alarm",
        "0.5",
        "--calibration-goods",
        "3",
        "--preset",
        preset,
    ];
    let mut args = vec!["--data", s(&data), "--layout", "folder", "--out", s(&out)];
    args.extend(decide);
    let (ok, err) = run_with_tiny_model("eval", &args);
    assert!(ok, "{err}");
    let doc = read_json(&out.join("results.json"));
    let class = &doc["categories"]["parts"];
    assert_eq!(class["images"], 4, "training goods are not test images");
    let d = &class["decisions"];
    let goods = d["calibration"]["images"].as_array().unwrap();
    let files: Vec<&str> = goods.iter().map(|g| g["file"].as_str().unwrap()).collect();
    assert_eq!(files, train[..3].iter().map(|p| s(p)).collect::<Vec<_>>());

    // The thresholds, by hand from the good images' scores.
    let scores: Vec<f32> = goods.iter().map(|g| f32_of(&g["score"])).collect();
    let peaks: Vec<f32> = goods.iter().map(|g| f32_of(&g["peak"])).collect();
    let second = |v: &[f32]| {
        let mut v = v.to_vec();
        v.sort_by(f32::total_cmp);
        v[1]
    };
    let t = &d["calibration"]["thresholds"];
    let (image, band, pixel) = (f32_of(&t["image"]), f32_of(&t["band"]), f32_of(&t["pixel"]));
    assert_eq!((image, pixel), (second(&scores), second(&peaks)));
    assert_eq!(t["bound"], 0.5);
    let median = second(&scores) as f64;
    let deviations: Vec<f32> = scores
        .iter()
        .map(|&s| (s as f64 - median).abs() as f32)
        .collect();
    let want_band = ((1.4826 * second(&deviations) as f64) as f32).max(1e-6);
    assert!((band - want_band).abs() <= 1e-7, "{band} vs {want_band}");

    // `duoclip calibrate` on the same three images: the same leave-one-out scores and
    // thresholds.
    let file = root.join("calibration.json");
    let mut args = vec![
        "--object",
        "parts",
        "--false-alarm",
        "0.5",
        "--preset",
        preset,
        "--out",
        s(&file),
    ];
    args.extend(train[..3].iter().map(|p| s(p)));
    let (ok, err) = run_with_tiny_model("calibrate", &args);
    assert!(ok, "{err}");
    let calibration = read_json(&file);
    assert_eq!(&calibration["thresholds"], t);
    for (g, c) in goods.iter().zip(calibration["images"].as_array().unwrap()) {
        assert_eq!((&g["score"], &g["peak"]), (&c["score"], &c["peak"]));
    }

    // The verdicts and pixel counts, by hand from progress.jsonl and the maps.
    let progress = std::fs::read_to_string(out.join("progress.jsonl")).unwrap();
    let (mut tally, mut pixels) = ([[0u64; 3]; 2], [0u64; 3]);
    for line in progress.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let rel = entry["map"].as_str().unwrap();
        let anomalous = rel.contains("/bad/");
        let margin = f32_of(&entry["score"]) - image;
        let verdict = match margin {
            m if m > band => 0,
            m if m < -band => 2,
            _ => 1,
        };
        tally[!anomalous as usize][verdict] += 1;
        let bytes = std::fs::read(out.join("maps").join(rel)).unwrap();
        let map = npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<f32>()
            .unwrap();
        assert_eq!(map.len(), 32 * 32);
        for (i, &v) in map.iter().enumerate() {
            let truth = anomalous && in_spot(i as u32 % 32, i as u32 / 32);
            match (v > pixel, truth) {
                (true, true) => pixels[0] += 1,
                (true, false) => pixels[1] += 1,
                (false, true) => pixels[2] += 1,
                (false, false) => {}
            }
        }
    }
    assert_eq!(tally.iter().flatten().sum::<u64>(), 4);
    let m = &d["metrics"];
    let counts =
        |t: &[u64; 3]| serde_json::json!({"anomalous": t[0], "uncertain": t[1], "ok": t[2]});
    assert_eq!(m["verdicts"]["anomalous_images"], counts(&tally[0]));
    assert_eq!(m["verdicts"]["normal_images"], counts(&tally[1]));
    // serde_json reads floats to within an ulp or so, not always to the nearest.
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    let close = |got: &Value, want: Option<f64>| match (got.as_f64(), want) {
        (Some(g), Some(w)) => (g - w).abs() <= 1e-12,
        (g, w) => g.is_none() && w.is_none() && got.is_null(),
    };
    // Images: `anomalous` verdicts only, then with `uncertain` counted as anomalous.
    for (key, upto) in [("image", 1), ("image_or_uncertain", 2)] {
        let tp: u64 = tally[0][..upto].iter().sum();
        let fp: u64 = tally[1][..upto].iter().sum();
        let fn_: u64 = tally[0][upto..].iter().sum();
        assert!(close(&m[key]["precision"], ratio(tp, tp + fp)), "{key}");
        assert!(close(&m[key]["recall"], ratio(tp, tp + fn_)), "{key}");
        assert_eq!(m[key]["true_positives"], tp, "{key}");
    }
    let [tp, fp, fn_] = pixels;
    assert_eq!(tp + fn_, 2 * 10 * 8, "two masks of the spot");
    let p = &m["pixel"];
    assert_eq!(
        (
            &p["true_positives"],
            &p["false_positives"],
            &p["false_negatives"]
        ),
        (&tp.into(), &fp.into(), &fn_.into())
    );
    assert!(close(&p["precision"], ratio(tp, tp + fp)), "{p}");
    assert!(close(&p["recall"], ratio(tp, tp + fn_)), "{p}");
    assert!(close(&p["f1"], ratio(2 * tp, 2 * tp + fp + fn_)), "{p}");
    eprintln!("{preset}: verdicts {tally:?}, pixels (tp, fp, fn) {pixels:?}");

    // One class: its values are the mean's; both reports carry them.
    let mean = &doc["mean"]["decisions"];
    assert_eq!(mean["pixel_f1"], p["f1"]);
    assert_eq!(mean["image_recall"], m["image"]["recall"]);
    assert_eq!(mean["classes"]["pixel_f1"], 1);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let row = format!("| parts | 3 | {image:.4} ± {band:.1e} | {pixel:.4} | 0.5000 |");
    assert!(
        md.contains("## Decisions") && md.contains(&row),
        "results.md lacks `{row}`:\n{md}"
    );

    // A rerun scores no test image again but calibrates again, to the same thresholds.
    std::fs::remove_file(out.join("results.json")).unwrap();
    let mut args = vec!["--data", s(&data), "--layout", "folder", "--out", s(&out)];
    args.extend(decide);
    let (ok, err) = run_with_tiny_model("eval", &args);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("progress.jsonl")).unwrap(),
        progress
    );
    let again = read_json(&out.join("results.json"));
    assert_eq!(again["categories"]["parts"]["decisions"], *d);
}

#[test]
fn decide_without_training_goods_or_with_maps_is_refused_by_name() {
    // The folder-layout fixture has no training images.
    let folder = fixture("eval/datasets/folder");
    let out = temp_dir("eval-decide-bad");
    let base = ["--data", s(&folder), "--layout", "folder", "--out", s(&out)];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        run_with_tiny_model("eval", &args)
    };
    let (ok, err) = with(&["--decide"]);
    let expected = folder.join("parts/train/good");
    assert!(
        !ok && err.contains("--decide") && err.contains("`parts`") && err.contains(s(&expected)),
        "{err}"
    );
    let (ok, err) = with(&["--decide", "--false-alarm", "1.5"]);
    assert!(!ok && err.contains("--false-alarm"), "{err}");
    let (ok, err) = with(&["--false-alarm", "0.1"]);
    assert!(!ok && err.contains("--decide"), "{err}");
    let (maps, mvtec) = (fixture("eval/maps/mvtec"), fixture("eval/datasets/mvtec"));
    let mut args = vec!["eval", "--maps", s(&maps), "--data", s(&mvtec)];
    args.extend(["--layout", "mvtec", "--out", s(&out), "--decide"]);
    let (ok, err) = run_duoclip(&args);
    assert!(
        !ok && err.contains("--decide") && err.contains("--maps") && err.contains("--model"),
        "{err}"
    );
    // A class whose training images all fail to decode is named too.
    let root = temp_dir("eval-decide-unreadable");
    let (data, train) = dataset(&root);
    for file in &train {
        std::fs::write(file, "not a png").unwrap();
    }
    let mut args = vec!["--data", s(&data), "--layout", "folder", "--out", s(&out)];
    args.push("--decide");
    let (ok, err) = run_with_tiny_model("eval", &args);
    assert!(
        !ok && err.contains("`parts`") && err.contains("t0.png") && err.contains("none of the 4"),
        "{err}"
    );
    assert!(
        !out.join("results.json").exists(),
        "failed runs write no results"
    );
}
