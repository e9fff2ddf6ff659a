//! AnoVL's test-time adapter and the quantities its losses read (METHOD.md §6).

use burn::tensor::activation::{log_softmax, tanh};
use burn::tensor::{Device, Tensor, TensorData};

use super::Rng;
use crate::detect::config::AdapterKind;
use crate::detect::text_score::unit_rows;
use crate::{Error, Result};

/// `x' = ½x + ½a(x)` with `a(x) = tanh(W·x̂ + b)·E` (tanh) or `a(x) = W·x̂ + b` (linear).
///
/// `weight` uses torch's `nn.Linear` layout (out × in): `[2P, D]` for tanh, `[D, D]` for linear.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub kind: AdapterKind,
    pub weight: Tensor<2>,
    pub bias: Tensor<1>,
}

/// The adapter's starting parameters for one image.
#[derive(Debug, Clone)]
pub struct AdapterInit {
    pub weight: Tensor<2>,
    pub bias: Tensor<1>,
}

impl AdapterInit {
    /// `W, b ~ U(±1/√D)` (PyTorch `nn.Linear`'s default), drawn row-major W then b from `rng`.
    /// `rows` is `2P` for the tanh adapter and `D` for the linear one.
    pub fn uniform(rows: usize, dim: usize, rng: &mut Rng, device: &Device) -> Self {
        let bound = 1.0 / (dim as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let weight = draw(rows * dim);
        let bias = draw(rows);
        AdapterInit {
            weight: Tensor::from_data(TensorData::new(weight, [rows, dim]), device),
            bias: Tensor::from_data(TensorData::new(bias, [rows]), device),
        }
    }
}

/// Rows of `W` the adapter needs: one per prompt (tanh) or one per feature (linear).
pub(crate) fn weight_rows(kind: AdapterKind, dim: usize, prompts: usize) -> usize {
    match kind {
        AdapterKind::Tanh => prompts,
        AdapterKind::Linear => dim,
    }
}

impl Adapter {
    pub(crate) fn new(kind: AdapterKind, init: AdapterInit) -> Self {
        Adapter {
            kind,
            weight: init.weight,
            bias: init.bias,
        }
    }

    /// Fails unless `W` and `b` fit tokens of width `dim` and `prompts` rows of E.
    pub(crate) fn check(&self, dim: usize, prompts: usize) -> Result<()> {
        let rows = weight_rows(self.kind, dim, prompts);
        let (w, b) = (self.weight.dims(), self.bias.dims());
        if w != [rows, dim] || b != [rows] {
            return Err(Error::Model(format!(
                "{:?} TTA adapter with W {w:?}, b {b:?}; tokens of width {dim} with {prompts} \
                 prompt embeddings need W [{rows}, {dim}], b [{rows}]",
                self.kind
            )));
        }
        Ok(())
    }

    /// `x' = ½x + ½a(x)` for each row of `x` (`[N, D]`, unnormalized); `prompts` is E
    /// (`[2P, D]`, read by the tanh flavour only).
    pub fn forward(&self, x: Tensor<2>, prompts: &Tensor<2>) -> Tensor<2> {
        let h = unit_rows(x.clone()).matmul(self.weight.clone().transpose())
            + self.bias.clone().unsqueeze::<2>();
        let a = match self.kind {
            AdapterKind::Tanh => tanh(h).matmul(prompts.clone()),
            AdapterKind::Linear => h,
        };
        (x + a).mul_scalar(0.5)
    }

    /// `log softmax₂(normalize(x')·[t_n, t_a]ᵀ)` per patch, `[N, 2]`: column 0 normal,
    /// column 1 abnormal. No temperature (METHOD.md §3).
    pub fn log_probs(&self, x: Tensor<2>, prompts: &Tensor<2>, states: &Tensor<2>) -> Tensor<2> {
        let logits = unit_rows(self.forward(x, prompts)).matmul(states.clone().transpose());
        log_softmax(logits, 1)
    }

    /// Adapted `p_abn` per patch, `[N]`.
    pub fn p_abn(&self, x: Tensor<2>, prompts: &Tensor<2>, states: &Tensor<2>) -> Tensor<1> {
        column(self.log_probs(x, prompts, states), 1).exp()
    }
}

/// AnoVL's loss: `mean H(p⁰) + ½·mean(−log p¹_abn) + ½·mean(−log p⁰_nor)`, p⁰ on the clean
/// tokens, p¹ on the noisy copy.
pub fn anovl_loss(
    adapter: &Adapter,
    clean: Tensor<2>,
    noisy: Tensor<2>,
    prompts: &Tensor<2>,
    states: &Tensor<2>,
) -> Tensor<1> {
    let log_p0 = adapter.log_probs(clean, prompts, states);
    let log_p1 = adapter.log_probs(noisy, prompts, states);
    let entropy = (log_p0.clone().exp() * log_p0.clone())
        .sum_dim(1)
        .mean()
        .neg();
    let abnormal_noisy = column(log_p1, 1).mean().neg();
    let normal_clean = column(log_p0, 0).mean().neg();
    entropy + (abnormal_noisy + normal_clean).mul_scalar(0.5)
}

/// Column `c` of `[N, 2]` as `[N]`.
pub(crate) fn column(t: Tensor<2>, c: usize) -> Tensor<1> {
    let [n, _] = t.dims();
    t.narrow(1, c, 1).reshape([n])
}
