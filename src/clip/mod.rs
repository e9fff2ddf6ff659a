//! CLIP in burn: towers, tokenizer and checkpoint import. Knows nothing of anomalies.

#[cfg(all(feature = "blas", not(target_arch = "wasm32")))]
pub mod blas;
pub mod block;
pub mod checkpoint;
pub mod config;
#[cfg(any(feature = "blas", target_arch = "wasm32", test))]
mod cpu_operands;
pub mod export;
pub mod hf_config;
#[cfg(all(feature = "blas", target_os = "linux"))]
pub mod huge_pages;
pub mod interpolate;
pub mod load;
#[cfg(not(target_arch = "wasm32"))]
pub mod pickle_guard;
pub mod precision;
pub mod random;
pub mod safetensors_ranges;
#[cfg(any(target_arch = "wasm32", test))]
pub mod simd_gemm;
pub mod text;
pub mod tokenizer;
#[cfg(any(feature = "blas", target_arch = "wasm32", test))]
mod vector_math;
pub mod vision;

use burn::tensor::{Device, Tensor, TensorData};

pub use checkpoint::Checkpoint;
pub use config::{Activation, ArchOverrides, ClipConfig};
pub use hf_config::HfConfig;
pub use load::Layout;
pub use precision::Precision;
pub use text::TextTransformer;
pub use tokenizer::Tokenizer;
pub use vision::{VisionOutput, VisionTransformer};

use crate::{Error, Result};

/// A loaded CLIP ViT: the image tower (with its V-V stream) and, if the checkpoint has one,
/// the text tower.
/// Cloning shares the weights (burn tensors are reference-counted).
#[derive(Debug, Clone)]
pub struct Clip {
    pub vision: VisionTransformer,
    pub text: Option<TextTransformer>,
    pub config: ClipConfig,
    pub layout: Layout,
    /// Assumptions made while loading, for the user to see.
    pub notes: Vec<String>,
}

impl Clip {
    /// Builds a CLIP from checkpoint tensors (and an HF config.json, if any).
    pub fn from_checkpoint(
        ckpt: &Checkpoint,
        hf: Option<&HfConfig>,
        overrides: &ArchOverrides,
        device: &Device,
    ) -> Result<Self> {
        load::build(ckpt, hf, overrides, device)
    }

    /// Loads a checkpoint file or a Hugging Face directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        path: &std::path::Path,
        overrides: &ArchOverrides,
        device: &Device,
    ) -> Result<Self> {
        let (ckpt, hf) = if path.is_dir() {
            open_hf_dir(path)?
        } else {
            (Checkpoint::from_file(path)?, None)
        };
        Self::from_checkpoint(&ckpt, hf.as_ref(), overrides, device)
    }

    /// Weights in both towers.
    pub fn num_params(&self) -> usize {
        use burn::module::Module;
        self.vision.num_params() + self.text.as_ref().map_or(0, Module::num_params)
    }

    /// Side of the square input the image tower runs at.
    pub fn image_size(&self) -> usize {
        self.vision.image_size
    }

    /// Both vision streams for normalized CHW images of `image_size()`² each.
    pub fn encode_images(
        &self,
        pixels: &[Vec<f32>],
        taps: &[usize],
        device: &Device,
    ) -> Result<VisionOutput> {
        self.vision.forward(self.pixel_batch(pixels, device)?, taps)
    }

    /// Image embeddings `[batch, embed]` alone (ordinary stream; see `VisionTransformer::embed`).
    pub fn embed_images(&self, pixels: &[Vec<f32>], device: &Device) -> Result<Tensor<2>> {
        self.vision.embed(self.pixel_batch(pixels, device)?)
    }

    /// Normalized CHW images of `image_size()`² as one `[batch, 3, S, S]` tensor.
    fn pixel_batch(&self, pixels: &[Vec<f32>], device: &Device) -> Result<Tensor<4>> {
        let s = self.image_size();
        if let Some(bad) = pixels.iter().find(|p| p.len() != 3 * s * s) {
            return Err(Error::Model(format!(
                "an input image has {} values; expected 3×{s}×{s}",
                bad.len()
            )));
        }
        let flat: Vec<f32> = pixels.concat();
        Ok(Tensor::<4>::from_data(
            TensorData::new(flat, [pixels.len(), 3, s, s]),
            device,
        ))
    }

    /// Text embeddings `[batch, embed]` of tokenized prompts.
    pub fn encode_text(&self, tokens: &[Vec<u32>]) -> Result<Tensor<2>> {
        self.text
            .as_ref()
            .ok_or_else(|| {
                Error::Model("this checkpoint has no text tower; use a full CLIP checkpoint".into())
            })?
            .forward(tokens)
    }
}

/// `config.json` + `model.safetensors` (or `pytorch_model.bin`) of a Hugging Face directory.
#[cfg(not(target_arch = "wasm32"))]
fn open_hf_dir(dir: &std::path::Path) -> Result<(Checkpoint, Option<HfConfig>)> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| Error::io(config_path.display(), e))?;
    let hf = HfConfig::parse(&text, &config_path.display().to_string())?;
    let weights = weights_file(dir)?;
    Ok((Checkpoint::from_file(&weights)?, Some(hf)))
}

/// The file whose bytes are the model: `path` itself, or a Hugging Face directory's
/// `model.safetensors` (else `pytorch_model.bin`).
#[cfg(not(target_arch = "wasm32"))]
pub fn weights_file(path: &std::path::Path) -> Result<std::path::PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Checkpoint {
            path: path.display().to_string(),
            message: "a Hugging Face directory needs model.safetensors or pytorch_model.bin".into(),
        })
}
