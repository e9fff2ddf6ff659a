//! `duoclip bench`: per-image time of the detector paths and of the text ensemble on a
//! full-size ViT-B-16-plus-240 with random weights (same cost as real ones), the peak memory
//! of a fresh process scoring a pair, and PyTorch's times for the same work when given.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use clap::Args;
use duoclip::clip::{ArchOverrides, Clip, Precision, Tokenizer};
use duoclip::detect::config::{DetectorConfig, TtaMode};
use duoclip::detect::{Detector, Prepared};
use duoclip::image::RgbImage;
use duoclip::models::bundle::WEIGHTS_FILE;
use duoclip::prompts::{TextAnchors, choose, prompts, text_anchors};
use duoclip::{Error, Result, backend};
use serde_json::{Value, json};

use crate::bench_memory;
use crate::output::write_json;

#[derive(Args)]
pub struct BenchArgs {
    /// cpu or gpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// auto, f32 or f16 (as `score --precision`).
    #[arg(long, default_value = "auto")]
    precision: String,
    /// Timed runs per path after one cold run; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// JSON written by tools/bench_torch.py on this machine, for ratios.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Where the table is also written, as JSON.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// Skip the text ensemble rows (the naive baseline alone is minutes on 2 cores).
    #[arg(long)]
    no_text: bool,
    /// Skip the 22-view row too (22 forwards per image).
    #[arg(long)]
    quick: bool,
    /// Internal: load the bundle in this folder, score a pair, print peak memory as JSON.
    #[arg(long, hide = true)]
    probe_memory: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(dir) = &args.probe_memory {
        return bench_memory::probe(dir, &args.device);
    }
    let device = backend::by_name(&args.device)?;
    let precision = Precision::resolve(&args.precision, &device)?;
    let torch = read_torch(args.torch.as_deref())?;
    let work = WorkDir::new()?;
    bench_memory::write_random_bundle(&work.0)?;
    let memory = bench_memory::measure(&work.0, &args.device)?;
    let start = Instant::now();
    let clip = Clip::load(
        &work.0.join(WEIGHTS_FILE),
        &ArchOverrides::default(),
        &device,
    )?
    .with_precision(precision);
    let load_s = start.elapsed().as_secs_f64();
    let mut rows = image_rows(&clip, &device, args.repeats, &torch, args.quick)?;
    if !args.no_text && !args.quick {
        rows.extend(text_rows(&clip, args.repeats, &torch)?);
    }
    let adapter = adapter_name(&device);
    let label = format!("{} ({adapter}) {}", args.device, precision.name());
    print_table(&label, load_s, &rows, &memory);
    write_json(
        &args.out,
        &json!({ "device": args.device, "adapter": adapter, "precision": precision.name(),
                 "model_load_s": load_s, "rows": rows,
                 "memory": memory, "torch": torch }),
    )?;
    eprintln!("duoclip: wrote {}", args.out.display());
    Ok(())
}

/// What the device names itself (the GPU's name through wgpu), for the table.
fn adapter_name(device: &burn::tensor::Device) -> String {
    #[cfg(feature = "gpu")]
    if let Some(identity) = device.identity() {
        return identity.name;
    }
    let _ = device;
    "CPU".into()
}

