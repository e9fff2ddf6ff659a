//! Crash-safe batch work: `score` and `eval` killed with SIGKILL at seeded random points,
//! then rerun, end with the same files as a run never stopped, each image scored exactly
//! once and none lost, the pairs and sets being the same groups as without the kills.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// SplitMix64: the kill points come from a seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` distinct 32×32 noise images (the tiny model's input size, so decoding is cheap).
fn make_images(dir: &Path, n: usize, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let path = dir.join(format!("img{i:03}.png"));
            image::RgbImage::from_fn(32, 32, |_, _| {
                let v = rng.next();
                image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
            })
            .save(&path)
            .unwrap();
            path
        })
        .collect()
}

fn tiny_model_args(command: &str) -> Vec<String> {
    let model = fixture("openclip_tiny/model.safetensors");
    [
        command,
        "--model",
        model.to_str().unwrap(),
        "--text-heads",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

fn duoclip(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_duoclip"));
    command
        .args(args)
        .env("DUOCLIP_CACHE", test_cache())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run_to_end(args: &[String]) {
    let out = duoclip(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "duoclip {args:?} failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn progress_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Starts the command once per kill point, SIGKILLs it once `progress` holds that many lines
/// (plus a random few milliseconds, so kills land inside map and progress writes too), then
/// runs it to the end. Returns how many runs were killed before finishing on their own.
fn run_with_kills(args: &[String], progress: &Path, points: &[(usize, u64)]) -> usize {
    let mut killed = 0;
    for &(lines, jitter_ms) in points {
        let mut child = duoclip(args).stderr(Stdio::null()).spawn().unwrap();
        let start = Instant::now();
        while progress_count(progress) < lines && child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(120), "run stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(jitter_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix: no handler, no cleanup
            killed += 1;
        }
        child.wait().unwrap();
    }
    run_to_end(args);
    killed
}

/// A run may end on its own before its kill point (the last points fall in its final
/// writes), but most must have been killed or the test proves nothing.
fn assert_most_killed(killed: usize, runs: usize) {
    assert!(
        killed >= runs - runs / 4,
        "only {killed} of {runs} runs were killed"
    );
}

/// `kills` increasing progress counts below `total` (one at 0: killed while loading), and
/// one at `total`, killed while the last files are written.
fn kill_points(rng: &mut Rng, total: usize, kills: usize) -> Vec<(usize, u64)> {
    let mut counts: Vec<usize> = (1..kills)
        .map(|_| rng.below(total as u64) as usize)
        .collect();
    counts.extend([0, total]);
    counts.sort();
    counts.into_iter().map(|c| (c, rng.below(15))).collect()
}

/// Parsed progress lines (a line torn by a kill is not one) by their map name: each image
/// exactly once.
fn assert_each_scored_once(progress: &Path, expected: &HashSet<String>) {
    let text = std::fs::read_to_string(progress).unwrap();
    let maps: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["map"].as_str().unwrap().to_string())
        .collect();
    let unique: HashSet<String> = maps.iter().cloned().collect();
    assert_eq!(maps.len(), unique.len(), "an image was scored twice");
    assert_eq!(&unique, expected, "images lost or foreign");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every file below `dir` (relative path → bytes), leaving out the progress log (its line
/// order and torn lines depend on where the kills landed).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "progress.jsonl" {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                found.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

fn assert_same_files(killed: &Path, uninterrupted: &Path) {
    let (a, b) = (files(killed), files(uninterrupted));
    let names = |f: &[(PathBuf, Vec<u8>)]| f.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&a),
        names(&b),
        "different files (a .part left behind?)"
    );
    for ((path, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{} differs from the uninterrupted run",
            path.display()
        );
    }
}

fn score_args(out: &Path, images: &[PathBuf], extra: &[&str]) -> Vec<String> {
    let mut args = tiny_model_args("score");
    args.extend(["--object", "metal_nut", "--out", out.to_str().unwrap()].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(images.iter().map(|p| p.display().to_string()));
    args
}

/// `score` on `n` fresh images with `extra` options, uninterrupted and killed at `points`:
/// the same files, every image scored exactly once. Returns the images and the output folder.
fn score_survives_kills(
    name: &str,
    n: usize,
    extra: &[&str],
    points: &[(usize, u64)],
) -> (Vec<PathBuf>, PathBuf) {
    let dir = temp_dir(name);
    let images = make_images(&dir.join("images"), n, n as u64);
    let clean = dir.join("clean");
    run_to_end(&score_args(&clean, &images, extra));
    let out = dir.join("killed");
    let progress = out.join("progress.jsonl");
    let killed = run_with_kills(&score_args(&out, &images, extra), &progress, points);
    assert_most_killed(killed, points.len());
    let expected = (0..n).map(|i| format!("img{i:03}.npy")).collect();
    assert_each_scored_once(&progress, &expected);
    assert_same_files(&out, &clean);
    // A finished run reruns to the same files without scoring anything again.
    run_to_end(&score_args(&out, &images, extra));
    assert_each_scored_once(&progress, &expected);
    assert_same_files(&out, &clean);
    (images, out)
}

/// 200 images in sets of 7 (a set's scores depend on all its members, so a resume that
/// regrouped them would change the maps), killed 12 times.
#[test]
fn score_killed_at_random_points_ends_as_an_uninterrupted_run() {
    let extra = ["--pairing", "set", "--set-size", "7"];
    let points = kill_points(&mut Rng(42), 200, 12);
    let (images, out) = score_survives_kills("crash-score", 200, &extra, &points);
    let doc = read_json(&out.join("scores.json"));
    let entries = doc["images"].as_array().unwrap();
    assert_eq!(entries.len(), 200);
    for (entry, image) in entries.iter().zip(&images) {
        assert_eq!(
            entry["file"],
            image.display().to_string(),
            "input order kept"
        );
    }
}

/// AdamW state carried from image to image (`--tta-keep-optimizer`) survives kills too: the
/// finished groups are scored again, not written, before the first unfinished one.
#[test]
fn score_with_optimizer_state_across_images_resumes_to_the_same_maps() {
    let extra = ["--tta", "anovl", "--tta-keep-optimizer"];
    score_survives_kills("crash-tta", 12, &extra, &[(4, 0), (8, 0)]);
}

/// A kill inside the progress write: the torn line is ignored, only its image is written
/// again (its set scored whole), and the files are those of the run before.
#[test]
fn a_torn_progress_line_rescores_only_its_image() {
    let dir = temp_dir("crash-torn");
    let images = make_images(&dir.join("images"), 6, 5);
    let out = dir.join("out");
    let set = ["--pairing", "set", "--set-size", "3"];
    run_to_end(&score_args(&out, &images, &set));
    let before = files(&out);
    let progress = out.join("progress.jsonl");
    let text = std::fs::read_to_string(&progress).unwrap();
    std::fs::write(&progress, &text[..text.len() - 10]).unwrap();
    std::fs::remove_file(out.join("scores.json")).unwrap();
    run_to_end(&score_args(&out, &images, &set));
    assert_eq!(
        progress_count(&progress),
        7,
        "torn line kept, one image rescored"
    );
    let expected = (0..6).map(|i| format!("img{i:03}.npy")).collect();
    assert_each_scored_once(&progress, &expected);
    assert!(files(&out) == before, "the files changed");
}

#[test]
fn changed_images_or_set_size_are_refused_by_name() {
    let dir = temp_dir("crash-settings");
    let images = make_images(&dir.join("images"), 6, 3);
    let out = dir.join("out");
    let set = ["--pairing", "set", "--set-size", "3"];
    run_to_end(&score_args(&out, &images, &set));
    let (ok, err) = run_duoclip_strs(&score_args(&out, &images[..4], &set));
    assert!(
        !ok && err.contains("--out") && err.contains("images:"),
        "{err}"
    );
    let other = ["--pairing", "set", "--set-size", "2"];
    let (ok, err) = run_duoclip_strs(&score_args(&out, &images, &other));
    assert!(!ok && err.contains("set_size: 3 → 2"), "{err}");
    let (ok, err) = run_duoclip_strs(&score_args(&dir.join("o2"), &images, &["--set-size", "3"]));
    assert!(
        !ok && err.contains("--set-size") && err.contains("--pairing set"),
        "{err}"
    );
}

fn run_duoclip_strs(args: &[String]) -> (bool, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_duoclip(&args)
}

/// A folder-layout set of two classes, one of odd size (pairs plus a triple, in a seeded
/// order).
fn make_dataset(root: &Path) -> usize {
    let mut n = 0;
    for (class, good, bad) in [("alpha", 12, 9), ("beta", 10, 8)] {
        for (folder, count) in [("good", good), ("bad", bad)] {
            let seed = n as u64 + 100;
            make_images(&root.join(class).join(folder), count, seed);
            n += count;
        }
    }
    n
}

/// `eval` with `extra` options on a fresh dataset, uninterrupted and killed `kills` times:
/// the same files, every image scored exactly once.
fn eval_survives_kills(name: &str, extra: &[&str], seed: u64, kills: usize) {
    let dir = temp_dir(name);
    let data = dir.join("data");
    let total = make_dataset(&data);
    let args = |out: &Path| {
        let mut args = tiny_model_args("eval");
        for a in ["--data", data.to_str().unwrap(), "--layout", "folder"] {
            args.push(a.into());
        }
        args.extend(["--object", "metal_nut", "--out", out.to_str().unwrap()].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let clean = dir.join("clean");
    run_to_end(&args(&clean));
    let out = dir.join("killed");
    let progress = out.join("progress.jsonl");
    let points = kill_points(&mut Rng(seed), total, kills);
    let killed = run_with_kills(&args(&out), &progress, &points);
    assert_most_killed(killed, points.len());
    let expected: HashSet<String> = read_progress_maps(&clean.join("progress.jsonl"));
    assert_eq!(expected.len(), total);
    assert_each_scored_once(&progress, &expected);
    assert_same_files(&out, &clean);
}

/// Pairs and a triple per class, in a seeded order; one progress line per image, so kills
/// also land between the images of a pair.
#[test]
fn eval_killed_at_random_points_ends_as_an_uninterrupted_run() {
    eval_survives_kills("crash-eval", &[], 9, 8);
}

/// AdamW state carried across a class's images: finished groups are scored again first.
#[test]
fn eval_with_optimizer_state_across_images_resumes_to_the_same_maps() {
    let extra = [
        "--preset",
        "anovl",
        "--tta",
        "anovl",
        "--tta-keep-optimizer",
    ];
    eval_survives_kills("crash-eval-tta", &extra, 5, 3);
}

fn read_progress_maps(path: &Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["map"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}
