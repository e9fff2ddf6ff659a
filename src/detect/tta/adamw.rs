//! AdamW exactly as `torch.optim.AdamW` computes it. Ours rather than burn-optim's: that
//! crate needs burn's `std` feature, which the wasm build cannot enable (it pulls memmap2).

use burn::tensor::Tensor;

/// Hyper-parameters (torch's names and defaults apart from lr and weight decay).
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter and the steps taken.
#[derive(Debug, Clone)]
pub struct Moments<const D: usize> {
    pub m: Tensor<D>,
    pub v: Tensor<D>,
    pub step: usize,
}

impl AdamW {
    /// One update: `θ ← θ·(1 − lr·λ) − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
    pub fn step<const D: usize>(
        &self,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Moments<D>>,
    ) -> (Tensor<D>, Moments<D>) {
        let Moments { m, v, step } = state.unwrap_or_else(|| Moments {
            m: grad.zeros_like(),
            v: grad.zeros_like(),
            step: 0,
        });
        let step = step + 1;
        let m = m * self.beta1 + grad.clone() * (1.0 - self.beta1);
        let v = v * self.beta2 + grad.clone() * grad * (1.0 - self.beta2);
        let correction1 = 1.0 - self.beta1.powi(step as i32);
        let correction2 = (1.0 - self.beta2.powi(step as i32)).sqrt();
        let denominator = v.clone().sqrt() / correction2 + self.eps;
        let decayed = param * (1.0 - self.lr * self.weight_decay);
        let param = decayed - m.clone() / denominator * (self.lr / correction1);
        (param, Moments { m, v, step })
    }
}
