//! The command-line contract: output JSON shapes, and bad input ending in a clear message
//! and a non-zero exit code, never a panic.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn embed_writes_the_documented_json() {
    let dir = temp_dir("embed");
    let out = dir.join("e.json");
    let model = fixture("openclip_tiny/model.safetensors");
    let image = fixture("openclip_tiny/image.png");
    let (ok, err) = run_duoclip(&[
        "embed",
        "--model",
        s(&model),
        "--text-heads",
        "2",
        "--image",
        s(&image),
        "--out",
        s(&out),
    ]);
    assert!(ok, "{err}");
    let got = read_json(&out);
    let r = reference("openclip_tiny");
    assert_close(
        "cli image_embedding",
        &floats(&got["image_embedding"]),
        &floats(&r["image_embedding"]),
        TOL,
    );
    assert_close(
        "cli vv_patch_tokens",
        &floats(&got["vv_patch_tokens"]),
        &floats(&r["vv_patch_tokens"]),
        TOL,
    );
    assert_eq!(got["grid"], r["grid"]);
    assert_eq!(got["vv_patch_tokens"].as_array().unwrap().len(), 16);
}

#[test]
fn text_writes_tokens_and_embeddings() {
    let dir = temp_dir("text");
    let out = dir.join("t.json");
    let r = reference("hf_tiny");
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let model = fixture("hf_tiny");
    let mut args = vec!["text", "--model", s(&model), "--out", s(&out)];
    args.extend(&texts);
    let (ok, err) = run_duoclip(&args);
    assert!(ok, "{err}");
    let got = read_json(&out);
    assert_eq!(got["tokens"], r["tokens"]);
    assert_close(
        "cli text_embedding",
        &floats(&got["text_embedding"]),
        &floats(&r["text_embedding"]),
        TOL,
    );
}

/// Runs `embed` expecting failure; returns stderr.
fn embed_fails(model: &Path, image: &Path) -> String {
    let out = temp_dir("fail").join("never.json");
    let (ok, err) = run_duoclip(&[
        "embed",
        "--model",
        s(model),
        "--image",
        s(image),
        "--out",
        s(&out),
    ]);
    assert!(!ok, "expected failure, got success; stderr: {err}");
    assert!(!out.exists(), "no output may be written on failure");
    err
}

#[test]
fn truncated_safetensors_is_named() {
    let dir = temp_dir("trunc");
    let bytes = std::fs::read(fixture("openclip_tiny/model.safetensors")).unwrap();
    let bad = dir.join("truncated.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let err = embed_fails(&bad, &fixture("openclip_tiny/image.png"));
    assert!(
        err.contains("truncated.safetensors") && err.contains("safetensors"),
        "{err}"
    );
}

#[test]
fn foreign_keys_are_named() {
    let err = embed_fails(
        &fixture("bad/foreign_keys.pt"),
        &fixture("openclip_tiny/image.png"),
    );
    assert!(
        err.contains("foreign_keys.pt") && err.contains("visual.class_embedding"),
        "{err}"
    );
}

#[test]
fn config_contradicting_shapes_is_named() {
    let dir = temp_dir("hfbad");
    std::fs::copy(
        fixture("hf_tiny/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let mut config = read_json(&fixture("hf_tiny/config.json"));
    config["vision_config"]["intermediate_size"] = Value::from(999);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = embed_fails(&dir, &fixture("hf_tiny/image.png"));
    assert!(
        err.contains("intermediate_size") && err.contains("999"),
        "{err}"
    );
}

#[test]
fn bad_images_are_named() {
    let dir = temp_dir("img");
    let model = fixture("openclip_tiny/model.safetensors");
    let text = dir.join("notes.png");
    std::fs::write(&text, "this is not an image\n").unwrap();
    assert!(embed_fails(&model, &text).contains("notes.png"));

    let tiny = dir.join("one.png");
    image::RgbImage::new(1, 1).save(&tiny).unwrap();
    let err = embed_fails(&model, &tiny);
    assert!(
        err.contains("one.png") && (err.contains("1×1") || err.contains("1x1")),
        "{err}"
    );

    let bomb = dir.join("bomb.png");
    std::fs::write(&bomb, png_header_claiming(30000, 30000)).unwrap();
    let err = embed_fails(&model, &bomb);
    assert!(err.contains("bomb.png") && err.contains("30000"), "{err}");

    let missing = dir.join("absent.png");
    assert!(embed_fails(&model, &missing).contains("absent.png"));
}

/// A PNG that claims a size in its IHDR chunk, with a few bytes of image data behind it.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]));
    png.extend(chunk(b"IEND", &[]));
    png
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    out.extend(crc.sum().to_be_bytes());
    out
}
#[test]
fn unknown_model_lists_what_is_accepted() {
    let out = temp_dir("unknown-model").join("x.json");
    let (ok, err) = run_duoclip(&["text", "--model", "no-such-model", "--out", s(&out), "a"]);
    assert!(!ok);
    assert!(
        err.contains("no-such-model") && err.contains("safetensors"),
        "{err}"
    );
}
