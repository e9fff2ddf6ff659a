//! Visual references (METHOD.md §5, src/detect/reference.rs): parity with the torch
//! implementation in tools/gen_reference_fixture.py (≤ 1e-6), exact zeros for identical images,
//! a pasted defect found by its partner, order independence and the option errors.

use crate::common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use duoclip::Error;
use duoclip::clip::{ArchOverrides, VisionOutput};
use duoclip::detect::config::Pairing;
use duoclip::detect::reference::{
    PatchFeatures, distance_to, patch_features, set_references, visual_scores,
};
use duoclip::image::{ImageLimits, decode, to_clip_input};
use serde_json::Value;

/// Rust vs the float64 torch reference, on unit-length features.
const REF_TOL: f32 = 1e-6;

fn vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

fn bits(t: Tensor<1>) -> Vec<u32> {
    vec1(t).iter().map(|v| v.to_bits()).collect()
}

/// A `[B, N, C]` tensor from nested JSON lists.
fn tensor3(v: &Value, device: &Device) -> Tensor<3> {
    let b = v.as_array().unwrap();
    let n = b[0].as_array().unwrap();
    let c = n[0].as_array().unwrap().len();
    let shape = [b.len(), n.len(), c];
    Tensor::from_data(TensorData::new(floats(v), shape), device)
}

/// The fixture's raw features as the image tower would hand them over: layer 0 as the V-V
/// tokens, layer 1 as the one tap.
fn fixture_output(r: &Value, device: &Device) -> VisionOutput {
    let layers: Vec<Tensor<3>> = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| tensor3(l, device))
        .collect();
    let [batch, _, embed] = layers[0].dims();
    let grid = floats(&r["grid"]);
    VisionOutput {
        image_embedding: Tensor::zeros([batch, embed], device),
        vv_patch_tokens: layers[0].clone(),
        taps: layers[1..].to_vec(),
        grid: [grid[0] as usize, grid[1] as usize],
    }
}

fn fixture_features(out: &VisionOutput, r: usize) -> Vec<PatchFeatures> {
    let batch = out.vv_patch_tokens.dims()[0];
    (0..batch)
        .map(|i| patch_features(out, i, r).expect("features"))
        .collect()
}

fn scores_for(feats: &[PatchFeatures], pairing: Pairing) -> Vec<f32> {
    set_references(feats.len(), pairing)
        .unwrap()
        .iter()
        .enumerate()
        .flat_map(|(i, refs)| {
            let refs: Vec<&PatchFeatures> = refs.iter().map(|&j| &feats[j]).collect();
            vec1(visual_scores(&feats[i], &refs).expect("scores"))
        })
        .collect()
}

fn check_fixture(device: &Device) {
    let r = reference("reference");
    let out = fixture_output(&r, device);
    for radius in [1, 3] {
        let want = &r[format!("r{radius}")];
        let what = |s: &str| format!("r = {radius}: {s}");
        let feats = fixture_features(&out, radius);
        for (l, want_layer) in want["normalized"].as_array().unwrap().iter().enumerate() {
            let got: Vec<f32> = feats
                .iter()
                .flat_map(|f| values(f.layers[l].clone()))
                .collect();
            assert_close(
                &what(&format!("normalized layer {l}")),
                &got,
                &floats(want_layer),
                REF_TOL,
            );
        }
        let distances: Vec<f32> = feats
            .iter()
            .flat_map(|a| feats.iter().flat_map(|b| vec1(distance_to(a, b))))
            .collect();
        assert_close(
            &what("distance"),
            &distances,
            &floats(&want["distance"]),
            REF_TOL,
        );
        for (key, pairing) in [("pairs", Pairing::Pairs), ("set", Pairing::Set)] {
            assert_close(
                &what(key),
                &scores_for(&feats, pairing),
                &floats(&want[key]),
                REF_TOL,
            );
        }
        // Image 5 is a copy of image 0: exact zeros, not merely small ones.
        for (a, b) in [(0, 0), (3, 3), (0, 5), (5, 0)] {
            assert!(
                vec1(distance_to(&feats[a], &feats[b]))
                    .iter()
                    .all(|&d| d == 0.0),
                "{}",
                what(&format!("distance {a}→{b} is not exactly 0"))
            );
        }
    }
}

#[test]
fn matches_torch_reference_of_method_section_5() {
    check_fixture(&Device::flex());
}

#[test]
fn reference_order_does_not_change_scores_bitwise() {
    check_order_independence(&Device::flex());
}

