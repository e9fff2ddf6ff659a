//! `duoclip score` as a user runs it: outputs as documented, and bad input ending in a
//! clear message (or a documented conversion), never a panic.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `score` on the tiny model with `extra` options and `images`.
fn score(out: &Path, extra: &[&str], images: &[&Path]) -> (bool, String) {
    let mut args = vec!["--object", "metal_nut", "--out", s(out)];
    args.extend(extra);
    args.extend(images.iter().map(|p| s(p)));
    run_with_tiny_model("score", &args)
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

#[test]
fn a_pair_gives_scores_maps_and_overlays() {
    let out = temp_dir("pair");
    let image = fixture("openclip_tiny/image.png");
    let big = fixture("openclip_tiny/image_big.png");
    let (ok, err) = score(&out, &[], &[&image, &big]);
    assert!(ok, "{err}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["file"], s(&image));
    assert_eq!(images[0]["map"], "image.npy");
    assert_eq!(images[1]["map"], "image_big.npy");
    assert_eq!(doc["config"]["detector"]["preset"], "product");
    assert_eq!(doc["config"]["detector"]["lambda"], 0.5);
    for (entry, stem) in images.iter().zip(["image", "image_big"]) {
        let (shape, map) = read_npy(&out.join(format!("{stem}.npy")));
        assert_eq!(shape, vec![32, 32]);
        let peak = map.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let score = entry["score"].as_f64().unwrap() as f32;
        assert!(
            score > 0.5 * peak && score <= 0.5 + 0.5 * peak + 1e-6,
            "score {score} peak {peak}"
        );
        let png = image::open(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(
            (png.width(), png.height()),
            (32, 32 + 18),
            "overlay + legend"
        );
    }
    assert!(
        !out.read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".part"))
    );
}

#[test]
fn anovl_preset_matches_the_library_and_repeated_names_are_kept_apart() {
    let out = temp_dir("anovl");
    let a = temp_dir("anovl-a").join("x.png");
    let b = temp_dir("anovl-b").join("x.png");
    std::fs::copy(fixture("openclip_tiny/image.png"), &a).unwrap();
    std::fs::copy(fixture("hf_tiny/image.png"), &b).unwrap();
    let (ok, err) = score(&out, &["--preset", "anovl", "--views", "22"], &[&a, &b]);
    assert!(ok, "{err}");
    assert!(out.join("x.npy").exists() && out.join("x-2.npy").exists());
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("detector/reference.json")).unwrap())
            .unwrap();
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let want = reference["anovl_v22"][0]["score"].as_f64().unwrap();
    let got = doc["images"][0]["score"].as_f64().unwrap();
    assert!(
        (want - got).abs() < 1e-4,
        "22-view score {got} vs reference {want}"
    );
}

#[test]
fn bad_input_is_named_and_never_panics() {
    let out = temp_dir("bad");
    let image = fixture("openclip_tiny/image.png");
    let (ok, err) = score(&out, &["--pairing", "pairs"], &[&image]);
    assert!(!ok && err.contains("--pairing pairs"), "{err}");
    let (ok, err) = score(&out, &["--pairing", "pairs"], &[&image, &image, &image]);
    assert!(!ok && err.contains("even number"), "{err}");
    let (ok, err) = score(&out, &["--domain", "dental"], &[&image]);
    assert!(
        !ok && err.contains("dental") && err.contains("brain-mri"),
        "{err}"
    );
    let model = fixture("openclip_tiny/model.safetensors");
    let (ok, err) = run_duoclip(&[
        "score",
        "--model",
        s(&model),
        "--object",
        "  ",
        "--out",
        s(&out),
        s(&image),
    ]);
    assert!(!ok && err.contains("--object"), "{err}");
    let (ok, err) = score(&out, &["--views", "5"], &[&image]);
    assert!(!ok && err.contains("--views"), "{err}");
    let (ok, err) = score(&out, &["--lambda", "1.5"], &[&image]);
    assert!(!ok && err.contains("--lambda"), "{err}");
    assert!(
        !out.join("scores.json").exists(),
        "failed runs write no results"
    );
}

