//! `duoclip convert`: a bundle scores like the model it came from, its anchors are the ones
//! `duoclip score` computes, it loads from its manifest alone (also without a text tower), and
//! bad options fail clearly without leaving a bundle behind.

use crate::common;

use std::path::Path;

use burn::tensor::Device;
use common::*;
use duoclip::clip::weights::export::openclip_tensors;
use duoclip::clip::{Checkpoint, Clip, Tokenizer};
use duoclip::models::bundle::{Dtype, Manifest, TextTower};
use duoclip::models::registry::sha256_hex;
use duoclip::prompts::read_anchors;
use duoclip::prompts::{Domain, text_anchors};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Converts the tiny model into `out` with `extra` options.
fn convert(out: &Path, extra: &[&str]) -> (bool, String) {
    let model = fixture("openclip_tiny/model.safetensors");
    let mut args = vec![
        "convert",
        "--model",
        s(&model),
        "--text-heads",
        "2",
        "--out",
        s(out),
    ];
    args.extend(extra);
    run_duoclip(&args)
}

/// `duoclip score` of the tiny fixture pair with `model`: the two maps.
fn maps(model: &Path, out: &Path) -> Vec<Vec<f32>> {
    let images = ["image.png", "image_big.png"].map(|f| fixture(&format!("openclip_tiny/{f}")));
    let (ok, err) = run_duoclip(&[
        "score",
        "--model",
        s(model),
        "--text-heads",
        "2",
        "--object",
        "bottle",
        "--out",
        s(out),
        s(&images[0]),
        s(&images[1]),
    ]);
    assert!(ok, "{err}");
    ["image.npy", "image_big.npy"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(out.join(f)).unwrap();
            npyz::NpyFile::new(&bytes[..])
                .unwrap()
                .into_vec::<f32>()
                .unwrap()
        })
        .collect()
}

fn manifest(dir: &Path) -> Manifest {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    Manifest::parse(&text, "manifest.json").unwrap()
}

/// The bundle's model, loaded as the browser does: weights plus the manifest's overrides.
fn load_bundle(dir: &Path, m: &Manifest) -> Clip {
    let bytes = std::fs::read(dir.join(&m.weights.file)).unwrap();
    let ckpt = Checkpoint::from_safetensors_bytes(bytes, "model.safetensors").unwrap();
    Clip::from_checkpoint(&ckpt, None, &m.overrides(), &Device::flex()).unwrap()
}

#[test]
fn an_f32_bundle_scores_exactly_like_its_source() {
    let dir = temp_dir("convert-f32");
    let bundle = dir.join("bundle");
    let (ok, err) = convert(
        &bundle,
        &["--text", "full", "--domains", "object:bottle,brain-mri"],
    );
    assert!(ok, "{err}");
    let m = manifest(&bundle);
    assert_eq!((m.format.as_str(), m.version), ("duoclip-bundle", 1));
    assert_eq!(m.name, "bundle");
    assert!(!m.test_model);
    assert_eq!(m.weights.dtype, Dtype::F32);
    assert_eq!(m.text, TextTower::Full);
    let arch = m.architecture;
    assert_eq!(
        (arch.image_size, arch.vision_heads, arch.text_heads),
        (32, 2, Some(2))
    );
    let source = std::fs::read(fixture("openclip_tiny/model.safetensors")).unwrap();
    assert_eq!(m.source.sha256, sha256_hex(&source));
    for (file, sha, bytes) in [
        (&m.weights.file, &m.weights.sha256, m.weights.bytes),
        (&m.anchors.file, &m.anchors.sha256, m.anchors.bytes),
    ] {
        let data = std::fs::read(bundle.join(file)).unwrap();
        assert_eq!(
            (&sha256_hex(&data), data.len() as u64),
            (sha, bytes),
            "{file}"
        );
    }
    let sets: Vec<(&str, &str)> = m
        .anchors
        .sets
        .iter()
        .map(|s| (s.domain.as_str(), s.object.as_str()))
        .collect();
    assert_eq!(sets, [("object", "bottle"), ("brain-mri", "brain")]);

    let want = maps(&fixture("openclip_tiny/model.safetensors"), &dir.join("a"));
    let got = maps(&bundle.join("model.safetensors"), &dir.join("b"));
    assert_eq!(got, want);
}

/// The fixture's weights are fp16 values already, so an fp16 bundle holds the same numbers
/// in half the bytes and gives bit-identical maps (real models' fp16 bundles round their
/// weights, which this fixture cannot show).
#[test]
fn an_fp16_bundle_is_half_the_size_and_scores_within_tolerance() {
    let dir = temp_dir("convert-f16");
    let (f32_dir, f16_dir) = (dir.join("f32"), dir.join("f16"));
    let domains = ["--text", "full", "--domains", "object:bottle"];
    assert!(convert(&f32_dir, &domains).0);
    let (ok, err) = convert(
        &f16_dir,
        &[&domains[..], &["--fp16", "--test-model"]].concat(),
    );
    assert!(ok, "{err}");
    let m = manifest(&f16_dir);
    assert_eq!(m.weights.dtype, Dtype::F16);
    assert!(m.test_model);
    let f32_bytes = manifest(&f32_dir).weights.bytes;
    // Only the header (the same names and shapes) is not halved.
    let ratio = m.weights.bytes as f64 / f32_bytes as f64;
    assert!(
        (0.5..0.51).contains(&ratio),
        "{} vs {f32_bytes}",
        m.weights.bytes
    );
    let want = maps(&fixture("openclip_tiny/model.safetensors"), &dir.join("a"));
    let got = maps(&f16_dir.join("model.safetensors"), &dir.join("b"));
    for (g, w) in got.iter().zip(&want) {
        assert_close("fp16 bundle map", g, w, 0.0);
    }
}