fn check_order_independence(device: &Device) {
    let out = fixture_output(&reference("reference"), device);
    for radius in [1, 3] {
        let feats = fixture_features(&out, radius);
        let orders: [&[usize]; 4] = [
            &[1, 2, 3, 4, 5],
            &[5, 4, 3, 2, 1],
            &[3, 5, 1, 4, 2],
            &[2, 1, 5, 3, 4],
        ];
        let run = |order: &[usize]| {
            let refs: Vec<&PatchFeatures> = order.iter().map(|&j| &feats[j]).collect();
            bits(visual_scores(&feats[0], &refs).unwrap())
        };
        let first = run(orders[0]);
        for order in &orders[1..] {
            assert_eq!(run(order), first, "r = {radius}, order {order:?}");
        }
        // Four references (2 kept) without the exact duplicate: ties are not what makes it pass.
        let first = run(&[1, 2, 3, 4]);
        for order in [[4, 3, 2, 1], [2, 4, 1, 3], [3, 1, 4, 2]] {
            assert_eq!(run(&order), first, "r = {radius}, order {order:?}");
        }
    }
}

/// Unit vectors `(c, ±√(1 − c²))`: cosine c to e₁ = (1, 0); `upper` picks the sign of the
/// second coordinate (the cosine to e₂ = (0, 1)).
fn unit_tokens(tokens: &[(f32, bool)], device: &Device) -> PatchFeatures {
    let flat: Vec<f32> = tokens
        .iter()
        .flat_map(|&(c, upper)| {
            let s = (1.0 - c * c).sqrt();
            [c, if upper { s } else { -s }]
        })
        .collect();
    PatchFeatures {
        layers: vec![Tensor::from_data(
            TensorData::new(flat, [tokens.len(), 2]),
            device,
        )],
    }
}

#[test]
fn five_references_keep_the_mean_of_the_two_smallest() {
    let device = Device::flex();
    // Patches e₁ and e₂.
    let a = unit_tokens(&[(1.0, true), (0.0, true)], &device);
    // Each reference has a token at cosine c to e₁ (upper half plane) and a decoy at c − 0.1
    // in the lower half plane: farther from e₁ and from e₂, so it never is the nearest.
    let refs: Vec<PatchFeatures> = [0.8f32, 0.6, 0.0, -0.6, 0.28]
        .iter()
        .map(|&c| unit_tokens(&[(c - 0.1, false), (c, true)], &device))
        .collect();
    // By hand, d = ½(1 − max cos), k = 5 keeps ⌈1.5⌉ = 2:
    // e₁: cosines 0.8, 0.6, 0.0, −0.6, 0.28 → d 0.1, 0.2, 0.5, 0.8, 0.36 → (0.1 + 0.2)/2 = 0.15
    // e₂: cosines 0.6, 0.8, 1.0, 0.8, 0.96 → d 0.2, 0.1, 0.0, 0.1, 0.02 → (0 + 0.02)/2 = 0.01
    let want = [0.15f32, 0.01];
    let refs: Vec<&PatchFeatures> = refs.iter().collect();
    let got = vec1(visual_scores(&a, &refs).unwrap());
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6, "got {got:?}, want {want:?}");
    }
    // k = 1 is the pair: the distance itself (e₁ against c = −0.6: 0.8; e₂: 0.1).
    let one = vec1(visual_scores(&a, &refs[3..4]).unwrap());
    assert!(
        (one[0] - 0.8).abs() <= 1e-6 && (one[1] - 0.1).abs() <= 1e-6,
        "{one:?}"
    );
    // k = 4 keeps 2 as well; k = 3 keeps 1 (the minimum).
    let three = vec1(visual_scores(&a, &refs[..3]).unwrap());
    assert!(
        (three[0] - 0.1).abs() <= 1e-6 && three[1] == 0.0,
        "{three:?}"
    );
}

#[test]
fn neighbourhood_three_on_a_constant_grid_is_identity() {
    let device = Device::flex();
    let token = [0.3f32, -1.2, 2.5, 0.7];
    let n = 16;
    let flat: Vec<f32> = (0..n).flat_map(|_| token).collect();
    let tokens = Tensor::<3>::from_data(TensorData::new(flat, [1, n, 4]), &device);
    let out = VisionOutput {
        image_embedding: Tensor::zeros([1, 4], &device),
        vv_patch_tokens: tokens.clone(),
        taps: vec![tokens.mul_scalar(-2.0)],
        grid: [4, 4],
    };
    let plain = patch_features(&out, 0, 1).unwrap();
    let averaged = patch_features(&out, 0, 3).unwrap();
    for (p, q) in plain.layers.iter().zip(&averaged.layers) {
        assert_close(
            "3×3 mean of a constant grid",
            &values(q.clone()),
            &values(p.clone()),
            1e-7,
        );
    }
}

fn image_pixels(file: &str, paste: Option<(usize, usize)>, size: usize) -> Vec<f32> {
    let path = fixture("openclip_tiny").join(file);
    let bytes = std::fs::read(&path).expect("fixture image");
    let mut img = decode(&bytes, &path.display().to_string(), &ImageLimits::default()).unwrap();
    if let Some((row, col)) = paste {
        // A bright 8×8 block covering exactly patch cell (row, col).
        let width = img.width as usize;
        for y in row * 8..row * 8 + 8 {
            for x in col * 8..col * 8 + 8 {
                let at = 3 * (y * width + x);
                img.data[at..at + 3].copy_from_slice(&[255, 250, 240]);
            }
        }
    }
    to_clip_input(&img, size as u32)
}

