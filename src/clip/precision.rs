//! Half-precision weights for GPUs that compute in f16 (WebGPU `shader-f16`, Vulkan
//! `shaderFloat16`). Only the blocks' linear layers change: their products are ~96% of a
//! forward's arithmetic (24·n·d² per block against 4·n²·d for attention) and their weights
//! nearly all of its memory traffic. LayerNorm, attention, residual sums, the projections and
//! everything after the towers stay f32, so the maps keep f32 ranges and sums.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, FloatDType};

use super::Clip;
use super::block::ResidualBlock;
use crate::{Error, Result};

/// The number format of the blocks' linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// f16 weights; inputs cast to f16 per product, outputs back to f32.
    F16,
}

/// Accepted by `--precision` and the browser's `precision` option.
pub const PRECISION_NAMES: &str = "auto, f32, f16";

impl Precision {
    /// `auto` (f16 on a GPU that computes in f16, else f32), `f32` or `f16` for `device`.
    pub fn resolve(name: &str, device: &Device) -> Result<Precision> {
        let half_ok = is_gpu(device) && device.supports_dtype(FloatDType::F16);
        match name {
            "auto" if half_ok => Ok(Precision::F16),
            "auto" | "f32" => Ok(Precision::F32),
            "f16" if half_ok => Ok(Precision::F16),
            "f16" => Err(Error::Option {
                option: "precision".into(),
                message: if is_gpu(device) {
                    "f16 needs a GPU with 16-bit float shaders (shader-f16); this adapter has \
                     none: use f32 or auto"
                        .into()
                } else {
                    "f16 is for GPU devices; the CPU computes in f32: use f32 or auto".into()
                },
            }),
            other => Err(Error::Option {
                option: "precision".into(),
                message: format!("`{other}` is not accepted; accepted: {PRECISION_NAMES}"),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// burn's CPU device computes in f32 only; f16 there would be emulated, not faster.
fn is_gpu(device: &Device) -> bool {
    device.clone().inner() != Device::flex()
}

impl Clip {
    /// This model with its blocks' linear weights in `precision` (see the module comment).
    pub fn with_precision(mut self, precision: Precision) -> Clip {
        if precision == Precision::F16 {
            for block in self.vision.blocks.iter_mut() {
                half_block(block);
            }
            for block in self.text.iter_mut().flat_map(|t| t.blocks.iter_mut()) {
                half_block(block);
            }
        }
        self
    }
}

fn half_block(block: &mut ResidualBlock) {
    for layer in [
        &mut block.attn.qkv,
        &mut block.attn.out,
        &mut block.mlp.fc,
        &mut block.mlp.proj,
    ] {
        half_weight(layer);
    }
}

/// The weight in f16; the bias stays f32 and is added after the product returns to f32.
fn half_weight(layer: &mut Linear) {
    let weight = layer.weight.val().cast(FloatDType::F16);
    layer.weight = Param::from_tensor(weight);
}
