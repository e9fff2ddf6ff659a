//! A loaded CLIP back to named tensors in the OpenCLIP layout (the names `load` reads), so a
//! model read from any supported layout can be written as one `.safetensors` file (web
//! bundles, `duoclip convert`).

use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::load::{Names, OPENCLIP};
use crate::clip::Clip;
use crate::clip::block::ResidualBlock;
use crate::{Error, Result};

/// One tensor: name, shape, row-major f32 values.
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl NamedTensor {
    /// `t` read back (synchronously: native, or the CPU device) under `name`.
    pub fn read<const D: usize>(name: &str, t: Tensor<D>) -> Result<NamedTensor> {
        let shape = t.dims().to_vec();
        let values = crate::backend::read_back(t, &format!("`{name}`"))?;
        Ok(NamedTensor {
            name: name.into(),
            shape,
            values,
        })
    }
}

/// Every tensor of the image tower, and of the text tower when `text` (and the model has
/// one), with OpenCLIP names and PyTorch shapes (`[out, in]` linear weights, the patch
/// convolution `[W, 3, p, p]`). Reads the weights back synchronously (native, or CPU).
pub fn openclip_tensors(clip: &Clip, text: bool) -> Result<Vec<NamedTensor>> {
    let n = &OPENCLIP;
    let mut out = Tensors(Vec::new());
    let v = &clip.vision;
    let width = v.class_embedding.dims()[0];
    let patch = v.patch;
    let conv = v.patch_embed.weight.val().transpose();
    out.push_shaped(n.patch, conv, vec![width, 3, patch, patch])?;
    out.push(n.class, v.class_embedding.val())?;
    out.push(n.vision_pos, v.positional_embedding.val())?;
    out.layer_norm(n.ln_pre, &v.ln_pre)?;
    out.blocks(n.vision_block, &v.blocks)?;
    out.layer_norm(n.ln_post, &v.ln_post)?;
    out.push(n.vision_proj, v.proj.val())?;
    if let Some(t) = clip.text.as_ref().filter(|_| text) {
        out.push(n.token, t.token_embedding.val())?;
        out.push(n.text_pos, t.positional_embedding.val())?;
        out.blocks(n.text_block, &t.blocks)?;
        out.layer_norm(n.ln_final, &t.ln_final)?;
        out.push(n.text_proj, t.text_projection.val())?;
    }
    Ok(out.0)
}

struct Tensors(Vec<NamedTensor>);

impl Tensors {
    fn push<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Result<()> {
        let shape = t.dims().to_vec();
        self.push_shaped(name, t, shape)
    }

    fn push_shaped<const D: usize>(
        &mut self,
        name: &str,
        t: Tensor<D>,
        shape: Vec<usize>,
    ) -> Result<()> {
        let mut named = NamedTensor::read(name, t)?;
        named.shape = shape;
        self.0.push(named);
        Ok(())
    }

    fn layer_norm(&mut self, prefix: &str, ln: &LayerNorm) -> Result<()> {
        self.push(&format!("{prefix}.weight"), ln.gamma.val())?;
        let beta = ln.beta.as_ref().ok_or_else(|| {
            Error::Model(format!(
                "LayerNorm `{prefix}` has no bias; CLIP's always do"
            ))
        })?;
        self.push(&format!("{prefix}.bias"), beta.val())
    }

    /// A burn `Linear` (`[in, out]`) as PyTorch's `{prefix}{weight}` `[out, in]` and bias.
    fn linear(&mut self, prefix: &str, weight: &str, bias: &str, l: &Linear) -> Result<()> {
        self.push(&format!("{prefix}{weight}"), l.weight.val().transpose())?;
        let b = l
            .bias
            .as_ref()
            .ok_or_else(|| Error::Model(format!("linear `{prefix}` has no bias")))?;
        self.push(&format!("{prefix}{bias}"), b.val())
    }

    fn blocks(&mut self, template: &str, blocks: &[ResidualBlock]) -> Result<()> {
        let [ln1, ln2, out, fc, proj] = OPENCLIP.parts;
        for (i, b) in blocks.iter().enumerate() {
            let p = Names::block(template, i, "");
            self.layer_norm(&format!("{p}{ln1}"), &b.ln1)?;
            self.linear(
                &format!("{p}attn."),
                "in_proj_weight",
                "in_proj_bias",
                &b.attn.qkv,
            )?;
            self.linear(&format!("{p}{out}."), "weight", "bias", &b.attn.out)?;
            self.layer_norm(&format!("{p}{ln2}"), &b.ln2)?;
            self.linear(&format!("{p}{fc}."), "weight", "bias", &b.mlp.fc)?;
            self.linear(&format!("{p}{proj}."), "weight", "bias", &b.mlp.proj)?;
        }
        Ok(())
    }
}