#[test]
fn bundled_anchors_equal_freshly_computed_ones() {
    let bundle = temp_dir("convert-anchors").join("bundle");
    let (ok, err) = convert(
        &bundle,
        &[
            "--domains",
            "texture:carpet,histopathology,object:metal_nut",
        ],
    );
    assert!(ok, "{err}");
    let m = manifest(&bundle);
    let file = Checkpoint::from_file(&bundle.join("anchors.safetensors")).unwrap();
    let stored = read_anchors(&file, &m.anchors.sets, &Device::flex()).unwrap();
    let clip = tiny_openclip(&Device::flex());
    let sets = [
        (Domain::Texture, "carpet"),
        (Domain::Histopathology, "tissue"),
        (Domain::Object, "metal_nut"),
    ];
    assert_eq!(stored.len(), sets.len());
    for ((domain, object), got) in sets.iter().zip(stored) {
        let want = text_anchors(&clip, &Tokenizer::new(), domain, object).unwrap();
        assert_eq!(got.prompts.dims(), [2 * 462, 32]);
        assert_close("states", &values(got.states), &values(want.states), 0.0);
        assert_close("prompts", &values(got.prompts), &values(want.prompts), 0.0);
    }
}

/// Without the text tower the bundle is the image tower alone; it loads from the manifest
/// (heads and activation are not in the file) and encodes images exactly as the source.
#[test]
fn a_vision_only_bundle_loads_from_its_manifest() {
    let bundle = temp_dir("convert-vision").join("bundle");
    let (ok, err) = convert(&bundle, &["--domains", "chest-xray"]);
    assert!(ok, "{err}");
    let m = manifest(&bundle);
    assert_eq!((m.text, m.architecture.text_heads), (TextTower::None, None));
    let clip = load_bundle(&bundle, &m);
    assert!(clip.text.is_none());
    let source = tiny_openclip(&Device::flex());
    let px = pixels("openclip_tiny", "image.png", 32);
    let a = clip
        .encode_images(std::slice::from_ref(&px), &[0], &Device::flex())
        .unwrap();
    let b = source.encode_images(&[px], &[0], &Device::flex()).unwrap();
    assert_close(
        "V-V tokens",
        &values3(a.vv_patch_tokens),
        &values3(b.vv_patch_tokens),
        0.0,
    );
    assert_close(
        "tap 0",
        &values3(a.taps[0].clone()),
        &values3(b.taps[0].clone()),
        0.0,
    );
    // The CLI, which has no precomputed anchors, says why it cannot score with it.
    let out = temp_dir("convert-vision-score");
    let image = fixture("openclip_tiny/image.png");
    let (ok, err) = run_duoclip(&[
        "score",
        "--model",
        s(&bundle.join("model.safetensors")),
        "--domain",
        "chest-xray",
        "--out",
        s(&out),
        s(&image),
    ]);
    assert!(!ok && err.contains("no text tower"), "{err}");
}

#[test]
fn bad_options_fail_clearly_and_write_nothing() {
    let dir = temp_dir("convert-bad");
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--domains", "object"], &["--domains", "object:OBJECT"]),
        (&["--domains", "texture,brain-mri"], &["texture:OBJECT"]),
        (
            &["--domains", "xray"],
            &["unknown domain `xray`", "brain-mri"],
        ),
        (
            &["--domains", "custom:sonogram"],
            &["custom domains", "--text full"],
        ),
        (&["--domains", "brain-mri,brain-mri"], &["listed twice"]),
        (
            &["--domains", "brain-mri", "--text", "half"],
            &["--text", "none", "full"],
        ),
    ];
    for (i, (args, words)) in cases.iter().enumerate() {
        let out = dir.join(format!("case{i}"));
        let (ok, err) = convert(&out, args);
        assert!(!ok, "{args:?} succeeded");
        for w in *words {
            assert!(err.contains(w), "{args:?}: `{w}` not in {err}");
        }
        assert!(
            !out.join("manifest.json").exists(),
            "{args:?} wrote a bundle"
        );
    }
    let (ok, err) = convert(&dir.join("none"), &[]);
    assert!(!ok && err.contains("--domains"), "{err}");
    let vision_only = fixture("openclip_tiny/vision.pt");
    let (ok, err) = run_duoclip(&[
        "convert",
        "--model",
        s(&vision_only),
        "--domains",
        "brain-mri",
        "--out",
        s(&dir.join("vision")),
    ]);
    assert!(!ok && err.contains("no text tower"), "{err}");
    let (ok, err) = run_duoclip(&[
        "convert",
        "--random",
        "vit-h-14",
        "--domains",
        "brain-mri",
        "--out",
        s(&dir.join("random")),
    ]);
    assert!(
        !ok && err.contains("--random") && err.contains("vit-b-16-plus-240"),
        "{err}"
    );
}

