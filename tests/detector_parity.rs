//! The whole detector against its end-to-end torch reference (tools/gen_detector_fixture.py):
//! AnoVL's map and image score with 1 and 22 views, the product preset on a pair, and a wide
//! image in two tiles, on two tiny OpenCLIP models:
//! - `detector/`: the random `openclip_tiny` (cos(t_n, t_a) ≈ 0.9997, so its maps span ~0.01);
//! - `openclip_signal/detector/`: `openclip_signal` (tools/gen_signal_fixture.py), weights shaped
//!   so that its maps span ≥ 0.3 and its pair's scores differ by ≥ 0.05 (`signal` checks it).

use crate::common;

use burn::tensor::Device;
use common::*;
use duoclip::clip::{ArchOverrides, Tokenizer};
use duoclip::detect::config::DetectorConfig;
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::image::{ImageLimits, RgbImage, decode};
use duoclip::prompts::{Domain, text_anchors};
use serde_json::Value;

/// The reference folders under tests/fixtures: random model, shaped model.
const TINY: &str = "detector";
const SIGNAL: &str = "openclip_signal/detector";

/// The detector of reference `r`'s model (its `model`, `text_heads`, `object`).
fn detector(r: &Value, config: DetectorConfig) -> Detector {
    let device = Device::flex();
    let overrides = ArchOverrides {
        text_heads: Some(r["text_heads"].as_u64().unwrap() as usize),
        ..Default::default()
    };
    let clip = load(r["model"].as_str().unwrap(), overrides, &device);
    assert_eq!(r["domain"], "object");
    let object = r["object"].as_str().unwrap();
    let anchors = text_anchors(&clip, &Tokenizer::new(), &Domain::Object, object).unwrap();
    Detector::new(clip, anchors, config, device).unwrap()
}

/// The model's own `image.png`, next to `model.safetensors`.
fn model_image(r: &Value) -> RgbImage {
    let model = r["model"].as_str().unwrap();
    let dir = model.rsplit_once('/').map_or("", |(dir, _)| dir);
    image(&format!("{dir}/image.png"))
}

fn image(rel: &str) -> RgbImage {
    let path = fixture(rel);
    decode(&std::fs::read(&path).unwrap(), rel, &ImageLimits::default()).unwrap()
}

