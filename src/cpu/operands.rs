//! The plain f32 CPU buffers behind burn tensors, for the CPU path's own matrix products
//! (`blas.rs` natively, `simd_gemm.rs` in the browser). Anything else — GPU tensors, autodiff
//! graphs, other dtypes — yields `None`, and the caller multiplies with burn.

use burn::tensor::{Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};

use super::Attend;

/// The operands of `x·w + b` (`x`: `[m, k]`, `w`: `[k, n]`, `b`: `[n]`) and the output buffer,
/// already holding `b` in every row (zeros without a bias): products accumulate into it.
pub struct Affine {
    pub x: FlexTensor,
    /// Contiguous storage of `w`, or of `wᵀ` when `w_transposed`.
    pub w: FlexTensor,
    pub w_transposed: bool,
    pub out: Vec<f32>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Affine {
    /// `None` when an operand lives elsewhere or the shapes disagree (burn's matmul then
    /// reports the mismatch with its own message).
    pub fn new(x: &Tensor<2>, w: &Tensor<2>, b: Option<&Tensor<1>>) -> Option<Self> {
        let x = f32_rows(x)?;
        let (w, w_transposed) = weight(w)?;
        let bias = match b {
            Some(b) => Some(f32_rows(b)?),
            None => None,
        };
        let [m, k] = dims2(&x);
        let [w_rows, w_cols] = dims2(&w);
        let (k2, n) = if w_transposed {
            (w_cols, w_rows)
        } else {
            (w_rows, w_cols)
        };
        if k != k2 {
            return None;
        }
        let out = match &bias {
            Some(b) => b.as_slice::<f32>()?.repeat(m),
            None => vec![0.0; m * n],
        };
        (out.len() == m * n).then_some(Self {
            x,
            w,
            w_transposed,
            out,
            m,
            k,
            n,
        })
    }

    /// The row-major shape of `w`'s storage: `[k, n]`, or `[n, k]` when `w_transposed`.
    pub fn stored_shape(&self) -> [usize; 2] {
        if self.w_transposed {
            [self.n, self.k]
        } else {
            [self.k, self.n]
        }
    }

    /// The finished product as a tensor.
    pub fn into_tensor(self) -> Tensor<2> {
        tensor(self.out, [self.m, self.n])
    }
}

/// Multi-head attention read from the fused projection `q | k | v` (`[batch, tokens, 3·width]`):
/// `softmax(a·bᵀ·scale)·c` per head, with `a, b, c` the projections at column offsets `at`
/// (plus `head·d`).
pub struct FusedHeads {
    pub batch: usize,
    pub tokens: usize,
    pub width: usize,
    /// Head width.
    pub d: usize,
    pub at: [usize; 3],
    /// `1/√d`.
    pub scale: f32,
}

impl FusedHeads {
    /// `None` unless `dims` is a fused projection that `heads` divides.
    pub fn new([batch, tokens, fused]: [usize; 3], heads: usize, attend: Attend) -> Option<Self> {
        let width = fused / 3;
        if tokens == 0 || heads == 0 || width % heads != 0 || fused != 3 * width {
            return None;
        }
        let d = width / heads;
        let at = attend.map(|part| part.index() * width);
        Some(Self {
            batch,
            tokens,
            width,
            d,
            at,
            scale: 1.0 / (d as f32).sqrt(),
        })
    }
}

/// The weight's storage as a contiguous matrix, and whether the logical weight is its transpose.
fn weight(w: &Tensor<2>) -> Option<(FlexTensor, bool)> {
    let p = w.clone().try_into_primitive::<Flex>().ok()?;
    let stored = p.transpose(0, 1);
    let (p, transposed) = match (p.is_contiguous(), stored.is_contiguous()) {
        (true, _) => (p, false),
        (false, true) => (stored, true),
        (false, false) => (p.to_contiguous(), false),
    };
    p.as_slice::<f32>().is_some().then_some((p, transposed))
}

/// A CPU tensor of `shape` holding `values` (row-major).
pub fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    let data = TensorData::new(values, shape);
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(data))
}

/// The f32 CPU primitive behind `t`, made contiguous; `None` off the plain CPU backend.
pub fn f32_rows<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let p = t.clone().try_into_primitive::<Flex>().ok()?;
    let p = if p.is_contiguous() {
        p
    } else {
        p.to_contiguous()
    };
    p.as_slice::<f32>().is_some().then_some(p)
}

fn dims2(t: &FlexTensor) -> [usize; 2] {
    let shape = t.layout().shape();
    [shape[0], shape[1]]
}

/// burn's own attention, for the tests of the CPU paths' attention.
#[cfg(test)]
pub mod test_reference {
    use burn::tensor::Tensor;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;

    use super::super::Part::{Key, Query, Value};
    use super::Attend;

    /// The ordinary stream's parts.
    pub const ORDINARY: Attend = [Query, Key, Value];
    /// The V-V stream's parts.
    pub const VALUE_VALUE: Attend = [Value; 3];

    /// burn's attention over the heads of the fused projection, merged back to `[b, t, w]`.
    pub fn burn_reference(
        qkv: &Tensor<3>,
        heads: usize,
        attend: Attend,
        causal: bool,
    ) -> Tensor<3> {
        let [batch, tokens, fused] = qkv.dims();
        let width = fused / 3;
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * width, width)
                .reshape([batch, tokens, heads, width / heads])
                .swap_dims(1, 2)
        };
        let [a, b, c] = attend.map(|part| split(part.index()));
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        burn_attention(a, b, c, None, None, options)
            .swap_dims(1, 2)
            .reshape([batch, tokens, width])
    }
}