/// Grayscale and 16-bit PNGs, 16-bit TIFFs and CMYK JPEGs are converted to RGB (documented
/// in src/image.rs), with the window used recorded; a pair of different sizes is resized to the model input, so it scores.
#[test]
fn odd_formats_and_sizes_are_converted() {
    let dir = temp_dir("formats");
    let gray = dir.join("gray.png");
    image::GrayImage::from_fn(40, 40, |x, y| image::Luma([(x * 6 + y) as u8]))
        .save(&gray)
        .unwrap();
    let deep = dir.join("deep.png");
    image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(32, 32, |x, y| {
        image::Rgb([x as u16 * 2000, y as u16 * 2000, 30000])
    })
    .save(&deep)
    .unwrap();
    let tiff = dir.join("deep.tif");
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(24, 24, |x, y| {
        image::Luma([(x * 24 + y) as u16 * 7])
    })
    .save(&tiff)
    .unwrap();
    let cmyk = fixture("images/cmyk.jpg");
    let out = dir.join("out");
    let (ok, err) = score(&out, &["--pairing", "set"], &[&gray, &deep, &cmyk, &tiff]);
    assert!(ok, "{err}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let images = doc["images"].as_array().unwrap();
    assert!(
        images
            .iter()
            .all(|i| i["score"].as_f64().unwrap().is_finite())
    );
    // 16-bit images record the window that made them 8-bit; 8-bit ones have none.
    let windows: Vec<&Value> = images.iter().map(|i| &i["window"]).collect();
    assert!(windows[0].is_null() && windows[2].is_null(), "{windows:?}");
    for w in [windows[1], windows[3]] {
        assert_eq!(w["source"], "percentile 0.5-99.5", "{w}");
        assert_eq!(w["function"], "LINEAR_EXACT", "{w}");
    }
    // numpy.percentile(7 * arange(576), [0.5, 99.5]) == [20.125, 4004.875]
    assert!((windows[3]["centre"].as_f64().unwrap() - 2012.5).abs() < 1e-6);
    assert!((windows[3]["width"].as_f64().unwrap() - 3984.75).abs() < 1e-6);
    let (shape, _) = read_npy(&out.join("cmyk.npy"));
    assert_eq!(
        shape,
        vec![32, 64],
        "the 16×8 CMYK image is wide: two tiles"
    );
}

/// Scores and maps of a pair, as `score` wrote them in `out`, and the device it names.
fn scored(out: &Path) -> (Vec<f32>, Vec<Vec<f32>>, Value) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let images = doc["images"].as_array().unwrap();
    let scores = images
        .iter()
        .map(|e| e["score"].as_f64().unwrap() as f32)
        .collect();
    let maps = images
        .iter()
        .map(|e| read_npy(&out.join(e["map"].as_str().unwrap())).1)
        .collect();
    (scores, maps, doc["config"].clone())
}

/// `--device gpu` (wgpu: lavapipe in CI) gives the CPU's scores and maps on the shaped model,
/// within a tolerance far below the gap between the two images' scores (0.024) and a map's
/// range (0.09–0.47).
#[cfg(feature = "gpu")]
#[test]
fn the_gpu_device_scores_like_the_cpu() {
    if gpu_device("score --device gpu").is_none() {
        return;
    }
    let [model, a, b] = ["model.safetensors", "image.png", "image_big.png"]
        .map(|f| fixture(&format!("openclip_signal/{f}")));
    let run = |device: &str| {
        let out = temp_dir(&format!("device-{device}"));
        let args = [
            "score",
            "--model",
            s(&model),
            "--text-heads",
            "2",
            "--object",
            "metal_nut",
            "--device",
            device,
            "--out",
            s(&out),
            s(&a),
            s(&b),
        ];
        let (ok, err) = run_duoclip(&args);
        assert!(ok, "--device {device}: {err}");
        scored(&out)
    };
    let (cpu_scores, cpu_maps, _) = run("cpu");
    let (gpu_scores, gpu_maps, config) = run("gpu");
    println!("score --device gpu config: {config}");
    let worst = cpu_maps
        .iter()
        .zip(&gpu_maps)
        .flat_map(|(c, g)| c.iter().zip(g).map(|(a, b)| (a - b).abs()))
        .chain(
            cpu_scores
                .iter()
                .zip(&gpu_scores)
                .map(|(a, b)| (a - b).abs()),
        )
        .fold(0f32, f32::max);
    println!("score --device gpu against cpu: max |Δ| {worst:e}");
    // Measured 3.1e-5 on lavapipe (2026-12-02). Not 0 either: bit-equal maps would mean the
    // CPU ran twice (scores.json does not name the device).
    assert!(worst <= 1e-4, "GPU and CPU differ by {worst}");
    assert!(worst > 0.0, "--device gpu gave the CPU's bits");
    assert!(
        (cpu_scores[0] - cpu_scores[1]).abs() > 0.01,
        "{cpu_scores:?}"
    );
}
