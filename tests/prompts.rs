//! The prompt ensemble (METHOD.md §3) against tools/gen_prompt_fixture.py: the prompt lists
//! string for string, the text anchors and per-prompt embeddings of open_clip on openclip_tiny
//! (max abs error ≤ 1e-4), and the anchor cache in memory and on disk.

use crate::common;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use common::*;
use duoclip::clip::{ArchOverrides, Checkpoint, Clip, Tokenizer};
use duoclip::models::bundle::Manifest;
use duoclip::prompts::{
    AnchorCache, Domain, TextAnchors, model_id, prompts, read_anchors, text_anchors,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MODEL: &str = "openclip_tiny/model.safetensors";

fn overrides() -> ArchOverrides {
    ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    }
}

fn cases() -> Vec<Value> {
    reference("prompts")["cases"].as_array().unwrap().clone()
}

fn domain_of(case: &Value) -> Domain {
    case["domain"].as_str().unwrap().parse().expect("domain")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "duoclip-test-prompts-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn prompt_lists_match_the_python_reference() {
    for case in cases() {
        let domain = domain_of(&case);
        let object = case["object"].as_str().unwrap();
        let what = format!("{domain}/{object}");
        let [normal, abnormal] = prompts(&domain, object).unwrap();
        let per_side = case["per_side"].as_u64().unwrap() as usize;
        assert_eq!(
            (normal.len(), abnormal.len()),
            (per_side, per_side),
            "{what}"
        );
        for (side, list) in [("normal", &normal), ("abnormal", &abnormal)] {
            assert_eq!(
                list[..3].to_vec(),
                strings(&case["first"][side]),
                "{what} {side}"
            );
            assert_eq!(
                list[per_side - 3..].to_vec(),
                strings(&case["last"][side]),
                "{what} {side}"
            );
            assert_eq!(
                sha256_hex(list.join("\n").as_bytes()),
                case["sha256"][side].as_str().unwrap(),
                "{what} {side}: prompt list differs from the reference's"
            );
        }
    }
}

fn check_anchors(what: &str, anchors: TextAnchors, case: &Value) {
    let per_side = case["per_side"].as_u64().unwrap() as usize;
    let states = values(anchors.states);
    let width = states.len() / 2;
    assert_close(
        &format!("{what} t_n"),
        &states[..width],
        &floats(&case["t_n"]),
        TOL,
    );
    assert_close(
        &format!("{what} t_a"),
        &states[width..],
        &floats(&case["t_a"]),
        TOL,
    );
    let e = values(anchors.prompts);
    assert_eq!(e.len(), 2 * per_side * width, "{what}: E shape");
    for (row, want) in case["rows"].as_object().unwrap() {
        let r: usize = row.parse().unwrap();
        assert_close(
            &format!("{what} E row {r}"),
            &e[r * width..(r + 1) * width],
            &floats(want),
            TOL,
        );
    }
}

