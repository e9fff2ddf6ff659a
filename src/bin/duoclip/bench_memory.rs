//! Peak memory for `duoclip bench`: a fresh process loads a bundle from disk and scores a
//! pair, as `duoclip score` would, and reports its peak resident set against the weights.
//! A fresh process, because an allocator keeps freed pages: measured after other work, the
//! peak would say more about the bench than about a user's run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use duoclip::clip::{ArchOverrides, Clip};
use duoclip::detect::Detector;
use duoclip::detect::config::DetectorConfig;
use duoclip::models::bundle::WEIGHTS_FILE;
use duoclip::{Error, Result, backend};
use serde_json::{Value, json};

use crate::bench::{random_anchors, test_image};

/// Writes a random full-size fp16 bundle (with the text tower) into `dir`, in a child
/// `duoclip convert`, so this process never holds the random checkpoint.
pub fn write_random_bundle(dir: &Path) -> Result<()> {
    let status = Command::new(exe()?)
        .args([
            "convert",
            "--random",
            "vit-b-16-plus-240",
            "--fp16",
            "--text",
            "full",
        ])
        .args(["--domains", "object:bottle", "--out"])
        .arg(dir)
        .status()
        .map_err(|e| Error::Model(format!("running `duoclip convert` for the bench: {e}")))?;
    if !status.success() {
        return Err(Error::Model(format!(
            "`duoclip convert --random` failed: {status}"
        )));
    }
    Ok(())
}

/// Runs [`probe`] in a child and returns what it printed.
pub fn measure(dir: &Path, device: &str) -> Result<Value> {
    let out = Command::new(exe()?)
        .args(["bench", "--device", device, "--probe-memory"])
        .arg(dir)
        .output()
        .map_err(|e| Error::Model(format!("running the memory probe: {e}")))?;
    if !out.status.success() {
        return Err(Error::Model(format!(
            "the memory probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Model(format!("the memory probe printed no JSON: {e}")))
}

/// The child: load the bundle's weights, score one product pair, print the peaks as JSON.
pub fn probe(dir: &Path, device: &str) -> Result<()> {
    let device = backend::by_name(device)?;
    let weights = dir.join(WEIGHTS_FILE);
    let file_bytes = std::fs::metadata(&weights)
        .map_err(|e| Error::io(weights.display(), e))?
        .len();
    let before = peak_rss_bytes();
    let start = Instant::now();
    let clip = Clip::load(&weights, &ArchOverrides::default(), &device)?;
    let load_s = start.elapsed().as_secs_f64();
    let after_load = peak_rss_bytes();
    let params = clip.num_params() as u64;
    let embed = clip.config.vision.embed_dim;
    let depth = clip.config.vision.tower.layers;
    let anchors = random_anchors(embed, &device);
    let detector = Detector::new(clip, anchors, DetectorConfig::product(depth), device)?;
    let image = test_image(240);
    let pair = [detector.prepare(&image), detector.prepare(&image)];
    detector.score(&[&pair[0], &pair[1]], &[])?;
    let after_score = peak_rss_bytes();
    let f32_bytes = 4 * params;
    let ratio = |peak: Option<u64>| peak.map(|p| p as f64 / f32_bytes as f64);
    let doc = json!({
        "load_s": load_s,
        "params": params,
        "weights_f32_bytes": f32_bytes,
        "weights_file_bytes": file_bytes,
        "peak_rss_before_load_bytes": before,
        "peak_rss_after_load_bytes": after_load,
        "peak_rss_after_pair_bytes": after_score,
        "peak_over_f32_weights": ratio(after_score),
    });
    println!("{doc}");
    Ok(())
}

/// The process's peak resident set (`VmHWM`), where the OS reports it (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().map_err(|e| Error::Model(format!("finding duoclip's own path: {e}")))
}
