//! `duoclip bench`: per-image time of the detector paths on a full-size ViT-B-16-plus-240
//! with random weights (same cost as real ones), next to PyTorch's numbers when given.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use clap::Args;
use duoclip::clip::random::random_checkpoint;
use duoclip::clip::{ArchOverrides, Clip, ClipConfig};
use duoclip::detect::config::{DetectorConfig, TtaMode};
use duoclip::detect::{Detector, Prepared};
use duoclip::image::RgbImage;
use duoclip::prompts::TextAnchors;
use duoclip::{Error, Result, backend};
use serde_json::{Value, json};

use crate::output::write_json;

#[derive(Args)]
pub struct BenchArgs {
    /// cpu or gpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Timed runs per path after one cold run; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// JSON written by tools/bench_torch.py on this machine, for ratios.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Also write the table as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let device = backend::by_name(&args.device)?;
    let mut config = ClipConfig::vit_b_16_plus_240();
    config.text = None; // the paths timed here use precomputed text anchors
    let start = Instant::now();
    drop(Clip::from_checkpoint(
        &random_checkpoint(&config, 0),
        None,
        &ArchOverrides::default(),
        &device,
    )?);
    let load_s = start.elapsed().as_secs_f64();
    let anchors = random_anchors(config.vision.embed_dim, &device);
    let image = test_image(240);
    let torch = read_torch(args.torch.as_deref())?;
    let mut rows = Vec::new();
    let paths: [(&str, DetectorConfig, usize, Option<&str>); 4] = [
        (
            "faithful map (1 image)",
            DetectorConfig::anovl(),
            1,
            Some("encode_image"),
        ),
        (
            "product pair (per image)",
            DetectorConfig::product(12),
            2,
            Some("encode_image_pair"),
        ),
        (
            "faithful + TTA anovl 5 steps",
            with_tta(DetectorConfig::anovl()),
            1,
            Some("encode_image"),
        ),
        (
            "faithful, 22-view score",
            DetectorConfig {
                views: 22,
                ..DetectorConfig::anovl()
            },
            1,
            Some("encode_image_22_views"),
        ),
    ];
    for (name, cfg, n, torch_key) in paths {
        let clip = Clip::from_checkpoint(
            &random_checkpoint(&config, 0),
            None,
            &ArchOverrides::default(),
            &device,
        )?;
        let detector = Detector::new(clip, anchors.clone(), cfg, device.clone())?;
        let prepared: Vec<Prepared> = (0..n).map(|_| detector.prepare(&image)).collect();
        let batch: Vec<&Prepared> = prepared.iter().collect();
        let run = || -> Result<f64> {
            let t = Instant::now();
            detector.score(&batch, &[])?;
            Ok(t.elapsed().as_secs_f64() / n as f64)
        };
        let cold = run()?;
        let mut warm: Vec<f64> = (0..args.repeats.max(1))
            .map(|_| run())
            .collect::<Result<_>>()?;
        warm.sort_by(f64::total_cmp);
        let median = warm[warm.len() / 2];
        let torch_s = torch_key.and_then(|k| torch_per_image(&torch, k, n));
        rows.push(
            json!({ "path": name, "cold_s": cold, "warm_s": median, "torch_s": torch_s,
                          "ratio_vs_torch": torch_s.map(|t| median / t) }),
        );
    }
    print_table(&args.device, load_s, &rows);
    if let Some(out) = &args.out {
        write_json(
            out,
            &json!({ "device": args.device, "model_build_s": load_s, "rows": rows, "torch": torch }),
        )?;
    }
    Ok(())
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
fn test_image(size: u32) -> RgbImage {
    let data = (0..size * size)
        .flat_map(|i| [(i % size) as u8, (i / size) as u8, 128])
        .collect();
    RgbImage {
        width: size,
        height: size,
        data,
    }
}

fn read_torch(path: Option<&std::path::Path>) -> Result<Value> {
    let Some(path) = path else {
        return Ok(Value::Null);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    serde_json::from_str(&text).map_err(|e| Error::Option {
        option: "--torch".into(),
        message: format!(
            "{}: not the JSON of tools/bench_torch.py: {e}",
            path.display()
        ),
    })
}

/// PyTorch's per-image time for the comparable work (the image tower; PyTorch has no V-V
/// stream, maps or TTA, so the ratio says what our whole path costs against its tower).
fn torch_per_image(torch: &Value, key: &str, n: usize) -> Option<f64> {
    let s = torch.get(key)?.get("median_s")?.as_f64()?;
    Some(match key {
        "encode_image_pair" => s / n as f64,
        _ => s,
    })
}

fn print_table(device: &str, load_s: f64, rows: &[Value]) {
    println!("duoclip bench — ViT-B-16-plus-240 @240, random weights, device {device}");
    println!("model build from random checkpoint: {load_s:.2} s");
    println!(
        "{:<32} {:>9} {:>9} {:>12} {:>8}",
        "path (per image)", "cold s", "warm s", "torch s", "ratio"
    );
    for r in rows {
        let f = |k: &str| r[k].as_f64().map_or("-".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:<32} {:>9} {:>9} {:>12} {:>8}",
            r["path"].as_str().unwrap_or(""),
            f("cold_s"),
            f("warm_s"),
            f("torch_s"),
            f("ratio_vs_torch")
        );
    }
}
