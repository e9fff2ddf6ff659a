//! The whole detector against its end-to-end torch reference (tools/gen_detector_fixture.py,
//! tests/fixtures/detector/reference.json) on the tiny OpenCLIP model: AnoVL's map and image
//! score with 1 and 22 views, the product preset on a pair, and a wide image in two tiles.

use crate::common;

use burn::tensor::Device;
use common::*;
use duoclip::clip::{ArchOverrides, Tokenizer};
use duoclip::detect::config::DetectorConfig;
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::image::{ImageLimits, RgbImage, decode};
use duoclip::prompts::{Domain, text_anchors};
use serde_json::Value;

fn detector(config: DetectorConfig) -> Detector {
    let device = Device::flex();
    let overrides = ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    };
    let clip = load("openclip_tiny/model.safetensors", overrides, &device);
    let anchors = text_anchors(&clip, &Tokenizer::new(), &Domain::Object, "metal_nut").unwrap();
    Detector::new(clip, anchors, config, device).unwrap()
}

fn image(rel: &str) -> RgbImage {
    let path = fixture(rel);
    decode(&std::fs::read(&path).unwrap(), rel, &ImageLimits::default()).unwrap()
}

/// `img` with an RGB block of one patch pasted over patch cell (row, col), as the reference.
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
    for y in cell[0] * p..(cell[0] + 1) * p {
        for x in cell[1] * p..(cell[1] + 1) * p {
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
    let map_err = got
        .map
        .iter()
        .zip(&map)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
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

#[test]
fn anovl_map_and_score_match_torch_with_1_and_22_views() {
    let r = reference("detector");
    for (key, views) in [("anovl_v1", 1), ("anovl_v22", 22)] {
        let d = detector(DetectorConfig {
            views,
            ..DetectorConfig::anovl()
        });
        let got = score(&d, &[image("openclip_tiny/image.png")]);
        check(key, &got[0], &r[key][0]);
    }
}

#[test]
fn product_pair_matches_torch() {
    let r = reference("detector");
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
    let d = detector(config);
    let img = image("openclip_tiny/image.png");
    let got = score(&d, &[img.clone(), pasted(img, &r["paste"])]);
    check("product image.png", &got[0], &r["product"][0]);
    check("product pasted", &got[1], &r["product"][1]);
}

#[test]
fn wide_image_in_two_tiles_matches_torch() {
    let r = reference("detector");
    let want = &r["wide"];
    let d = detector(DetectorConfig::anovl());
    let wide = image("detector/wide.png");
    assert_eq!((wide.width, wide.height), (48, 32));
    let offsets: Vec<u32> = want["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(d.prepare(&wide).offsets, offsets);
    let got = score(&d, &[wide]);
    check("wide", &got[0], want);
}