/// A scratch folder for the bench's random bundle, removed when the bench ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<WorkDir> {
        let dir = std::env::temp_dir().join(format!("duoclip-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The detector paths: (name, config, images scored together, PyTorch key for the same tower
/// work).
fn image_paths(depth: usize) -> [(&'static str, DetectorConfig, usize, &'static str); 5] {
    [
        ("faithful map", DetectorConfig::anovl(), 1, "encode_image"),
        (
            "product pair",
            DetectorConfig::product(depth),
            2,
            "encode_image_pair",
        ),
        (
            "product set of 8",
            DetectorConfig::product(depth),
            8,
            "encode_image_8",
        ),
        (
            "faithful + TTA anovl 5 steps",
            with_tta(DetectorConfig::anovl()),
            1,
            "encode_image",
        ),
        (
            "faithful, 22-view score",
            DetectorConfig {
                views: 22,
                ..DetectorConfig::anovl()
            },
            1,
            "encode_image_22_views",
        ),
    ]
}

fn image_rows(
    clip: &Clip,
    device: &burn::tensor::Device,
    repeats: usize,
    torch: &Value,
    quick: bool,
) -> Result<Vec<Value>> {
    let anchors = random_anchors(clip.config.vision.embed_dim, device);
    let image = test_image(240);
    let mut rows = vec![tower_row(clip, device, repeats, torch)?];
    for (name, cfg, n, torch_key) in image_paths(clip.config.vision.tower.layers) {
        if quick && cfg.views > 1 {
            continue;
        }
        let detector = Detector::new(clip.clone(), anchors.clone(), cfg, device.clone())?;
        let prepared: Vec<Prepared> = (0..n).map(|_| detector.prepare(&image)).collect();
        let batch: Vec<&Prepared> = prepared.iter().collect();
        let (cold, warm) = cold_warm(repeats, || {
            detector.score(&batch, &[])?;
            Ok(())
        })?;
        let torch_s = torch_per_image(torch, torch_key);
        rows.push(row(
            &format!("{name} (per image)"),
            cold / n as f64,
            warm / n as f64,
            torch_s,
        ));
    }
    Ok(rows)
}

/// The image tower alone, both streams, outputs read back: the work PyTorch's `encode_image`
/// does (plus the V-V stream), without the detector around it.
fn tower_row(
    clip: &Clip,
    device: &burn::tensor::Device,
    repeats: usize,
    torch: &Value,
) -> Result<Value> {
    let s = clip.image_size();
    let pixels = vec![vec![0.5f32; 3 * s * s]];
    let (cold, warm) = cold_warm(repeats, || {
        let out = clip.encode_images(&pixels, &[], device)?;
        out.vv_patch_tokens.into_data();
        out.image_embedding.into_data();
        Ok(())
    })?;
    let torch_s = torch_per_image(torch, "encode_image");
    Ok(row("image tower, both streams", cold, warm, torch_s))
}

/// The 2×462-prompt ensemble of one domain as `score` computes it (batched by length, each
/// prompt only up to its end-of-text token), and naively: every prompt padded to the full
/// context, as PyTorch's `encode_text` runs it.
fn text_rows(clip: &Clip, repeats: usize, torch: &Value) -> Result<Vec<Value>> {
    let tokenizer = Tokenizer::new();
    let (domain, object) = choose("object", &[], Some("bottle"))?;
    let (cold, warm) = cold_warm(repeats, || {
        text_anchors(clip, &tokenizer, &domain, &object)?;
        Ok(())
    })?;
    let context = clip.text.as_ref().map_or(77, |t| t.context_length());
    let padded: Vec<Vec<u32>> = prompts(&domain, &object)?
        .concat()
        .iter()
        .map(|p| {
            let mut ids = tokenizer.tokenize(p, context);
            ids.resize(context, 0);
            ids
        })
        .collect();
    let (naive, _) = cold_warm(0, || {
        for batch in padded.chunks(64) {
            clip.encode_text(batch)?.into_data();
        }
        Ok(())
    })?;
    let torch_s = torch_per_image(torch, "encode_text_924");
    let mut ensemble = row("text ensemble, 924 prompts", cold, warm, torch_s);
    ensemble["ratio_vs_naive"] = json!(warm / naive);
    Ok(vec![
        ensemble,
        row("text ensemble, naive (context 77)", naive, naive, torch_s),
    ])
}

/// One cold run, then the median of `repeats` warm runs (the cold time when 0).
fn cold_warm(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let mut timed = || -> Result<f64> {
        let t = Instant::now();
        run()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let cold = timed()?;
    let mut warm: Vec<f64> = (0..repeats).map(|_| timed()).collect::<Result<_>>()?;
    warm.sort_by(f64::total_cmp);
    Ok((cold, warm.get(warm.len() / 2).copied().unwrap_or(cold)))
}

fn row(path: &str, cold: f64, warm: f64, torch_s: Option<f64>) -> Value {
    json!({ "path": path, "cold_s": cold, "warm_s": warm, "torch_s": torch_s,
            "ratio_vs_torch": torch_s.map(|t| warm / t) })
}

fn with_tta(mut cfg: DetectorConfig) -> DetectorConfig {
    cfg.tta.mode = TtaMode::Anovl;
    cfg
}

/// Unit anchors and a full 2×462-prompt E, random: the cost is what is measured.
pub fn random_anchors(dim: usize, device: &burn::tensor::Device) -> TextAnchors {
    let unit = |rows: usize| {
        let t = Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, 1.0), device);
        let norm = t.clone().powf_scalar(2.0).sum_dim(1).sqrt();
        t / norm
    };
    TextAnchors {
        states: unit(2),
        prompts: unit(924),
    }
}

/// A smooth gradient image of `size`²: content does not change the cost.
pub fn test_image(size: u32) -> RgbImage {
    let data = (0..size * size)
        .flat_map(|i| [(i % size) as u8, (i / size) as u8, 128])
        .collect();
    RgbImage {
        width: size,
        height: size,
        data,
    }
}

fn read_torch(path: Option<&Path>) -> Result<Value> {
    let Some(path) = path else {
        return Ok(Value::Null);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    serde_json::from_str(&text).map_err(|e| Error::Option {
        option: "torch".into(),
        message: format!(
            "{}: not the JSON of tools/bench_torch.py: {e}",
            path.display()
        ),
    })
}

/// PyTorch's per-image time for the comparable work (the towers; PyTorch has no V-V stream,
/// maps or TTA, so the ratio says what our whole path costs against its tower).
fn torch_per_image(torch: &Value, key: &str) -> Option<f64> {
    let entry = torch.get(key)?;
    let s = entry.get("median_s")?.as_f64()?;
    Some(s / entry.get("batch").and_then(Value::as_f64).unwrap_or(1.0))
}

fn print_table(device: &str, load_s: f64, rows: &[Value], memory: &Value) {
    println!("duoclip bench — ViT-B-16-plus-240 @240, random weights, device {device}");
    println!("model load (fp16 bundle from disk): {load_s:.2} s");
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>8}",
        "path", "cold s", "warm s", "torch s", "ratio"
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().map_or("-".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:<42} {:>9} {:>9} {:>9} {:>8}",
            r["path"].as_str().unwrap_or(""),
            f("cold_s"),
            f("warm_s"),
            f("torch_s"),
            f("ratio_vs_torch")
        );
        if let Some(x) = r["ratio_vs_naive"].as_f64() {
            println!("  text ensemble / naive: {x:.3}");
        }
    }
    let mb = |k: &str| {
        memory[k]
            .as_f64()
            .map_or("-".into(), |b| format!("{:.0}", b / 1e6))
    };
    println!(
        "peak memory (fresh process, load + product pair): {} MB; weights {} MB as f32, {} MB \
         on disk; peak / f32 weights = {}",
        mb("peak_rss_after_pair_bytes"),
        mb("weights_f32_bytes"),
        mb("weights_file_bytes"),
        memory["peak_over_f32_weights"]
            .as_f64()
            .map_or("-".into(), |r| format!("{r:.2}"))
    );
}
