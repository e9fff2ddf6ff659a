//! f16 linear layers on a GPU (`clip::precision`): how `auto`, `f32` and `f16` resolve, and
//! parity of the f16 towers with f32 on the tiny model within 1e-2 and of the maps and scores
//! of the shaped model `openclip_signal` (maps spanning 0.33–0.66) within HALF_MAP_TOL,
//! on wgpu (lavapipe where there is no GPU; it has `shaderFloat16`, as WebGPU's `shader-f16`).

use crate::common;

use burn::tensor::{DType, Device};
use common::*;
use duoclip::clip::{Clip, Precision, Tokenizer};
use duoclip::detect::config::DetectorConfig;
use duoclip::detect::{Detection, Detector};
use duoclip::image::{ImageLimits, decode};
use duoclip::prompts::{Domain, TextAnchors, text_anchors};

/// Tolerance of the f16 towers' tokens and embeddings against f32: measured ≤ 8.4e-4 on
/// lavapipe (2026-12-02), where the tokens span about ±2.8.
const HALF_TOL: f32 = 1e-2;
/// Tolerance of the f16 text anchors (unit vectors): measured 1.4e-4, where t_n and t_a differ
/// by ~1e-2 per component, so a swap of the two fails.
const HALF_ANCHOR_TOL: f32 = 1e-3;
/// Tolerance of the f16 maps and scores against f32 on the shaped model: measured ≤ 5.1e-5
/// (maps) and 5.8e-5 (scores) on lavapipe, where its maps span 0.33–0.66 and its pair's
/// scores differ by 0.08.
const HALF_MAP_TOL: f32 = 1e-4;

#[test]
fn the_cpu_resolves_to_f32_and_refuses_f16() {
    let cpu = Device::flex();
    assert_eq!(Precision::resolve("auto", &cpu).unwrap(), Precision::F32);
    assert_eq!(Precision::resolve("f32", &cpu).unwrap(), Precision::F32);
    let refused = Precision::resolve("f16", &cpu).unwrap_err().to_string();
    assert!(
        refused.contains("`precision`") && refused.contains("GPU"),
        "{refused}"
    );
    let unknown = Precision::resolve("bf16", &cpu).unwrap_err().to_string();
    assert!(
        unknown.contains("bf16") && unknown.contains("auto, f32, f16"),
        "{unknown}"
    );
}

#[cfg(feature = "gpu")]
#[test]
fn f16_towers_match_f32_within_1e_2_and_wide_maps_within_1e_4() {
    let Some(gpu) = gpu_device("f16 parity") else {
        return;
    };
    // lavapipe and every GPU with 16-bit float shaders: auto picks f16 there.
    assert_eq!(Precision::resolve("auto", &gpu).unwrap(), Precision::F16);
    let full = tiny_openclip(&gpu);
    let half = tiny_openclip(&gpu).with_precision(Precision::F16);
    assert_eq!(
        half.vision.blocks[0].mlp.fc.weight.val().dtype(),
        DType::F16
    );
    assert_eq!(
        half.vision.blocks[0]
            .mlp
            .fc
            .bias
            .as_ref()
            .unwrap()
            .val()
            .dtype(),
        DType::F32
    );

    let s = full.image_size();
    let input = vec![pixels("openclip_tiny", "image.png", s)];
    let want = full.encode_images(&input, &[0, 1], &gpu).unwrap();
    let got = half.encode_images(&input, &[0, 1], &gpu).unwrap();
    let (w, g) = (values3(want.vv_patch_tokens), values3(got.vv_patch_tokens));
    assert_close("V-V patch tokens", &g, &w, HALF_TOL);
    // f16 was really used: the tokens differ from f32 by more than float32 rounding.
    let err = max_abs_diff(&g, &w);
    assert!(
        err > 1e-6,
        "f16 tokens equal f32 ones ({err:e}): f16 was not used"
    );
    assert_close(
        "image embedding",
        &values(got.image_embedding),
        &values(want.image_embedding),
        HALF_TOL,
    );
    for (g, w) in got.taps.into_iter().zip(want.taps) {
        assert_close("tapped tokens", &values3(g), &values3(w), HALF_TOL);
    }

    assert_close(
        "text anchors",
        &values(anchors(&half).states),
        &values(anchors(&full).states),
        HALF_ANCHOR_TOL,
    );
    let full = signal_openclip(&gpu);
    let half = signal_openclip(&gpu).with_precision(Precision::F16);
    let (got, want) = (maps(half, &gpu), maps(full, &gpu));
    assert!((want[0].score - want[1].score).abs() > 100.0 * HALF_MAP_TOL);
    for (g, w) in got.iter().zip(&want) {
        let err = max_abs_diff(&g.map, &w.map);
        eprintln!(
            "f16 map error {err:e}, score error {:e}",
            (g.score - w.score).abs()
        );
        assert_close("anomaly map", &g.map, &w.map, HALF_MAP_TOL);
        assert!(
            (g.score - w.score).abs() <= HALF_MAP_TOL,
            "score {} vs {}",
            g.score,
            w.score
        );
    }
}

#[cfg(feature = "gpu")]
fn anchors(clip: &Clip) -> TextAnchors {
    text_anchors(clip, &Tokenizer::new(), &Domain::Object, "bottle").unwrap()
}

/// The product maps of the shaped model's two images, scored together.
#[cfg(feature = "gpu")]
fn maps(clip: Clip, device: &Device) -> Vec<Detection> {
    let a = anchors(&clip);
    let d = Detector::new(clip, a, DetectorConfig::product(2), device.clone()).unwrap();
    let images: Vec<_> = ["image.png", "image_big.png"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(fixture(&format!("openclip_signal/{f}"))).unwrap();
            d.prepare(&decode(&bytes, f, &ImageLimits::default()).unwrap())
        })
        .collect();
    d.score(&images.iter().collect::<Vec<_>>(), &[]).unwrap()
}