fn tiny_overrides() -> ArchOverrides {
    ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    }
}

#[test]
fn identical_images_score_exactly_zero() {
    check_identical_images(&Device::flex());
}

fn check_identical_images(device: &Device) {
    let clip = load("openclip_tiny/model.safetensors", tiny_overrides(), device);
    let px = image_pixels("image.png", None, clip.image_size());
    // Each copy through the tower on its own, as the detector encodes a pair of identical
    // uploads. (In one batch, OpenBLAS's Haswell and Zen kernels give the copies' rows
    // different last bits.)
    let one = std::slice::from_ref(&px);
    let encode = || clip.encode_images(one, &[0, 1], device).unwrap();
    let (first, second) = (encode(), encode());
    for radius in [1, 3] {
        let a = patch_features(&first, 0, radius).unwrap();
        let b = patch_features(&second, 0, radius).unwrap();
        for (x, y) in [(&a, &b), (&b, &a)] {
            let s = vec1(visual_scores(x, &[y]).unwrap());
            assert_eq!(s.len(), 16);
            assert!(s.iter().all(|&v| v == 0.0), "r = {radius}: {s:?}");
        }
        let s = vec1(visual_scores(&a, &[&b, &a, &b]).unwrap());
        assert!(s.iter().all(|&v| v == 0.0), "r = {radius}, k = 3: {s:?}");
    }
}

#[test]
fn pasted_patch_has_the_highest_visual_score() {
    let device = Device::flex();
    let clip = load("openclip_tiny/model.safetensors", tiny_overrides(), &device);
    let size = clip.image_size();
    let (row, col) = (1, 2);
    let out = clip
        .encode_images(
            &[
                image_pixels("image.png", Some((row, col)), size),
                image_pixels("image.png", None, size),
            ],
            &[0],
            &device,
        )
        .unwrap();
    assert_eq!(out.grid, [4, 4]);
    let pasted = patch_features(&out, 0, 1).unwrap();
    let clean = patch_features(&out, 1, 1).unwrap();
    let s = vec1(visual_scores(&pasted, &[&clean]).unwrap());
    let top = (0..s.len()).max_by(|&i, &j| s[i].total_cmp(&s[j])).unwrap();
    assert_eq!(top, row * 4 + col, "scores {s:?}");
    // Not a near tie: the untouched cells all match their clean selves far better.
    let runner_up = s
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != top)
        .map(|(_, &v)| v)
        .fold(0.0f32, f32::max);
    assert!(s[top] > 10.0 * runner_up, "scores {s:?}");
    // Symmetric pairing: the clean image's cell is the one without a match in the pasted image.
    let back = vec1(visual_scores(&clean, &[&pasted]).unwrap());
    assert!(back.iter().all(|v| v.is_finite()), "{back:?}");
}

fn option_of(e: Error) -> (String, String) {
    match e {
        Error::Option { option, message } => (option, message),
        other => panic!("expected an option error, got {other}"),
    }
}

#[test]
fn bad_options_are_errors_that_say_what_to_do() {
    let device = Device::flex();
    let out = fixture_output(&reference("reference"), &device);
    for bad in [0, 2, 5] {
        let (option, message) = option_of(patch_features(&out, 0, bad).unwrap_err());
        assert_eq!(option, "neighbourhood");
        assert!(message.contains("1") && message.contains("3"), "{message}");
    }
    assert!(matches!(patch_features(&out, 6, 1), Err(Error::Model(_))));

    let (option, message) = option_of(set_references(5, Pairing::Pairs).unwrap_err());
    assert_eq!(option, "pairing");
    assert!(message.contains("‹pairing› pairs"), "{message}");
    assert!(message.contains("‹pairing› set"), "{message}");
    assert!(message.contains("add an image"), "{message}");
    let (_, message) = option_of(set_references(1, Pairing::Pairs).unwrap_err());
    assert!(message.contains("a pair needs two images"), "{message}");
    assert!(set_references(1, Pairing::Set).is_err());
    assert!(set_references(0, Pairing::Set).is_err());
    assert_eq!(
        set_references(2, Pairing::Set).unwrap(),
        vec![vec![1], vec![0]]
    );

    let feats = fixture_features(&out, 1);
    assert!(visual_scores(&feats[0], &[]).is_err());
    let other = PatchFeatures {
        layers: vec![feats[1].layers[0].clone()],
    };
    assert!(matches!(
        visual_scores(&feats[0], &[&other]),
        Err(Error::Model(_))
    ));
}

/// Parity, order independence and exact zeros again on the wgpu backend, where an adapter
/// exists (a software one counts): it has no sort kernel, which the interval mean must not need.
#[cfg(feature = "gpu")]
#[test]
fn gpu_agrees_too() {
    let Some(device) = gpu_device("gpu reference") else {
        return;
    };
    check_fixture(&device);
    check_order_independence(&device);
    check_identical_images(&device);
}
