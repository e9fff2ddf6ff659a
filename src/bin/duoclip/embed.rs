//! `duoclip embed` and `duoclip text`: the towers' raw outputs, for other tools and tests.

use std::path::PathBuf;

use burn::tensor::Tensor;
use clap::Args;
use duoclip::clip::Tokenizer;
use duoclip::image::{ImageLimits, decode, to_clip_input};
use duoclip::{Error, Result};
use serde_json::{Value, json};

use crate::model_args::ModelArgs;
use crate::output::write_json;

#[derive(Args)]
pub struct EmbedArgs {
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
pub struct TextArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Where to write the JSON.
    #[arg(long)]
    out: PathBuf,
    /// The prompts.
    #[arg(required = true)]
    prompts: Vec<String>,
}

pub fn embed(args: EmbedArgs) -> Result<()> {
    // The image is checked before the (slow) model load, so a bad file fails fast.
    let name = args.image.display().to_string();
    let bytes = std::fs::read(&args.image).map_err(|e| Error::io(&name, e))?;
    let image = decode(&bytes, &name, &ImageLimits::default())?;
    let model = args.model.load()?;
    let pixels = to_clip_input(&image, model.clip.image_size() as u32);
    let out = model
        .clip
        .encode_images(&[pixels], &args.taps, &model.device)?;
    let patches = (out.grid[0] * out.grid[1]) as i64;
    let mut doc = json!({
        "image_embedding": rows(out.image_embedding)?.remove(0),
        "vv_patch_tokens": rows(out.vv_patch_tokens.reshape([patches, -1]))?,
        "grid": out.grid,
    });
    if !args.taps.is_empty() {
        let taps: serde_json::Map<String, Value> = args
            .taps
            .iter()
            .zip(out.taps)
            .map(|(l, t)| Ok((l.to_string(), json!(rows(t.reshape([patches, -1]))?))))
            .collect::<Result<_>>()?;
        doc["taps"] = Value::Object(taps);
    }
    write_json(&args.out, &doc)
}

pub fn text(args: TextArgs) -> Result<()> {
    let model = args.model.load()?;
    let context = model
        .clip
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
    let embedding = model.clip.encode_text(&tokens)?;
    write_json(
        &args.out,
        &json!({ "tokens": tokens, "text_embedding": rows(embedding)? }),
    )
}

/// A `[n, d]` tensor as `n` rows of f32.
fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let values = duoclip::backend::read_back(t, "results")?;
    Ok(values.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}
