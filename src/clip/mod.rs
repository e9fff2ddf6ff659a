//! CLIP in burn: the image tower with its V-V stream, the text tower, the tokenizer and the
//! weights' import. Knows nothing of anomalies.

pub mod block;
pub mod config;
pub mod pos_embed;
pub mod precision;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

use burn::tensor::{Device, Tensor, TensorData};

pub use config::{Activation, ArchOverrides, ClipConfig};
pub use precision::Precision;
pub use text::TextTransformer;
pub use tokenizer::Tokenizer;
pub use vision::{VisionOutput, VisionTransformer};
pub use weights::{Checkpoint, HfConfig, Layout};

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
    /// Assumptions made while loading, for the user to see; options are named `‹key›`, as in
    /// errors (`crate::error::render_options`).
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
        weights::load::build(ckpt, hf, overrides, device)
    }

    /// Loads a checkpoint file or a Hugging Face directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        path: &std::path::Path,
        overrides: &ArchOverrides,
        device: &Device,
    ) -> Result<Self> {
        let (ckpt, hf) = weights::open(path)?;
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
