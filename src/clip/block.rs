//! Shared transformer pieces: fused-QKV multi-head attention, MLP, pre-LN residual block.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::config::Activation;

/// Multi-head attention with one fused projection to q, k and v (`[width, 3·width]`).
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub out: Linear,
    #[module(skip)]
    pub heads: usize,
}

/// Queries, keys and values split into heads: each `[batch, heads, tokens, head_dim]`.
pub struct Heads {
    pub q: Tensor<4>,
    pub k: Tensor<4>,
    pub v: Tensor<4>,
}

impl Attention {
    /// Projects `y` (`[batch, tokens, width]`) once into per-head q, k, v.
    pub fn heads(&self, y: Tensor<3>) -> Heads {
        let [batch, tokens, width] = y.dims();
        let head_dim = width / self.heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch, tokens, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let qkv = linear_tokens(&self.qkv, y);
        Heads {
            q: split(qkv.clone().narrow(2, 0, width)),
            k: split(qkv.clone().narrow(2, width, width)),
            v: split(qkv.narrow(2, 2 * width, width)),
        }
    }

    /// `merge(softmax(a·bᵀ/√d)·c)·Wo + bo`: attention of queries `a` over keys `b`, values `c`.
    pub fn attend(&self, a: Tensor<4>, b: Tensor<4>, c: Tensor<4>, causal: bool) -> Tensor<3> {
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let o = attention(a, b, c, None, None, options);
        let [batch, heads, tokens, head_dim] = o.dims();
        let merged = o.swap_dims(1, 2).reshape([batch, tokens, heads * head_dim]);
        linear_tokens(&self.out, merged)
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
        let h = linear_tokens(&self.fc, x);
        let h = match self.act {
            Activation::Gelu => gelu(h),
            Activation::QuickGelu => h.clone() * sigmoid(h * 1.702),
        };
        linear_tokens(&self.proj, h)
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
        let h = self.attn.heads(self.ln1.forward(x.clone()));
        let x = x + self.attn.attend(h.q, h.k, h.v, causal);
        self.mlp_residual(x)
    }

    /// One block of both vision streams (METHOD.md §2). Both attentions read LN1 of the
    /// ORDINARY stream `x`; the V-V stream `z` gets `softmax(v·vᵀ/√d)·v` and no MLP.
    pub fn forward_dual(&self, x: Tensor<3>, z: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let h = self.attn.heads(self.ln1.forward(x.clone()));
        let o_vv = self
            .attn
            .attend(h.v.clone(), h.v.clone(), h.v.clone(), false);
        let o_ord = self.attn.attend(h.q, h.k, h.v, false);
        (self.mlp_residual(x + o_ord), z + o_vv)
    }

    fn mlp_residual(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + self.mlp.forward(self.ln2.forward(x))
    }
}

/// `x·W + b` over `[batch, tokens, in]` as ONE `[batch·tokens, in]` matrix product: burn's
/// `Linear` multiplies batch by batch, repacking the weight for each, which costs 2× on the
/// text tower's 64 short prompts and more on 22 views.
pub fn linear_tokens(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, tokens, width] = x.dims();
    let y = x
        .reshape([batch * tokens, width])
        .matmul(layer.weight.val());
    let y = match &layer.bias {
        Some(b) => y + b.val().unsqueeze_dim(0),
        None => y,
    };
    let out = y.dims()[1];
    y.reshape([batch, tokens, out])
}

/// A `[out, in]` PyTorch weight and its bias as a burn `Linear` (which stores `[in, out]`).
pub fn linear(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
    Linear {
        weight: Param::from_tensor(weight.transpose()),
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