/// `img` with an RGB block of `cells`×`cells` patches (default 1) pasted with its top-left at
/// patch cell (row, col), as the reference.
fn pasted(mut img: RgbImage, paste: &Value) -> RgbImage {
    let rgb: Vec<u8> = paste["rgb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let cell: Vec<u32> = paste["cell"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let p = paste["patch"].as_u64().unwrap() as u32;
    let n = paste["cells"].as_u64().unwrap_or(1) as u32;
    for y in cell[0] * p..(cell[0] + n) * p {
        for x in cell[1] * p..(cell[1] + n) * p {
            let i = ((y * img.width + x) * 3) as usize;
            img.data[i..i + 3].copy_from_slice(&rgb);
        }
    }
    img
}

/// Scores `images` as one group that references itself (no known-good references).
fn score(d: &Detector, images: &[RgbImage]) -> Vec<Detection> {
    let prepared: Vec<Prepared> = images.iter().map(|i| d.prepare(i)).collect();
    d.score(&prepared.iter().collect::<Vec<_>>(), &[]).unwrap()
}

fn check(what: &str, got: &Detection, want: &Value) {
    assert_eq!(
        [got.height, got.width],
        [
            want["height"].as_u64().unwrap() as usize,
            want["width"].as_u64().unwrap() as usize
        ],
        "{what}: map shape"
    );
    let map = floats(&want["map"]);
    assert_close(&format!("{what} map"), &got.map, &map, MAP_TOL);
    let map_err = max_abs_diff(&got.map, &map);
    let (score, ref_score) = (got.score, want["score"].as_f64().unwrap() as f32);
    let err = (score - ref_score).abs();
    assert!(
        err <= MAP_TOL,
        "{what} score: {score} vs reference {ref_score} (error {err:e})"
    );
    eprintln!(
        "{what}: map max abs error {map_err:.1e}; score {score} (reference {ref_score}, error {err:.1e})"
    );
}

fn anovl_with_1_and_22_views(dir: &str) {
    let r = reference(dir);
    for (key, views) in [("anovl_v1", 1), ("anovl_v22", 22)] {
        let d = detector(
            &r,
            DetectorConfig {
                views,
                ..DetectorConfig::anovl()
            },
        );
        let got = score(&d, &[model_image(&r)]);
        check(&format!("{dir} {key}"), &got[0], &r[key][0]);
    }
}

#[test]
fn anovl_map_and_score_match_torch_with_1_and_22_views() {
    anovl_with_1_and_22_views(TINY);
}

#[test]
fn anovl_map_and_score_match_torch_with_1_and_22_views_signal() {
    anovl_with_1_and_22_views(SIGNAL);
}

fn product_pair(dir: &str) {
    let r = reference(dir);
    let c = &r["product_config"];
    let config = DetectorConfig {
        lambda: c["lambda"].as_f64().unwrap() as f32,
        ref_layers: c["ref_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect(),
        neighbourhood: c["neighbourhood"].as_u64().unwrap() as usize,
        views: c["views"].as_u64().unwrap() as usize,
        ..DetectorConfig::product(2)
    };
    assert_eq!(config.ref_layers, [0, 1]);
    let d = detector(&r, config);
    let img = model_image(&r);
    let got = score(&d, &[img.clone(), pasted(img, &r["paste"])]);
    check(
        &format!("{dir} product image.png"),
        &got[0],
        &r["product"][0],
    );
    check(&format!("{dir} product pasted"), &got[1], &r["product"][1]);
}

#[test]
fn product_pair_matches_torch() {
    product_pair(TINY);
}

/// On the shaped model the pair's scores differ by far more than the tolerance, so matching
/// each within it also proves the two images' results are not swapped.
#[test]
fn product_pair_matches_torch_signal() {
    let r = reference(SIGNAL);
    let want: Vec<f32> = (0..2)
        .map(|i| r["product"][i]["score"].as_f64().unwrap() as f32)
        .collect();
    assert!((want[0] - want[1]).abs() > 1000.0 * MAP_TOL, "{want:?}");
    product_pair(SIGNAL);
}

fn wide_in_two_tiles(dir: &str) {
    let r = reference(dir);
    let want = &r["wide"];
    let d = detector(&r, DetectorConfig::anovl());
    let wide = image(want["file"].as_str().unwrap());
    assert_eq!((wide.width, wide.height), (48, 32));
    let offsets: Vec<u32> = want["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(d.prepare(&wide).offsets, offsets);
    let got = score(&d, &[wide]);
    check(&format!("{dir} wide"), &got[0], want);
}

#[test]
fn wide_image_in_two_tiles_matches_torch() {
    wide_in_two_tiles(TINY);
}

#[test]
fn wide_image_in_two_tiles_matches_torch_signal() {
    wide_in_two_tiles(SIGNAL);
}

/// The shaped model's reference keeps its signal: every map spans ≥ 0.3 of [0, 1] and the
/// pair's scores differ by ≥ 0.05 (the random model's span ~0.01 and differ by ~1e-4), so a
/// constant, flipped or swapped map is far outside the tolerance.
#[test]
fn signal_fixture_has_signal() {
    let r = reference(SIGNAL);
    for key in ["anovl_v1", "anovl_v22", "product", "wide"] {
        let entries = match &r[key] {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        for (i, e) in entries.iter().enumerate() {
            let map = floats(&e["map"]);
            let (lo, hi) = map
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            assert!(hi - lo >= 0.3, "{key}[{i}] map spans only {lo}..{hi}");
        }
    }
    let gap = (r["product"][0]["score"].as_f64().unwrap()
        - r["product"][1]["score"].as_f64().unwrap())
    .abs();
    assert!(gap >= 0.05, "the pair's scores differ by only {gap}");
}
