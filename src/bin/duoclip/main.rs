//! `duoclip`: the command-line tool. `duoclip --help` is the manual.

mod bench;
mod bench_memory;
mod calibrate;
mod convert;
mod detector_args;
mod embed;
mod eval;
mod inputs;
mod model_args;
mod output;
mod resume;
mod score;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Zero-shot image anomaly detection with CLIP: V-V attention maps, domain-aware state
/// prompts and dual-image references. Images never leave the machine.
#[derive(Parser)]
#[command(name = "duoclip", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Image embedding (ordinary stream CLS) and V-V patch tokens of one image, as JSON.
    Embed(embed::EmbedArgs),
    /// Token ids and text embeddings of prompts, as JSON.
    Text(embed::TextArgs),
    /// Anomaly maps and scores of images (PNG, JPEG, TIFF, WebP, BMP; DICOM, NIfTI): scores.json,
    /// <stem>.npy, <stem>.png.
    Score(score::ScoreArgs),
    /// Decision thresholds from known-good images, for `score --calibration`: an image
    /// threshold with an uncertain band and a pixel threshold (README "Decisions").
    Calibrate(calibrate::CalibrateArgs),
    /// Benchmark metrics (AUROC, AP, F1-max, AUPRO) of the detector, or of any method's
    /// precomputed maps, on MVTec AD, VisA, BMAD or a folder layout.
    Eval(eval::EvalArgs),
    /// A web bundle from a model: manifest.json, model.safetensors (image tower, optionally
    /// the text tower; f32 or f16) and anchors.safetensors (precomputed text anchors).
    Convert(convert::ConvertArgs),
    /// Per-image time of the detector paths on a full-size random-weight ViT-B-16-plus-240.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Embed(args) => embed::embed(args),
        Command::Text(args) => embed::text(args),
        Command::Score(args) => score::score(args),
        Command::Calibrate(args) => calibrate::calibrate(args),
        Command::Eval(args) => eval::eval(args),
        Command::Convert(args) => convert::convert(args),
        Command::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duoclip: error: {}", output::cli_message(&e));
            ExitCode::FAILURE
        }
    }
}