fn check_all_cases(clip: &Clip) {
    let tokenizer = Tokenizer::new();
    for case in cases() {
        let domain = domain_of(&case);
        let object = case["object"].as_str().unwrap();
        let start = Instant::now();
        let anchors = text_anchors(clip, &tokenizer, &domain, object).expect("text anchors");
        let rows = anchors.prompts.dims()[0];
        check_anchors(&format!("{domain}/{object}"), anchors, &case);
        println!(
            "text_anchors {domain}/{object}: {rows} prompts in {:.0} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}

#[test]
fn text_anchors_match_open_clip() {
    check_all_cases(&load(MODEL, overrides(), &Device::flex()));
}

/// The anchors the site ships (www/models/tiny, written by `convert`) against open_clip's
/// `encode_text`, not against the code that wrote them: every domain and object the reference
/// and the bundle both hold (texture/carpet and the five medical domains; the bundle's weights
/// are this fixture's).
#[test]
fn the_shipped_tiny_anchors_match_open_clip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/tiny");
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let manifest = Manifest::parse(&text, "manifest.json").unwrap();
    let file = Checkpoint::from_file(&dir.join(&manifest.anchors.file)).unwrap();
    let shipped = read_anchors(&file, &manifest.anchors.sets, &Device::flex()).unwrap();
    let mut compared = 0;
    for case in cases() {
        let (domain, object) = (
            case["domain"].as_str().unwrap(),
            case["object"].as_str().unwrap(),
        );
        let at = manifest
            .anchors
            .sets
            .iter()
            .position(|s| s.domain == domain && s.object == object);
        if let Some(i) = at {
            check_anchors(
                &format!("shipped {domain}/{object}"),
                shipped[i].clone(),
                &case,
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 1,
        "no domain of the reference is in the shipped bundle"
    );
}

/// The same on a wgpu device, when this machine has an adapter.
#[cfg(feature = "gpu")]
#[test]
fn gpu_text_anchors_match_when_an_adapter_exists() {
    if let Some(device) = gpu_device("gpu prompts") {
        check_all_cases(&load(MODEL, overrides(), &device));
    }
}

fn assert_same(what: &str, a: &TextAnchors, b: &TextAnchors) {
    assert_eq!(a.states.dims(), b.states.dims(), "{what}");
    assert_eq!(a.prompts.dims(), b.prompts.dims(), "{what}");
    assert_eq!(values(a.states.clone()), values(b.states.clone()), "{what}");
    assert_eq!(
        values(a.prompts.clone()),
        values(b.prompts.clone()),
        "{what}"
    );
}

fn anchor_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    files
}

#[test]
fn anchor_cache_round_trips_and_recovers_from_a_corrupt_file() {
    let device = Device::flex();
    let clip = load(MODEL, overrides(), &device);
    let tokenizer = Tokenizer::new();
    let domain = Domain::BrainMri;
    let object = domain.default_object().unwrap();
    let tmp = TempDir::new("cache");
    let id = model_id(&fixture(MODEL)).unwrap();
    let calls = Cell::new(0);
    let compute = || {
        calls.set(calls.get() + 1);
        text_anchors(&clip, &tokenizer, &domain, object)
    };

    // First run: computed, written to disk; the same cache then answers from memory.
    let mut cache = AnchorCache::new(Some(tmp.0.clone()));
    let fresh = cache
        .get_or_compute(&id, &domain, object, &device, compute)
        .unwrap();
    assert_eq!(calls.get(), 1);
    let again = cache
        .get_or_compute(&id, &domain, object, &device, || {
            panic!("memory hit must not compute")
        })
        .unwrap();
    assert_same("memory hit", &fresh, &again);
    assert!(cache.warnings().is_empty(), "{:?}", cache.warnings());
    let files = anchor_files(&tmp.0);
    assert_eq!(files.len(), 1, "one anchor file: {files:?}");

    // A new cache (a new process) reads the file back bit for bit.
    let mut reopened = AnchorCache::new(Some(tmp.0.clone()));
    let from_disk = reopened
        .get_or_compute(&id, &domain, object, &device, || {
            panic!("disk hit must not compute")
        })
        .unwrap();
    assert_same("disk round trip", &fresh, &from_disk);

    // Other keys are other entries.
    let other = reopened
        .get_or_compute(&id, &domain, "liver", &device, || {
            text_anchors(&clip, &tokenizer, &domain, "liver")
        })
        .unwrap();
    assert_ne!(values(other.states), values(fresh.states.clone()));
    assert_eq!(anchor_files(&tmp.0).len(), 2);

    // Damaged files of every kind are recomputed and replaced, never a panic.
    let bytes = std::fs::read(&files[0]).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    let damages: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("truncated", bytes[..bytes.len() - 100].to_vec()),
        ("bit flip", flipped),
        ("garbage", b"not an anchor file at all".repeat(40)),
    ];
    for (what, damaged) in damages {
        std::fs::write(&files[0], &damaged).unwrap();
        calls.set(0);
        let mut cache = AnchorCache::new(Some(tmp.0.clone()));
        let recovered = cache
            .get_or_compute(&id, &domain, object, &device, compute)
            .unwrap();
        assert_eq!(calls.get(), 1, "{what}: recomputed");
        assert_same(what, &fresh, &recovered);
        assert_eq!(
            std::fs::read(&files[0]).unwrap(),
            bytes,
            "{what}: rewritten"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn memory_only_cache_and_unwritable_dir_still_answer() {
    let device = Device::flex();
    let clip = load(MODEL, overrides(), &device);
    let tokenizer = Tokenizer::new();
    let domain: Domain = "custom:X-ray image".parse().unwrap();
    let compute = || text_anchors(&clip, &tokenizer, &domain, "weld");

    let mut memory = AnchorCache::new(None);
    let a = memory
        .get_or_compute("m", &domain, "weld", &device, compute)
        .unwrap();
    let b = memory
        .get_or_compute("m", &domain, "weld", &device, || panic!("memory hit"))
        .unwrap();
    assert_same("memory only", &a, &b);
    assert_eq!(a.prompts.dims()[0], 2 * 22 * 7);

    // A "directory" that is a file: nothing can be written there, the anchors still come.
    let tmp = TempDir::new("unwritable");
    let not_a_dir = tmp.0.join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let mut cache = AnchorCache::new(Some(not_a_dir));
    let c = cache
        .get_or_compute("m", &domain, "weld", &device, compute)
        .unwrap();
    assert_same("unwritable dir", &a, &c);
    assert_eq!(cache.warnings().len(), 1, "{:?}", cache.warnings());
}

#[test]
fn model_id_is_the_weights_sha256_and_is_memoized() {
    let file = fixture(MODEL);
    let want = sha256_hex(&std::fs::read(&file).unwrap());
    assert_eq!(model_id(&file).unwrap(), want);
    // A Hugging Face directory is its weights file.
    let hf = fixture("hf_tiny");
    assert_eq!(
        model_id(&hf).unwrap(),
        model_id(&hf.join("model.safetensors")).unwrap()
    );
    assert!(model_id(&fixture("no-such-model.safetensors")).is_err());

    let tmp = TempDir::new("model-id");
    let mut cache = AnchorCache::new(Some(tmp.0.clone()));
    assert_eq!(cache.model_id(&file).unwrap(), want);
    let memo_path = tmp.0.join("model-ids.json");
    let memo: Value = serde_json::from_slice(&std::fs::read(&memo_path).unwrap()).unwrap();
    let canonical = file.canonicalize().unwrap().display().to_string();
    assert_eq!(memo["files"][&canonical]["sha256"], want.as_str());

    // A later process believes the memo while size and mtime are unchanged (proved by a
    // planted hash) and hashes again when they are not.
    let planted = "ab".repeat(32);
    let mut edited = memo.clone();
    edited["files"][&canonical]["sha256"] = planted.clone().into();
    std::fs::write(&memo_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    assert_eq!(
        AnchorCache::new(Some(tmp.0.clone()))
            .model_id(&file)
            .unwrap(),
        planted
    );
    edited["files"][&canonical]["mtime_ns"] = 1.into();
    std::fs::write(&memo_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    assert_eq!(
        AnchorCache::new(Some(tmp.0.clone()))
            .model_id(&file)
            .unwrap(),
        want
    );
    // A corrupt memo is ignored and replaced.
    std::fs::write(&memo_path, b"{not json").unwrap();
    let mut cache = AnchorCache::new(Some(tmp.0.clone()));
    assert_eq!(cache.model_id(&file).unwrap(), want);
    assert!(cache.warnings().is_empty(), "{:?}", cache.warnings());
    let memo: Value = serde_json::from_slice(&std::fs::read(&memo_path).unwrap()).unwrap();
    assert_eq!(memo["files"][&canonical]["sha256"], want.as_str());
}
