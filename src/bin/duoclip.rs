//! `duoclip`: the command-line tool. `duoclip --help` is the manual.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use duoclip::clip::{Activation, ArchOverrides, Clip, Tokenizer};
use duoclip::image::{ImageLimits, decode, to_clip_input};
use duoclip::{Error, Result, backend, download};
use serde_json::{Value, json};

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
    Embed(EmbedArgs),
    /// Token ids and text embeddings of prompts, as JSON.
    Text(TextArgs),
}

/// Which model to load and how.
#[derive(Args)]
struct ModelArgs {
    /// A .safetensors / .pt / .bin checkpoint, a Hugging Face CLIPModel directory, or a
    /// registry name (downloaded once into the user cache and sha256-verified).
    #[arg(long)]
    model: String,
    /// cpu (pure Rust, always available) or gpu (wgpu; builds with `--features gpu`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Attention heads of the image tower (OpenCLIP files do not store it; default width/64).
    #[arg(long)]
    vision_heads: Option<usize>,
    /// Attention heads of the text tower (default width/64, or config.json's).
    #[arg(long)]
    text_heads: Option<usize>,
    /// MLP activation: gelu or quick_gelu (OpenAI weights). Default: config.json's, or gelu.
    #[arg(long)]
    act: Option<Activation>,
    /// Run the image tower at this input size; positional embeddings are interpolated.
    #[arg(long)]
    image_size: Option<usize>,
}

#[derive(Args)]
struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image (PNG or JPEG).
    #[arg(long)]
    image: PathBuf,
    /// Also write the ordinary-stream patch tokens after these 0-based blocks ("taps").
    #[arg(long, value_delimiter = ',')]
    taps: Vec<usize>,
    /// Where to write the JSON.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct TextArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the JSON.
    #[arg(long)]
    out: PathBuf,
    /// The prompts.
    #[arg(required = true)]
    prompts: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duoclip: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Embed(args) => embed(args),
        Command::Text(args) => text(args),
    }
}

fn load(args: &ModelArgs) -> Result<(Clip, burn::tensor::Device)> {
    let device = backend::by_name(&args.device)?;
    let path = download::resolve_model(&args.model)?;
    let overrides = ArchOverrides {
        vision_heads: args.vision_heads,
        text_heads: args.text_heads,
        act: args.act.or_else(|| registry_activation(&args.model)),
        image_size: args.image_size,
    };
    let clip = Clip::load(&path, &overrides, &device)?;
    for note in &clip.notes {
        eprintln!("duoclip: note: {note}");
    }
    Ok((clip, device))
}

/// A registry model's activation (its files do not store it), unless `spec` is a path.
fn registry_activation(spec: &str) -> Option<Activation> {
    if Path::new(spec).exists() {
        return None;
    }
    Some(
        duoclip::registry::Registry::builtin()
            .find(spec)?
            .act
            .into(),
    )
}

fn embed(args: EmbedArgs) -> Result<()> {
    // The image is checked before the (slow) model load, so a bad file fails fast.
    let name = args.image.display().to_string();
    let bytes = std::fs::read(&args.image).map_err(|e| Error::io(&name, e))?;
    let image = decode(&bytes, &name, &ImageLimits::default())?;
    let (clip, device) = load(&args.model)?;
    let pixels = to_clip_input(&image, clip.image_size() as u32);
    let out = clip.encode_images(&[pixels], &args.taps, &device)?;
    let taps: serde_json::Map<String, Value> = args
        .taps
        .iter()
        .zip(&out.taps)
        .map(|(l, t)| {
            Ok((
                l.to_string(),
                json!(rows(
                    t.clone().reshape([(out.grid[0] * out.grid[1]) as i64, -1])
                )?),
            ))
        })
        .collect::<Result<_>>()?;
    let mut doc = json!({
        "image_embedding": rows(out.image_embedding)?.remove(0),
        "vv_patch_tokens": rows(out.vv_patch_tokens.reshape([(out.grid[0] * out.grid[1]) as i64, -1]))?,
        "grid": out.grid,
    });
    if !taps.is_empty() {
        doc["taps"] = Value::Object(taps);
    }
    write_json(&args.out, &doc)
}

fn text(args: TextArgs) -> Result<()> {
    let (clip, _device) = load(&args.model)?;
    let context = clip
        .config
        .text
        .map(|t| t.context_length)
        .ok_or_else(|| Error::Model("this checkpoint has no text tower".into()))?;
    let tokenizer = Tokenizer::new();
    let tokens: Vec<Vec<u32>> = args
        .prompts
        .iter()
        .map(|p| tokenizer.tokenize(p, context))
        .collect();
    let embedding = clip.encode_text(&tokens)?;
    write_json(
        &args.out,
        &json!({ "tokens": tokens, "text_embedding": rows(embedding)? }),
    )
}

/// A `[n, d]` tensor as `n` rows of f32.
fn rows(t: burn::tensor::Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let values = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Model(format!("reading results back: {e:?}")))?;
    Ok(values.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// Writes atomically (temp file + rename) so a crash never leaves half a result.
fn write_json(path: &Path, doc: &Value) -> Result<()> {
    let name = path.display().to_string();
    let tmp = path.with_extension("json.part");
    let text = serde_json::to_string(doc).map_err(|e| Error::Model(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(&name, e))
}
