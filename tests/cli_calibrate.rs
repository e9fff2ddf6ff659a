//! `duoclip calibrate` and `score --calibration` as a user runs them: the calibration file,
//! leave-one-out scores equal to `score --reference`'s, verdicts and regions that follow the
//! thresholds written, and mismatched settings named.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use sha2::Digest;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Three good images of three sizes (32², 48², 30²): a calibration takes any sizes.
fn good_images() -> Vec<PathBuf> {
    [
        "openclip_tiny/image.png",
        "openclip_tiny/image_big.png",
        "hf_tiny/image.png",
    ]
    .map(fixture)
    .to_vec()
}

fn calibrate(out: &Path, extra: &[&str], good: &[PathBuf]) -> (bool, String) {
    let mut args = vec!["--object", "metal_nut", "--out", s(out)];
    args.extend(extra);
    args.extend(good.iter().map(|p| s(p)));
    run_with_tiny_model("calibrate", &args)
}

fn score(out: &Path, extra: &[&str], images: &[&Path]) -> (bool, String) {
    let mut args = vec!["--object", "metal_nut", "--out", s(out)];
    args.extend(extra);
    args.extend(images.iter().map(|p| s(p)));
    run_with_tiny_model("score", &args)
}

fn floats_of(images: &Value, key: &str) -> Vec<f64> {
    let list = images.as_array().unwrap();
    list.iter().map(|i| i[key].as_f64().unwrap()).collect()
}

#[test]
fn calibration_is_leave_one_out_and_records_its_setting() {
    let dir = temp_dir("calibrate");
    let file = dir.join("calibration.json");
    let good = good_images();
    let (ok, err) = calibrate(&file, &[], &good);
    assert!(ok, "{err}");
    let c = read_json(&file);
    assert_eq!(c["format"], "duoclip-calibration");
    assert_eq!(c["duoclip"], env!("CARGO_PKG_VERSION"));
    let weights = std::fs::read(fixture("openclip_tiny/model.safetensors")).unwrap();
    assert_eq!(
        c["model_sha256"],
        format!("{:x}", sha2::Sha256::digest(&weights))
    );
    let settings = &c["settings"];
    assert_eq!(
        (
            &settings["preset"],
            &settings["domain"],
            &settings["object"]
        ),
        (&"product".into(), &"object".into(), &"metal_nut".into())
    );
    assert_eq!(settings["views"], 1);
    // N = 3 < 19 for α = 0.05: k = ⌈4 · 0.95⌉ = 4 > N, so the largest score and map maximum,
    // with the bound 1/(N+1).
    let (scores, peaks) = (
        floats_of(&c["images"], "score"),
        floats_of(&c["images"], "peak"),
    );
    let t = &c["thresholds"];
    let max = |v: &[f64]| v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(t["image"].as_f64().unwrap(), max(&scores));
    assert_eq!(t["pixel"].as_f64().unwrap(), max(&peaks));
    assert_eq!(t["bound"], 0.25);
    assert_eq!(t["good"]["count"], 3);
    // Each good image's score is the one `score --reference <the other two>` gives it.
    let out = dir.join("first");
    let refs = ["--reference", s(&good[1]), "--reference", s(&good[2])];
    let (ok, err) = score(&out, &refs, &[&good[0]]);
    assert!(ok, "{err}");
    let alone = read_json(&out.join("scores.json"))["images"][0]["score"]
        .as_f64()
        .unwrap();
    assert!((alone - scores[0]).abs() < 1e-6, "{alone} vs {}", scores[0]);
}

#[test]
fn calibrated_scores_carry_verdicts_and_regions_that_follow_the_thresholds() {
    let dir = temp_dir("calibrated");
    let file = dir.join("calibration.json");
    let good = good_images();
    let (ok, err) = calibrate(&file, &["--false-alarm", "0.2"], &good);
    assert!(ok, "{err}");
    let out = dir.join("scores");
    let test = fixture("hf_tiny/image_big.png");
    let refs = ["--reference", s(&good[0]), "--reference", s(&good[1])];
    let extra = [&refs[..], &["--calibration", s(&file)]].concat();
    let (ok, err) = score(&out, &extra, &[&good[2], &test]);
    assert!(ok, "{err}");
    let doc = read_json(&out.join("scores.json"));
    let t = &doc["calibration"]["thresholds"];
    assert_eq!(t, &read_json(&file)["thresholds"]);
    let (image, band, pixel) = (
        t["image"].as_f64().unwrap() as f32,
        t["band"].as_f64().unwrap() as f32,
        t["pixel"].as_f64().unwrap() as f32,
    );
    for entry in doc["images"].as_array().unwrap() {
        let score = entry["score"].as_f64().unwrap() as f32;
        let margin = score - image;
        assert_eq!(entry["margin"].as_f64().unwrap() as f32, margin);
        let want = match margin {
            m if m > band => "anomalous",
            m if m < -band => "ok",
            _ => "uncertain",
        };
        assert_eq!(entry["verdict"], want, "{entry}");
        let map = out.join(entry["map"].as_str().unwrap());
        let values = check_regions(&map, &entry["regions"], pixel);
        check_outlines(&map.with_extension("png"), &values, pixel);
    }
    // The good image, scored as in its calibration, stays under the pixel threshold; the
    // other, not among them, shows a region: the checks above saw both cases.
    let count = |i: usize| doc["images"][i]["regions"].as_array().unwrap().len();
    assert_eq!((count(0), count(1) > 0), (0, true));
}

