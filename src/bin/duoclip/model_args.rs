//! `--model` and the options that say how to read it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Args;
use duoclip::clip::{Activation, ArchOverrides, Clip, Precision};
use duoclip::models::download;
use duoclip::{Error, Result, backend};

use crate::output::cli_text;

/// Which model to load and how.
#[derive(Args)]
pub struct ModelArgs {
    /// Required: a .safetensors / .pt / .bin checkpoint, a Hugging Face CLIPModel directory,
    /// or a registry name (downloaded once into the user cache and sha256-verified).
    // Optional for clap only so that `convert --random` can stand in for it; `spec` checks.
    #[arg(long)]
    pub model: Option<String>,
    /// cpu (pure Rust, always available) or gpu (wgpu; builds with `--features gpu`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// auto, f32 or f16: the number format of the towers' linear layers. auto: f16 on a GPU
    /// with 16-bit float shaders, else f32. The CPU computes in f32.
    #[arg(long, default_value = "auto")]
    pub precision: String,
    /// Attention heads of the image tower (OpenCLIP files do not store it; default width/64).
    #[arg(long)]
    pub vision_heads: Option<usize>,
    /// Attention heads of the text tower (default width/64, or config.json's).
    #[arg(long)]
    pub text_heads: Option<usize>,
    /// MLP activation: gelu or quick_gelu (OpenAI weights). Default: the registry entry's,
    /// else config.json's, else gelu.
    #[arg(long)]
    pub act: Option<Activation>,
    /// Run the image tower at this input size; positional embeddings are interpolated.
    #[arg(long)]
    pub image_size: Option<usize>,
}

/// A loaded model with the device it runs on and the weights file it came from.
pub struct Loaded {
    pub clip: Clip,
    pub device: Device,
    pub path: PathBuf,
}

impl ModelArgs {
    /// What `--model` names.
    pub fn spec(&self) -> Result<&str> {
        self.model.as_deref().ok_or_else(|| Error::Option {
            option: "model".into(),
            message: "is required: a checkpoint file, a Hugging Face CLIPModel directory or a \
                      registry name (`duoclip --help` lists where they come from)"
                .into(),
        })
    }

    pub fn load(&self) -> Result<Loaded> {
        let device = backend::by_name(&self.device)?;
        let spec = self.spec()?;
        let path = download::resolve_model(spec)?;
        let overrides = ArchOverrides {
            vision_heads: self.vision_heads,
            text_heads: self.text_heads,
            act: self.act.or_else(|| registry_activation(spec)),
            image_size: self.image_size,
        };
        let precision = Precision::resolve(&self.precision, &device)?;
        let clip = Clip::load(&path, &overrides, &device)?.with_precision(precision);
        for note in &clip.notes {
            eprintln!("duoclip: note: {}", cli_text(note));
        }
        Ok(Loaded { clip, device, path })
    }
}

/// A registry model's activation (its files do not store it), unless `spec` is a path.
fn registry_activation(spec: &str) -> Option<Activation> {
    if Path::new(spec).exists() {
        return None;
    }
    Some(
        duoclip::models::registry::Registry::builtin()
            .find(spec)?
            .act
            .into(),
    )
}
