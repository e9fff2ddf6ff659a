//! The short run of every fuzz target (the long one is `scripts/fuzz.sh TARGET MINUTES`):
//! each target's committed corpus (`tests/fixtures/fuzz/<target>/`: seeds, plus every input
//! that once crashed, named `crash-*`) is replayed, then seeded random mutations of it are
//! run through the same `fuzz/entries.rs` function the cargo-fuzz target calls. Any
//! panic fails the test and saves the input that caused it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fuzz_entry;
use duoclip::clip::Tokenizer;

/// Mutations per target: a few seconds for all targets together in the dev profile.
const MUTATIONS: usize = 4000;
/// One input taking longer than this is reported as a hang (generous: the CI machine is
/// shared; every input here takes milliseconds).
const HANG: Duration = Duration::from_secs(20);

/// xorshift64*: deterministic, so a failure reproduces from the test alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes parsers treat specially: length and size fields at their limits, JSON/TOML syntax.
const INTERESTING: [u8; 12] = [
    0, 1, 0x7f, 0x80, 0xff, b'{', b'}', b'"', b'[', b'\n', b',', b'9',
];

/// One to four libFuzzer-style edits: bit flips, interesting bytes, inserts, deletes,
/// duplicated ranges, truncation and splicing with another corpus input.
fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        let last = out.len().saturating_sub(1);
        match rng.below(7) {
            0 if !out.is_empty() => out[at.min(last)] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at.min(last)] = INTERESTING[rng.below(INTERESTING.len())],
            2 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let copy = out[at.min(end)..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            5 => out.truncate(at),
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Runs `entry` on one input; a panic or a hang fails the test, naming a saved copy of it.
fn run_one(target: &str, label: &str, input: &[u8], entry: &dyn Fn(&[u8])) {
    let start = Instant::now();
    if catch_unwind(AssertUnwindSafe(|| entry(input))).is_err() {
        panic!("{target} panicked on {label}; {}", save(target, input));
    }
    assert!(
        start.elapsed() < HANG,
        "{target} took {:?} on {label}; {}",
        start.elapsed(),
        save(target, input)
    );
}

/// Keeps a failing input for `cargo fuzz run TARGET FILE` and for the regression corpus.
fn save(target: &str, input: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("duoclip-fuzz-smoke-{target}.bin"));
    std::fs::write(&path, input).unwrap();
    format!(
        "input saved to {}: copy it to tests/fixtures/fuzz/{target}/crash-<what> once fixed",
        path.display()
    )
}

/// Replays the corpus, then mutates it.
fn smoke(target: &str, seed: u64, entry: &dyn Fn(&[u8])) {
    let files = corpus(target);
    for (path, bytes) in &files {
        run_one(target, &path.display().to_string(), bytes, entry);
    }
    let inputs: Vec<Vec<u8>> = files.into_iter().map(|(_, b)| b).collect();
    let mut rng = Rng(seed);
    for i in 0..MUTATIONS {
        let base = &inputs[rng.below(inputs.len())];
        let mutated = mutate(&mut rng, base, &inputs);
        run_one(
            target,
            &format!("mutation {i} (seed {seed})"),
            &mutated,
            entry,
        );
    }
}

#[test]
fn safetensors_checkpoint() {
    // The seed is a complete model: at least the seed itself must load.
    let seed = &corpus("safetensors_checkpoint")[0].1;
    assert!(fuzz_entry::safetensors_checkpoint(seed).unwrap() > 1000);
    smoke("safetensors_checkpoint", 1, &|b| {
        let _ = fuzz_entry::safetensors_checkpoint(b);
    });
}

#[test]
fn pytorch_checkpoint() {
    let scratch = std::env::temp_dir().join(format!("duoclip-smoke-{}.pt", std::process::id()));
    let seed = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz/pytorch_checkpoint/seed-tiny-vision.pt"),
    )
    .unwrap();
    assert!(fuzz_entry::pytorch_checkpoint(&seed, &scratch).unwrap() > 1000);
    smoke("pytorch_checkpoint", 2, &|b| {
        let _ = fuzz_entry::pytorch_checkpoint(b, &scratch);
    });
    let _ = std::fs::remove_file(&scratch);
}

#[test]
fn hf_config() {
    smoke("hf_config", 3, &|b| {
        let _ = fuzz_entry::hf_config(b);
    });
}

#[test]
fn tokenizer() {
    let tokenizer = Tokenizer::new();
    // open_clip.tokenize gives SOT + 8 tokens ("metal", "_", "nut" are three) + EOT; the
    // entry counts tokenize's 10 ids plus encode's 8.
    assert_eq!(
        fuzz_entry::tokenize(&tokenizer, b"a photo of a damaged metal_nut"),
        10 + 8
    );
    smoke("tokenizer", 4, &|b| {
        fuzz_entry::tokenize(&tokenizer, b);
    });
}

#[test]
fn image() {
    assert_eq!(
        fuzz_entry::image(&corpus("image")[1].1).unwrap(),
        3 * 32 * 32
    );
    smoke("image", 5, &|b| {
        let _ = fuzz_entry::image(b);
    });
}

/// The medical readers and TIFF: every seed opens and decodes (the corpora's own
/// regression inputs aside), then mutations never panic.
fn source_smoke(target: &str, seed: u64) {
    for (path, bytes) in corpus(target) {
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("crash-")
        {
            let samples = fuzz_entry::source(&bytes);
            assert!(samples.is_ok_and(|n| n > 0), "{}", path.display());
        }
    }
    smoke(target, seed, &|b| {
        let _ = fuzz_entry::source(b);
    });
}

#[test]
fn dicom() {
    source_smoke("dicom", 8);
}

#[test]
fn nifti() {
    source_smoke("nifti", 9);
}

#[test]
fn tiff() {
    source_smoke("tiff", 10);
}

#[test]
fn registry() {
    assert!(fuzz_entry::registry(&corpus("registry")[0].1).unwrap() >= 4);
    smoke("registry", 6, &|b| {
        let _ = fuzz_entry::registry(b);
    });
}

#[test]
fn bundle_manifest() {
    fuzz_entry::bundle_manifest(&corpus("bundle_manifest")[0].1).unwrap();
    smoke("bundle_manifest", 7, &|b| {
        let _ = fuzz_entry::bundle_manifest(b);
    });
}
