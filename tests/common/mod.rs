//! Helpers shared by the integration tests: fixtures and comparisons.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};
use duoclip::clip::{ArchOverrides, Clip};
use duoclip::image::{ImageLimits, decode, to_clip_input};
use serde_json::Value;

/// Tolerance of every tower parity check against the torch references (max abs error).
pub const TOL: f32 = 1e-4;

/// Tolerance of whole-detector maps and scores against their references (max abs error),
/// sized to what the CPU path achieves: measured ≤ 1.8e-7 in the maps and ≤ 6e-8 in the
/// scores (2026-12-02). On the random tiny model the maps span ~0.005 and the two product
/// images' scores differ by 1.2e-4; on the shaped one (`openclip_signal`) 0.33–0.66 and 0.08,
/// so a constant map or swapped images fail by orders of magnitude.
pub const MAP_TOL: f32 = 1e-5;

/// The wgpu device of a GPU test, or `None` — the test then returns, saying it skipped — on a
/// machine without an adapter. Where `DUOCLIP_REQUIRE_GPU` is set (`scripts/test.sh`, which
/// installs the software adapter lavapipe) a missing adapter fails the test instead: there it
/// is a broken machine, not a reason to pass.
#[cfg(feature = "gpu")]
pub fn gpu_device(test: &str) -> Option<Device> {
    match duoclip::backend::gpu() {
        Ok(device) => Some(device),
        Err(e) if std::env::var_os("DUOCLIP_REQUIRE_GPU").is_some() => {
            panic!("{test}: DUOCLIP_REQUIRE_GPU is set and there is no GPU adapter: {e}")
        }
        Err(e) => {
            println!("SKIPPED {test}: {e}");
            None
        }
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn reference(dir: &str) -> Value {
    let text =
        std::fs::read_to_string(fixture(dir).join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number") as f32],
        other => panic!("expected numbers, got {other}"),
    }
}

pub fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

pub fn values3(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// The largest |a − b| over two equally long lists.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Max abs difference; also fails on a length mismatch.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, reference has {}",
        got.len(),
        want.len()
    );
    let err = max_abs_diff(got, want);
    assert!(err <= tol, "{what}: max abs error {err:e} > {tol:e}");
    // A reference of all zeros would make the check vacuous.
    assert!(
        want.iter().any(|v| v.abs() > 1e-3),
        "{what}: reference is all ~0"
    );
}

/// Normalized CLIP input of a fixture image at the model's size.
pub fn pixels(dir: &str, file: &str, size: usize) -> Vec<f32> {
    let path = fixture(dir).join(file);
    let bytes = std::fs::read(&path).expect("fixture image");
    let img =
        decode(&bytes, &path.display().to_string(), &ImageLimits::default()).expect("decodes");
    to_clip_input(&img, size as u32)
}

pub fn load(rel: &str, overrides: ArchOverrides, device: &Device) -> Clip {
    Clip::load(&fixture(rel), &overrides, device).unwrap_or_else(|e| panic!("loading {rel}: {e}"))
}

/// Token lists of the reference.
pub fn tokens(r: &Value) -> Vec<Vec<u32>> {
    r["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| {
            t.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

/// The tiny OpenCLIP fixture; its 8-wide text tower is below the 64-wide-head convention,
/// so its 2 heads are given.
pub fn tiny_openclip(device: &Device) -> Clip {
    let overrides = ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    };
    load("openclip_tiny/model.safetensors", overrides, device)
}

/// The shaped tiny OpenCLIP model (tools/gen_signal_fixture.py): its maps span ≥ 0.3 and its
/// pair's scores differ by ≥ 0.05, so a wrong map or a swap is far outside any tolerance.
pub fn signal_openclip(device: &Device) -> Clip {
    let overrides = ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    };
    load("openclip_signal/model.safetensors", overrides, device)
}

/// Runs the `duoclip` binary with this test run's own cache ([`test_cache`]); fails the test
/// on a panic.
pub fn run_duoclip(args: &[&str]) -> (bool, String) {
    run_duoclip_in(std::path::Path::new("."), args)
}

/// `run_duoclip` in the folder `cwd` (where a relative `--out` lands).
pub fn run_duoclip_in(cwd: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duoclip"))
        .args(args)
        .current_dir(cwd)
        .env("DUOCLIP_CACHE", test_cache())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("panicked"),
        "duoclip panicked on {args:?}:\n{stderr}"
    );
    (out.status.success(), stderr)
}

/// Runs `duoclip <command> --model <tiny OpenCLIP> --text-heads 2 <args>`.
pub fn run_with_tiny_model(command: &str, args: &[&str]) -> (bool, String) {
    let model = fixture("openclip_tiny/model.safetensors");
    let model = model.to_str().expect("UTF-8 fixture path");
    let mut all = vec![command, "--model", model, "--text-heads", "2"];
    all.extend(args);
    run_duoclip(&all)
}

/// A fresh, empty temporary folder, in this test process's folder: `name` and a number of its
/// own, so that no two calls (tests run in parallel) ever share one.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = run_folder().join(format!("{name}-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `DUOCLIP_CACHE` of this test run: its own, so that anchors cached by an earlier build of
/// the code are never read.
pub fn test_cache() -> PathBuf {
    run_folder().join("cache")
}

/// `duoclip-tests-<pid>` in the system's temporary folder: every folder of [`temp_dir`] for
/// this process. The first call removes those of earlier runs whose process has ended (a run
/// writes ~30 MB of bundles, maps and images), so the last run's stay for inspection and
/// repeated runs do not fill the disk.
fn run_folder() -> &'static Path {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let tmp = std::env::temp_dir();
        remove_ended_runs(&tmp);
        tmp.join(format!("{RUN_PREFIX}{}", std::process::id()))
    })
}

const RUN_PREFIX: &str = "duoclip-tests-";

/// Removes the run folders in `tmp` whose process is gone. Linux only: elsewhere there is no
/// `/proc` to tell, and a folder of a run still going must not be removed.
fn remove_ended_runs(tmp: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(RUN_PREFIX));
        let ended = pid
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if ended {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