#[test]
fn manifests_of_other_formats_and_versions_are_refused() {
    let bundle = temp_dir("convert-manifest").join("bundle");
    assert!(convert(&bundle, &["--domains", "liver-ct"]).0);
    let text = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    let newer = text.replace("\"version\": 1", "\"version\": 2");
    let e = Manifest::parse(&newer, "manifest.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("version 2") && e.contains("convert the model again"),
        "{e}"
    );
    let other = text.replace("duoclip-bundle", "something-else");
    let e = Manifest::parse(&other, "manifest.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a duoclip bundle manifest"), "{e}");
    let e = Manifest::parse("{", "manifest.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not JSON"), "{e}");
}

/// The tiny bundle the site ships (www/models/tiny) is what `convert` makes today, except
/// that its weights are the fixture file itself (one committed copy: scripts/build-web.sh
/// copies it in), which must hold exactly the converted values. To regenerate the manifest and
/// anchors: `DUOCLIP_BLESS_TINY=1 cargo test --features gpu --test suite convert::the_shipped`.
#[test]
fn the_shipped_tiny_bundle_is_current() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/tiny");
    let out = temp_dir("convert-tiny").join("tiny");
    let (ok, err) = convert(
        &out,
        &[
            "--fp16",
            "--text",
            "full",
            "--domains",
            "object:bottle,texture:carpet,brain-mri,liver-ct,retinal-oct,chest-xray,histopathology",
            "--test-model",
            "--name",
            "tiny",
            "--license",
            "MIT OR Apache-2.0 (random test weights made by tools/gen_fixtures.py)",
        ],
    );
    assert!(ok, "{err}");
    let weights = fixture("openclip_tiny/model.safetensors");
    let fixture_bytes = std::fs::read(&weights).unwrap();
    let mut want = manifest(&out);
    want.weights.sha256 = sha256_hex(&fixture_bytes);
    want.weights.bytes = fixture_bytes.len() as u64;
    if std::env::var_os("DUOCLIP_BLESS_TINY").is_some() {
        std::fs::create_dir_all(&shipped).unwrap();
        let text = serde_json::to_string_pretty(&want).unwrap();
        std::fs::write(shipped.join("manifest.json"), format!("{text}\n")).unwrap();
        let anchors = "anchors.safetensors";
        std::fs::copy(out.join(anchors), shipped.join(anchors)).unwrap();
    }
    let stale = "is out of date; regenerate it with \
                 DUOCLIP_BLESS_TINY=1 cargo test --features gpu --test suite convert::the_shipped";
    // The manifest names the shipped anchors file by its own hash; its values are today's
    // within float rounding (OpenBLAS picks its kernel by CPU, so the text tower's last bits,
    // and the file's hash, differ between machines).
    let shipped_manifest = manifest(&shipped);
    let shipped_anchors = std::fs::read(shipped.join("anchors.safetensors")).unwrap_or_default();
    assert_eq!(
        shipped_manifest.anchors.sha256,
        sha256_hex(&shipped_anchors),
        "www/models/tiny/manifest.json names another anchors file: {stale}"
    );
    want.anchors.sha256 = shipped_manifest.anchors.sha256.clone();
    assert_eq!(
        shipped_manifest, want,
        "www/models/tiny/manifest.json {stale}"
    );
    let read = |dir: &Path| {
        let file = Checkpoint::from_file(&dir.join("anchors.safetensors")).unwrap();
        read_anchors(&file, &want.anchors.sets, &Device::flex()).unwrap()
    };
    for (got, made) in read(&shipped).into_iter().zip(read(&out)) {
        let (states, prompts) = ((got.states, made.states), (got.prompts, made.prompts));
        assert_close("states", &values(states.0), &values(states.1), 1e-5);
        assert_close("prompts", &values(prompts.0), &values(prompts.1), 1e-5);
    }
    // The fixture holds the converted weights exactly (plus logit_scale, which loads to nothing).
    let tensors = |file: &Path| {
        let ckpt = Checkpoint::from_file(file).unwrap();
        let clip = Clip::from_checkpoint(&ckpt, None, &want.overrides(), &Device::flex()).unwrap();
        openclip_tensors(&clip, true).unwrap()
    };
    let (made, fixture) = (tensors(&out.join("model.safetensors")), tensors(&weights));
    assert_eq!(made.len(), fixture.len());
    for (m, f) in made.iter().zip(&fixture) {
        assert_eq!((&m.name, &m.shape), (&f.name, &f.shape));
        assert!(m.values == f.values, "{} differs", m.name);
    }
}
