//! The image tower with two residual streams computed in one pass (METHOD.md §2): the
//! ordinary stream (stock CLIP, gives the image embedding) and the value–value stream
//! (gives patch tokens aligned with text).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::block::{ResidualBlock, affine};
use crate::{Error, Result};

#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// The patch convolution as a matrix over flattened `(channel, y, x)` patches; no bias.
    pub patch_embed: Linear,
    pub class_embedding: Param<Tensor<1>>,
    /// `[1 + grid², width]`, already resized to `image_size`.
    pub positional_embedding: Param<Tensor<2>>,
    pub ln_pre: LayerNorm,
    pub blocks: Vec<ResidualBlock>,
    pub ln_post: LayerNorm,
    /// `[width, embed_dim]`.
    pub proj: Param<Tensor<2>>,
    #[module(skip)]
    pub patch: usize,
    #[module(skip)]
    pub image_size: usize,
}

/// What one pass of the image tower gives, per image of the batch.
#[derive(Debug, Clone)]
pub struct VisionOutput {
    /// `ln_post(x^L[0])·proj`, `[batch, embed]` — equals open_clip's `encode_image`.
    pub image_embedding: Tensor<2>,
    /// `ln_post(z^L[1:])·proj`, `[batch, patches, embed]`, row-major grid order, unnormalized.
    pub vv_patch_tokens: Tensor<3>,
    /// Ordinary-stream patch tokens after each requested block, raw, `[batch, patches, width]`.
    pub taps: Vec<Tensor<3>>,
    /// Patch grid `[rows, cols]`.
    pub grid: [usize; 2],
}

impl VisionTransformer {
    /// Patches per side at the configured input size.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch
    }

    /// Runs both streams on normalized pixels `[batch, 3, S, S]` (S = `image_size`) and
    /// returns the ordinary-stream patch tokens after the 0-based blocks in `taps`.
    pub fn forward(&self, pixels: Tensor<4>, taps: &[usize]) -> Result<VisionOutput> {
        self.check_input(&pixels, taps)?;
        let [batch, ..] = pixels.dims();
        let patches = self.grid() * self.grid();
        let x = self.ln_pre.forward(self.tokens(pixels));
        let (mut x, mut z) = (x.clone(), x);
        let mut tapped = Vec::with_capacity(taps.len());
        for (l, block) in self.blocks.iter().enumerate() {
            (x, z) = block.forward_dual(x, z);
            if taps.contains(&l) {
                tapped.push(x.clone().narrow(1, 1, patches));
            }
        }
        let cls = self.project(x.narrow(1, 0, 1)).reshape([batch as i64, -1]);
        Ok(VisionOutput {
            image_embedding: cls,
            vv_patch_tokens: self.project(z.narrow(1, 1, patches)),
            taps: order_taps(tapped, taps),
            grid: [self.grid(), self.grid()],
        })
    }

    /// Image embeddings `[batch, embed]` of the ordinary stream alone: what scoring extra views
    /// needs (their CLS), without the V-V stream, its projection or taps. The same operations
    /// as `forward`'s ordinary stream.
    pub fn embed(&self, pixels: Tensor<4>) -> Result<Tensor<2>> {
        self.check_input(&pixels, &[])?;
        let [batch, ..] = pixels.dims();
        let mut x = self.ln_pre.forward(self.tokens(pixels));
        for block in &self.blocks {
            x = block.forward(x, false);
        }
        Ok(self.project(x.narrow(1, 0, 1)).reshape([batch as i64, -1]))
    }

    /// `ln_post(t)·proj` for tokens `[batch, n, width]`.
    fn project(&self, t: Tensor<3>) -> Tensor<3> {
        let [batch, n, width] = t.dims();
        let t = self.ln_post.forward(t).reshape([batch * n, width]);
        affine(t, self.proj.val(), None, None).reshape([batch as i64, n as i64, -1])
    }

    /// `[cls; patches·W_patch] + pos`: `[batch, 1 + grid², width]`.
    fn tokens(&self, pixels: Tensor<4>) -> Tensor<3> {
        let [batch, channels, ..] = pixels.dims();
        let (g, p) = (self.grid(), self.patch);
        let patches = pixels
            .reshape([batch, channels, g, p, g, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch * g * g, channels * p * p]);
        let tokens = self
            .patch_embed
            .forward(patches)
            .reshape([batch as i64, (g * g) as i64, -1]);
        let width = tokens.dims()[2];
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, width])
            .repeat_dim(0, batch);
        Tensor::cat(vec![cls, tokens], 1) + self.positional_embedding.val().unsqueeze_dim(0)
    }

    fn check_input(&self, pixels: &Tensor<4>, taps: &[usize]) -> Result<()> {
        let [_, channels, h, w] = pixels.dims();
        if channels != 3 || h != self.image_size || w != self.image_size {
            return Err(Error::Model(format!(
                "image tower expects [batch, 3, {s}, {s}] pixels, got [_, {channels}, {h}, {w}]",
                s = self.image_size
            )));
        }
        match taps.iter().find(|&&l| l >= self.blocks.len()) {
            Some(l) => Err(Error::Option {
                option: "ref_layers".into(),
                message: format!(
                    "block {l} does not exist: this model has blocks 0..{}",
                    self.blocks.len() - 1
                ),
            }),
            None => Ok(()),
        }
    }
}

/// Returns the tapped tensors in the order the caller asked for them (blocks run in order).
fn order_taps(tapped: Vec<Tensor<3>>, taps: &[usize]) -> Vec<Tensor<3>> {
    let mut sorted: Vec<usize> = taps.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    taps.iter()
        .map(|l| tapped[sorted.binary_search(l).expect("tap index collected")].clone())
        .collect()
}