/// The regions cover exactly the map's pixels above `pixel`, each peak among them. Returns
/// the map.
fn check_regions(map: &Path, regions: &Value, pixel: f32) -> Vec<f32> {
    let bytes = std::fs::read(map).unwrap();
    let values = npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<f32>()
        .unwrap();
    let above = values.iter().filter(|&&v| v > pixel).count() as u64;
    let regions = regions.as_array().unwrap();
    let area: u64 = regions.iter().map(|r| r["area"].as_u64().unwrap()).sum();
    assert_eq!(area, above, "{}", map.display());
    let peaks: Vec<f64> = regions
        .iter()
        .map(|r| r["peak"].as_f64().unwrap())
        .collect();
    assert!(peaks.iter().all(|&p| p as f32 > pixel));
    assert!(peaks.windows(2).all(|w| w[0] >= w[1]), "highest peak first");
    values
}

/// The overlay outlines the regions in cyan (which the heat map never blends to): some pixel
/// where the map is above `pixel` is cyan, and none where it is not.
fn check_outlines(png: &Path, map: &[f32], pixel: f32) {
    let overlay = image::open(png).unwrap().to_rgb8();
    let cyan: Vec<bool> = overlay.pixels().map(|p| p.0 == [0, 255, 255]).collect();
    let above = map.iter().map(|&v| v > pixel);
    let (on, off): (Vec<_>, Vec<_>) = cyan.iter().zip(above).partition(|(_, above)| *above);
    assert_eq!(
        on.iter().any(|(c, _)| **c),
        !on.is_empty(),
        "{}",
        png.display()
    );
    assert!(
        off.iter().all(|(c, _)| !**c),
        "{}: outline outside a region",
        png.display()
    );
}

#[test]
fn a_calibration_from_another_setting_is_refused_by_name() {
    let dir = temp_dir("mismatch");
    let file = dir.join("calibration.json");
    let (ok, err) = calibrate(&file, &[], &good_images());
    assert!(ok, "{err}");
    let image = fixture("openclip_tiny/image.png");
    let with = |extra: &[&str]| {
        let args = [extra, &["--calibration", s(&file)]].concat();
        score(&dir.join("out"), &args, &[&image, &image])
    };
    let (ok, err) = with(&["--preset", "anovl"]);
    assert!(
        !ok && err.contains("--calibration")
            && err.contains("preset \"product\" (calibration) vs \"anovl\" (now)"),
        "{err}"
    );
    let (ok, err) = with(&["--domain", "texture"]);
    assert!(
        !ok && err.contains("domain \"object\" (calibration) vs \"texture\" (now)"),
        "{err}"
    );
    let (ok, err) = with(&["--views", "22", "--lambda", "0.25"]);
    assert!(
        !ok && err.contains("views 1") && err.contains("lambda 0.5 (calibration) vs 0.25 (now)"),
        "{err}"
    );
    let other_model = fixture("hf_tiny");
    let (ok, err) = run_duoclip(&[
        "score",
        "--model",
        s(&other_model),
        "--object",
        "metal_nut",
        "--calibration",
        s(&file),
        "--out",
        s(&dir.join("hf")),
        s(&image),
    ]);
    assert!(!ok && err.contains("model sha256"), "{err}");
    std::fs::write(dir.join("not.json"), "{\"format\": \"something\"}").unwrap();
    let (ok, err) = score(
        &dir.join("x"),
        &["--calibration", s(&dir.join("not.json"))],
        &[&image],
    );
    assert!(!ok && err.contains("duoclip-calibration"), "{err}");
}

#[test]
fn bad_calibrations_are_refused_with_what_to_do() {
    let dir = temp_dir("calibrate-bad");
    let file = dir.join("c.json");
    let (ok, err) = calibrate(&file, &[], &[]);
    assert!(!ok && err.contains("<GOOD>"), "no good images: {err}");
    let one = [fixture("openclip_tiny/image.png")];
    let (ok, err) = calibrate(&file, &["--false-alarm", "1.5"], &one);
    assert!(
        !ok && err.contains("--false-alarm") && err.contains("between 0 and 1"),
        "{err}"
    );
    let (ok, err) = calibrate(&file, &["--reference", s(&one[0])], &one);
    assert!(
        !ok && err.contains("--reference") && err.contains("GOOD"),
        "{err}"
    );
    assert!(!file.exists());
    // One good image is scored alone; its own score is the threshold, bound 1/2.
    let (ok, err) = calibrate(&file, &[], &one);
    assert!(ok, "{err}");
    assert_eq!(read_json(&file)["thresholds"]["bound"], 0.5);
}
