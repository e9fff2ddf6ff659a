//! Maps, views and text scores against the torch references of tools/gen_map_fixture.py
//! (tests/fixtures/maps/reference.json): max abs error ≤ 1e-5 for pure map and view
//! operations, ≤ 1e-4 for values computed through the tiny CLIP.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use duoclip::detect::map::{
    box_filter3, clip_tiles, merge_tiles, resized_width, smooth_and_upsample, tile_offsets,
    upsample,
};
use duoclip::detect::text_score::{image_abnormality, patch_abnormality};
use duoclip::detect::views::views;
use duoclip::image::RgbImage;
use serde_json::Value;

const MAP_TOL: f32 = 1e-5;

fn maps_reference() -> Value {
    reference("maps")
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().expect("unsigned integer") as usize
}

fn tensor2(values: Vec<f32>, rows: usize, device: &Device) -> Tensor<2> {
    let cols = values.len() / rows;
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

fn host1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

#[test]
fn box_filter_and_upsampling_match_torch() {
    let r = maps_reference();
    for case in r["smoothing"].as_array().unwrap() {
        let (h, w) = (usize_of(&case["h"]), usize_of(&case["w"]));
        let (oh, ow) = (usize_of(&case["out_h"]), usize_of(&case["out_w"]));
        let grid = floats(&case["grid"]);
        let box_ = box_filter3(&grid, h, w);
        assert_close(
            &format!("{h}×{w} box filter"),
            &box_,
            &floats(&case["box"]),
            MAP_TOL,
        );
        assert_close(
            &format!("{h}×{w} → {oh}×{ow} upsample"),
            &upsample(&box_, h, w, oh, ow),
            &floats(&case["upsampled"]),
            MAP_TOL,
        );
    }
}

#[test]
fn language_map_of_tiny_vv_tokens_matches_torch() {
    let r = maps_reference();
    let tiny = reference("openclip_tiny");
    let device = Device::flex();
    let anchors = tensor2(floats(&r["anchors"]), 2, &device);
    let tokens = floats(&tiny["vv_patch_tokens"]);
    let n = tiny["vv_patch_tokens"].as_array().unwrap().len();
    let p = host1(patch_abnormality(tensor2(tokens, n, &device), &anchors));
    let want = &r["patch_map"];
    assert_close("p_abn of V-V tokens", &p, &floats(&want["p_abn"]), MAP_TOL);
    let grid = [usize_of(&want["grid"][0]), usize_of(&want["grid"][1])];
    let map = smooth_and_upsample(&p, grid, usize_of(&want["size"]));
    assert_close("language map", &map, &floats(&want["map"]), MAP_TOL);
}

/// The views of the tiny fixture image, summarized as tools/gen_map_fixture.py stores them.
#[test]
fn twenty_two_views_match_torch() {
    let r = maps_reference();
    let v = &r["views"];
    let size = usize_of(&v["size"]);
    let stride = usize_of(&v["sample_stride"]);
    let ours = views(&pixels("openclip_tiny", "image.png", size), size, 22).expect("22 views");
    let want = v["views"].as_array().unwrap();
    assert_eq!(ours.len(), want.len());
    for (i, (view, w)) in ours.iter().zip(want).enumerate() {
        let samples: Vec<f32> = view.iter().step_by(stride).copied().collect();
        assert_close(
            &format!("view {i} samples"),
            &samples,
            &floats(&w["samples"]),
            MAP_TOL,
        );
        let n = view.len() as f64;
        let mean = view.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let weighted = view
            .iter()
            .enumerate()
            .map(|(j, &x)| f64::from(x) * (((j * 31) % 17) as f64 - 8.0) / 8.0)
            .sum::<f64>()
            / n;
        for (what, got, key) in [
            ("mean", mean, "mean"),
            ("weighted mean", weighted, "weighted_mean"),
        ] {
            let want = w[key].as_f64().unwrap();
            assert!(
                (got - want).abs() <= f64::from(MAP_TOL),
                "view {i} {what}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn image_score_over_views_matches_open_clip() {
    let r = maps_reference();
    let v = &r["views"];
    let device = Device::flex();
    let clip = tiny_openclip(&device);
    let size = clip.image_size();
    let all = views(&pixels("openclip_tiny", "image.png", size), size, 22).expect("22 views");
    let out = clip.encode_images(&all, &[], &device).expect("forward");
    assert_close(
        "image embedding of each view",
        &values(out.image_embedding.clone()),
        &floats(&v["image_embedding"]),
        TOL,
    );
    let anchors = tensor2(floats(&r["anchors"]), 2, &device);
    let per_view = host1(image_abnormality(out.image_embedding, &anchors));
    // Probabilities (0.61–0.65 over the views): the detector's tolerance, not the towers'.
    assert_close(
        "image_abnormality per view",
        &per_view,
        &floats(&v["image_abnormality"]),
        MAP_TOL,
    );
    let mean = per_view.iter().sum::<f32>() / per_view.len() as f32;
    let want = v["image_score"].as_f64().unwrap() as f32;
    assert!(
        (mean - want).abs() <= MAP_TOL,
        "image score {mean} vs {want}"
    );
}

#[test]
fn tile_geometry_matches_torchvision_rule() {
    let r = maps_reference();
    for g in r["tiles"]["geometry"].as_array().unwrap() {
        let dim = |k: &str| g[k].as_u64().unwrap() as u32;
        let (w, h, s) = (dim("width"), dim("height"), dim("size"));
        assert_eq!(
            resized_width(w, h, s),
            dim("resized_width"),
            "{w}×{h} at {s}"
        );
        let offsets: Vec<u32> = g["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tile_offsets(w, h, s), offsets, "{w}×{h} at {s}");
    }
}

#[test]
fn wide_image_tiles_match_torch_resize() {
    let r = maps_reference();
    let t = &r["tiles"]["image"];
    let img = RgbImage {
        width: t["width"].as_u64().unwrap() as u32,
        height: t["height"].as_u64().unwrap() as u32,
        data: t["rgb"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect(),
    };
    let ours = clip_tiles(&img, t["size"].as_u64().unwrap() as u32);
    let want = t["tiles"].as_array().unwrap();
    assert_eq!(ours.len(), want.len());
    for (i, (got, w)) in ours.iter().zip(want).enumerate() {
        assert_close(&format!("tile {i}"), got, &floats(w), MAP_TOL);
    }
}

#[test]
fn merged_tiles_average_the_overlap_like_numpy() {
    let r = maps_reference();
    let m = &r["tiles"]["merge"];
    let maps: Vec<Vec<f32>> = m["maps"].as_array().unwrap().iter().map(floats).collect();
    let offsets: Vec<u32> = m["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap() as u32)
        .collect();
    let merged = merge_tiles(&maps, &offsets, usize_of(&m["size"]), usize_of(&m["width"]));
    assert_close("merged map", &merged, &floats(&m["merged"]), MAP_TOL);
}
