//! Shared transformer pieces: fused-QKV multi-head attention, MLP, pre-LN residual block.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, FloatDType, Tensor};

use super::config::Activation;
use crate::cpu::{self, Attend, Part};

/// Which projections of the fused `q | k | v` attend (METHOD.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// `softmax(q·kᵀ/√d)·v`.
    Ordinary,
    /// The V-V stream: `softmax(v·vᵀ/√d)·v`.
    ValueValue,
}

impl Stream {
    /// The parts `[a, b, c]` of `softmax(a·bᵀ/√d)·c`: the V-V stream reads only the values.
    pub fn parts(self) -> Attend {
        match self {
            Stream::Ordinary => [Part::Query, Part::Key, Part::Value],
            Stream::ValueValue => [Part::Value; 3],
        }
    }
}

/// Multi-head attention with one fused projection to q, k and v (`[width, 3·width]`).
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub out: Linear,
    #[module(skip)]
    pub heads: usize,
}

impl Attention {
    /// The fused projection of `y` (`[batch, tokens, width]`): `[batch, tokens, 3·width]`.
    pub fn qkv(&self, y: Tensor<3>) -> Tensor<3> {
        linear_tokens(&self.qkv, y)
    }

    /// `merge(softmax(a·bᵀ/√d)·c)·Wo + bo`, with `a, b, c` the projections `stream` names.
    pub fn attend(&self, qkv: &Tensor<3>, stream: Stream, causal: bool) -> Tensor<3> {
        let merged = cpu::attention(qkv, self.heads, stream.parts(), causal)
            .unwrap_or_else(|| self.burn_attention(qkv, stream, causal));
        linear_tokens(&self.out, merged)
    }

    /// [`Attention::attend`]'s heads with burn's ops (every device but the plain CPU one).
    fn burn_attention(&self, qkv: &Tensor<3>, stream: Stream, causal: bool) -> Tensor<3> {
        let [a, b, c] = stream.parts().map(|part| self.head(qkv, part));
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let o = attention(a, b, c, None, None, options);
        let [batch, heads, tokens, head_dim] = o.dims();
        o.swap_dims(1, 2).reshape([batch, tokens, heads * head_dim])
    }

    /// One part of the fused projection split into heads: `[batch, heads, tokens, head_dim]`.
    fn head(&self, qkv: &Tensor<3>, part: Part) -> Tensor<4> {
        let [batch, tokens, fused] = qkv.dims();
        let width = fused / 3;
        qkv.clone()
            .narrow(2, part.index() * width, width)
            .reshape([batch, tokens, self.heads, width / self.heads])
            .swap_dims(1, 2)
    }
}

/// The transformer MLP: `proj(act(fc(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc: Linear,
    pub proj: Linear,
    #[module(skip)]
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = dense(&self.fc, x, Some(self.act));
        linear_tokens(&self.proj, h)
    }
}

/// `act(h)` with burn's ops (the CPU paths apply it in their products' output instead).
fn activation(h: Tensor<2>, act: Activation) -> Tensor<2> {
    match act {
        Activation::Gelu => gelu(h),
        Activation::QuickGelu => h.clone() * sigmoid(h * 1.702),
    }
}

/// A pre-LN residual block: `x += attn(ln1(x)); x += mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub ln1: LayerNorm,
    pub attn: Attention,
    pub ln2: LayerNorm,
    pub mlp: Mlp,
}

impl ResidualBlock {
    /// The ordinary block (text tower: `causal = true`).
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let qkv = self.attn.qkv(self.ln1.forward(x.clone()));
        let x = x + self.attn.attend(&qkv, Stream::Ordinary, causal);
        self.mlp_residual(x)
    }

    /// One block of both vision streams (METHOD.md §2). Both attentions read LN1 of the
    /// ORDINARY stream `x`; the V-V stream `z` gets `softmax(v·vᵀ/√d)·v` and no MLP.
    pub fn forward_dual(&self, x: Tensor<3>, z: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let qkv = self.attn.qkv(self.ln1.forward(x.clone()));
        let o_vv = self.attn.attend(&qkv, Stream::ValueValue, false);
        let o_ord = self.attn.attend(&qkv, Stream::Ordinary, false);
        (self.mlp_residual(x + o_ord), z + o_vv)
    }

    fn mlp_residual(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + self.mlp.forward(self.ln2.forward(x))
    }
}

/// `x·W + b` over `[batch, tokens, in]` as ONE `[batch·tokens, in]` matrix product: burn's
/// `Linear` multiplies batch by batch, repacking the weight for each: a cost that grows with
/// the batch (the text tower's 64 short prompts, 22 views).
pub fn linear_tokens(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    dense(layer, x, None)
}

/// `act(x·W + b)` over `[batch, tokens, in]`, as [`linear_tokens`].
fn dense(layer: &Linear, x: Tensor<3>, act: Option<Activation>) -> Tensor<3> {
    let [batch, tokens, width] = x.dims();
    let bias = layer.bias.as_ref().map(|b| b.val());
    let y = affine(
        x.reshape([batch * tokens, width]),
        layer.weight.val(),
        bias,
        act,
    );
    let out = y.dims()[1];
    y.reshape([batch, tokens, out])
}

/// `act(x·w + b)` for `[m, k]·[k, n]`: the CPU fast path where it serves (`cpu::affine`,
/// applying `act` in its output buffer), burn's ops elsewhere.
pub fn affine(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    act: Option<Activation>,
) -> Tensor<2> {
    let fast = cpu::affine(&x, &weight, bias.as_ref(), act.map(Into::into));
    fast.unwrap_or_else(|| burn_affine(x, weight, bias, act))
}

/// [`affine`] with burn's ops.
fn burn_affine(
    x: Tensor<2>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
    act: Option<Activation>,
) -> Tensor<2> {
    // f16 weights (`precision.rs`): the product in f16, its result back in f32.
    let y = match weight.dtype() {
        DType::F16 => x.cast(FloatDType::F16).matmul(weight).cast(FloatDType::F32),
        _ => x.matmul(weight),
    };
    let y = match bias {
        Some(b) => y + b.unsqueeze_dim(0),
        None => y,
    };
    match act {
        Some(act) => activation(y, act),
        None => y,
    }
}

/// A burn `Linear` from a weight already laid out `[in, out]` (see `cpu::weight_out_in`:
/// a contiguous `[in, out]` weight is packed by gemm several times faster than a transposed
/// view of PyTorch's `[out, in]`).
pub fn linear(weight_in_out: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
    Linear {
        weight: Param::from_tensor(weight_in_out),
        bias: bias.map(Param::from_tensor),
    }
}

/// A LayerNorm with the given scale, shift and epsilon.
pub fn layer_norm(gamma: Tensor<1>, beta: Tensor<1>, eps: f64) -> LayerNorm {
    let device = gamma.device();
    let mut ln = burn::nn::LayerNormConfig::new(gamma.dims()[0])
        .with_epsilon(eps)
        .init(&device);
    ln.gamma = Param::from_tensor(gamma);
    ln.beta = Some(Param::from_tensor(beta));
    ln
}
