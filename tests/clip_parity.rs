//! The towers against open_clip / transformers references computed by tools/gen_fixtures.py
//! on tiny random-weight models (max abs error ≤ 1e-4).

use crate::common;

use burn::tensor::Device;
use common::*;
use duoclip::clip::{ArchOverrides, Clip, Tokenizer};
use serde_json::Value;

/// openclip_tiny: text width 16 is below the 64-wide-head convention, so heads are given.
fn openclip_overrides() -> ArchOverrides {
    ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    }
}

fn check_image(dir: &str, model: &str, overrides: ArchOverrides, device: &Device) {
    let r = reference(dir);
    let clip = load(&format!("{dir}/{model}"), overrides, device);
    let taps: Vec<usize> = r["taps"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    let px = pixels(dir, r["image"].as_str().unwrap(), clip.image_size());
    let out = clip.encode_images(&[px], &taps, device).expect("forward");
    let what = |s: &str| format!("{dir}/{model} {s}");
    assert_close(
        &what("image_embedding"),
        &values(out.image_embedding),
        &floats(&r["image_embedding"]),
        TOL,
    );
    assert_close(
        &what("vv_patch_tokens"),
        &values3(out.vv_patch_tokens),
        &floats(&r["vv_patch_tokens"]),
        TOL,
    );
    assert_eq!(
        out.grid.to_vec(),
        floats(&r["grid"])
            .iter()
            .map(|&g| g as usize)
            .collect::<Vec<_>>()
    );
    for (l, tap) in taps.iter().zip(out.taps) {
        assert_close(
            &what(&format!("tap {l}")),
            &values3(tap),
            &floats(&r["taps"][l.to_string()]),
            TOL,
        );
    }
}

fn check_text(dir: &str, model: &str, overrides: ArchOverrides, device: &Device) {
    let r = reference(dir);
    let clip = load(&format!("{dir}/{model}"), overrides, device);
    let tokenizer = Tokenizer::new();
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let ours: Vec<Vec<u32>> = texts.iter().map(|t| tokenizer.tokenize(t, 77)).collect();
    assert_eq!(ours, tokens(&r), "{dir}: token ids differ from open_clip's");
    let emb = clip.encode_text(&ours).expect("text forward");
    assert_close(
        &format!("{dir} text_embedding"),
        &values(emb),
        &floats(&r["text_embedding"]),
        TOL,
    );
}

#[test]
fn openclip_image_tower_matches_open_clip() {
    check_image(
        "openclip_tiny",
        "model.safetensors",
        openclip_overrides(),
        &Device::flex(),
    );
}

#[test]
fn openclip_vision_only_pytorch_checkpoint_matches() {
    let device = Device::flex();
    check_image(
        "openclip_tiny",
        "vision.pt",
        ArchOverrides::default(),
        &device,
    );
    let clip = load("openclip_tiny/vision.pt", ArchOverrides::default(), &device);
    assert!(clip.text.is_none());
    assert!(clip.encode_text(&[vec![49406, 49407]]).is_err());
}

#[test]
fn openclip_text_tower_matches_open_clip() {
    check_text(
        "openclip_tiny",
        "model.safetensors",
        openclip_overrides(),
        &Device::flex(),
    );
}

#[test]
fn interpolated_positional_embedding_matches_torch_bicubic() {
    let device = Device::flex();
    let r = reference("openclip_tiny");
    let big = &r["big"];
    let size = big["image_size"].as_u64().unwrap() as usize;
    let overrides = ArchOverrides {
        image_size: Some(size),
        ..openclip_overrides()
    };
    let clip = load("openclip_tiny/model.safetensors", overrides, &device);
    assert_eq!(clip.image_size(), size);
    let px = pixels("openclip_tiny", big["image"].as_str().unwrap(), size);
    let out = clip.encode_images(&[px], &[], &device).unwrap();
    assert_close(
        "big image_embedding",
        &values(out.image_embedding),
        &floats(&big["image_embedding"]),
        TOL,
    );
    assert_close(
        "big vv_patch_tokens",
        &values3(out.vv_patch_tokens),
        &floats(&big["vv_patch_tokens"]),
        TOL,
    );
}

#[test]
fn hf_towers_match_transformers() {
    let device = Device::flex();
    check_image("hf_tiny", "", ArchOverrides::default(), &device);
    check_text("hf_tiny", "", ArchOverrides::default(), &device);
}

/// The tiny OpenCLIP model on the CPU, its reference and its test image's pixels.
fn tiny_on_cpu() -> (Clip, Value, Vec<f32>) {
    let r = reference("openclip_tiny");
    let clip = load(
        "openclip_tiny/model.safetensors",
        openclip_overrides(),
        &Device::flex(),
    );
    let px = pixels(
        "openclip_tiny",
        r["image"].as_str().unwrap(),
        clip.image_size(),
    );
    (clip, r, px)
}

#[test]
fn batch_of_two_equals_two_singles() {
    let device = Device::flex();
    let (clip, r, px) = tiny_on_cpu();
    let flipped: Vec<f32> = px.iter().rev().copied().collect();
    let both = clip
        .encode_images(&[px.clone(), flipped.clone()], &[], &device)
        .unwrap();
    let one = clip.encode_images(&[flipped], &[], &device).unwrap();
    let both = values(both.image_embedding);
    let half = both.len() / 2;
    assert_close(
        "second of batch",
        &both[half..],
        &values(one.image_embedding),
        1e-5,
    );
    assert_close(
        "first of batch",
        &both[..half],
        &floats(&r["image_embedding"]),
        TOL,
    );
}

/// The ordinary stream alone (`embed_images`, the extra views' path) gives the image
/// embedding both streams give, exactly: the same operations in the same order.
#[test]
fn embedding_alone_equals_the_dual_stream_embedding() {
    let device = Device::flex();
    let (clip, _, px) = tiny_on_cpu();
    let flipped: Vec<f32> = px.iter().rev().copied().collect();
    let batch = [px, flipped];
    let dual = clip.encode_images(&batch, &[], &device).unwrap();
    let alone = clip.embed_images(&batch, &device).unwrap();
    assert_eq!(alone.dims(), dual.image_embedding.dims());
    assert_eq!(values(alone), values(dual.image_embedding));
    let bad = clip.embed_images(&[vec![0.0; 5]], &device).unwrap_err();
    assert!(bad.to_string().contains("has 5 values"), "{bad}");
}

/// The same checks on a wgpu device, when this machine has an adapter.
#[cfg(feature = "gpu")]
#[test]
fn gpu_towers_match_when_an_adapter_exists() {
    let Some(device) = gpu_device("gpu parity") else {
        return;
    };
    check_image(
        "openclip_tiny",
        "model.safetensors",
        openclip_overrides(),
        &device,
    );
    check_text(
        "openclip_tiny",
        "model.safetensors",
        openclip_overrides(),
        &device,
    );
    check_image("hf_tiny", "", ArchOverrides::default(), &device);
}
