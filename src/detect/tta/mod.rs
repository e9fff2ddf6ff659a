//! Test-time adaptation of the patch features (METHOD.md §6), per image, with CLIP frozen.
//!
//! Two flavours share one training loop ([`OptimizerState`], AdamW on `device.autodiff()`):
//! - [`adapt`]: AnoVL's adapter trained on its own pseudo-labels (faithful mode);
//! - [`adapt_synth`]: a linear adapter trained on a synthesized anomaly (product mode).
//!
//! Tokens, anchors and noise enter the autodiff graph as constants (`inner()`), so no gradient
//! reaches CLIP or the caller's graph; only W and b are tracked. Results come back on the
//! tokens' device without autodiff.
//!
//! AdamW: [`adamw::AdamW`] (lr and weight decay from the config, betas (0.9, 0.999), eps 1e-8)
//! computes torch.optim.AdamW's update, `θ ← θ·(1 − lr·λ) − lr·m̂/(√v̂ + ε)` with bias-corrected
//! m̂, v̂ (checked against torch in tests/tta.rs).
//!
//! Randomness (initial W, b; the noise; the synthesized anomaly) comes from [`Rng`]
//! (SplitMix64, on the CPU) seeded by the caller, so a seed draws the same numbers on every
//! backend; it does not reproduce torch's random draws (tests inject the reference's draws).

mod adamw;
mod adapter;
mod synth;

pub use adapter::{Adapter, AdapterInit, anovl_loss};
pub use synth::{
    MAX_MASK_DRAWS, SynthInput, SynthResult, Synthesized, adapt_synth, adapt_to_labels,
    focal_dice_loss, patch_labels, perlin, synthesize,
};

use burn::tensor::{Device, Tensor, TensorData};

use crate::backend::read_back;
use crate::detect::config::TtaConfig;
use crate::prompts::TextAnchors;
use crate::{Error, Result};
use adamw::{AdamW, Moments};

/// AdamW moments and step count of one adapter. Reset at the start of every image unless
/// `TtaConfig::keep_optimizer` (AnoVL's quirk: the caller then keeps one per class).
#[derive(Clone, Default)]
pub struct OptimizerState {
    weight: Option<Moments<2>>,
    bias: Option<Moments<1>>,
}

impl OptimizerState {
    pub fn new() -> Self {
        Self::default()
    }

    /// AdamW steps taken since the state was last reset (0 for a fresh state).
    pub fn steps(&self) -> usize {
        self.weight.as_ref().map_or(0, |s| s.step)
    }
}

impl std::fmt::Debug for OptimizerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerState")
            .field("steps", &self.steps())
            .finish()
    }
}

/// What one image's adaptation produced.
#[derive(Debug, Clone)]
pub struct TtaResult {
    /// Adapted `p_abn` per patch `[N]` (final adapter, clean tokens), without autodiff.
    pub p_abn: Tensor<1>,
    /// The loss each step back-propagated (before that step's update), `steps` values.
    pub losses: Vec<f32>,
}

/// AnoVL's TTA (METHOD.md §6, faithful) for one image. Reads `cfg.adapter`, `steps`, `lr`,
/// `weight_decay` and `keep_optimizer` (`mode` is the caller's business).
///
/// `tokens`: the frozen V-V patch tokens `[N, D]`, unnormalized. `init`: W, b (W `[2P, D]` for
/// the tanh adapter, `[D, D]` for the linear one, `cfg.adapter` decides). `noise`: `[N, D]`,
/// added to the tokens for the noisy copy X̃ (drawn once per image, used by every step).
pub fn adapt(
    tokens: Tensor<2>,
    anchors: &TextAnchors,
    cfg: &TtaConfig,
    init: AdapterInit,
    noise: Tensor<2>,
    state: &mut OptimizerState,
) -> Result<TtaResult> {
    check_config(cfg)?;
    let device = tokens.device().inner();
    let clean = constant(tokens, &device);
    let [n, dim] = clean.dims();
    let (states, prompts) = anchor_constants(anchors, dim, &device)?;
    let noise = constant(noise, &device);
    if noise.dims() != [n, dim] {
        return Err(Error::Model(format!(
            "TTA noise {:?} does not match the tokens [{n}, {dim}]",
            noise.dims()
        )));
    }
    let noisy = clean.clone() + noise;
    let init = AdapterInit {
        weight: constant(init.weight, &device),
        bias: constant(init.bias, &device),
    };
    let adapter = Adapter::new(cfg.adapter, init);
    adapter.check(dim, prompts.dims()[0])?;
    let (adapter, losses) = train(adapter, cfg, state, |a| {
        anovl_loss(
            a,
            clean.clone().autodiff(),
            noisy.clone().autodiff(),
            &prompts.clone().autodiff(),
            &states.clone().autodiff(),
        )
    })?;
    Ok(TtaResult {
        p_abn: adapter.p_abn(clean, &prompts, &states),
        losses,
    })
}

/// [`adapt`] with W, b and the noise drawn from `seed` (see [`anovl_draws`]).
pub fn adapt_seeded(
    tokens: Tensor<2>,
    anchors: &TextAnchors,
    cfg: &TtaConfig,
    seed: u64,
    state: &mut OptimizerState,
) -> Result<TtaResult> {
    let [n, dim] = tokens.dims();
    let prompts = anchors.prompts.dims()[0];
    let (init, noise) = anovl_draws(cfg, [n, dim], prompts, seed, &tokens.device().inner());
    adapt(tokens, anchors, cfg, init, noise, state)
}

/// The random inputs of one image's AnoVL TTA from `seed`: W, b ~ U(±1/√D) (row-major W, then
/// b), then the noise N(0, noise_std²) `[N, D]` row-major, all from one SplitMix64 stream.
pub fn anovl_draws(
    cfg: &TtaConfig,
    [n, dim]: [usize; 2],
    prompts: usize,
    seed: u64,
    device: &Device,
) -> (AdapterInit, Tensor<2>) {
    let mut rng = Rng::new(seed);
    let rows = adapter::weight_rows(cfg.adapter, dim, prompts);
    let init = AdapterInit::uniform(rows, dim, &mut rng, device);
    let noise: Vec<f32> = (0..n * dim)
        .map(|_| (rng.normal() * cfg.noise_std as f64) as f32)
        .collect();
    let noise = Tensor::from_data(TensorData::new(noise, [n, dim]), device);
    (init, noise)
}

/// `cfg.steps` full-batch AdamW steps on `objective`; returns the final adapter (no autodiff)
/// and the loss of every step.
fn train(
    adapter: Adapter,
    cfg: &TtaConfig,
    state: &mut OptimizerState,
    objective: impl Fn(&Adapter) -> Tensor<1>,
) -> Result<(Adapter, Vec<f32>)> {
    if !cfg.keep_optimizer {
        *state = OptimizerState::default();
    }
    check_state(state, &adapter)?;
    let optim = adamw(cfg);
    let Adapter {
        kind,
        mut weight,
        mut bias,
    } = adapter;
    let mut losses = Vec::with_capacity(cfg.steps);
    for _ in 0..cfg.steps {
        let tracked = Adapter {
            kind,
            weight: weight.clone().autodiff().require_grad(),
            bias: bias.clone().autodiff().require_grad(),
        };
        let loss = objective(&tracked);
        let grads = loss.backward();
        let missing = || Error::Model("TTA: the loss does not depend on the adapter".into());
        let grad_w = tracked.weight.grad(&grads).ok_or_else(missing)?;
        let grad_b = tracked.bias.grad(&grads).ok_or_else(missing)?;
        losses.push(loss.inner());
        let (w, moments_w) = optim.step(weight, grad_w, state.weight.take());
        let (b, moments_b) = optim.step(bias, grad_b, state.bias.take());
        (weight, bias) = (w, b);
        (state.weight, state.bias) = (Some(moments_w), Some(moments_b));
    }
    // One read-back for all steps rather than a device sync per step.
    let losses = if losses.is_empty() {
        Vec::new()
    } else {
        read_back(Tensor::cat(losses, 0), "TTA losses")?
    };
    Ok((Adapter { kind, weight, bias }, losses))
}

/// torch.optim.AdamW's defaults except lr and weight decay, which come from the config.
fn adamw(cfg: &TtaConfig) -> AdamW {
    AdamW {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: cfg.weight_decay,
    }
}

fn check_config(cfg: &TtaConfig) -> Result<()> {
    let bad = |option: &str, message: String| {
        Err(Error::Option {
            option: option.into(),
            message,
        })
    };
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return bad("tta lr", format!("{} is not a positive number", cfg.lr));
    }
    if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
        return bad(
            "tta weight decay",
            format!("{} is not a number ≥ 0", cfg.weight_decay),
        );
    }
    if !(cfg.noise_std.is_finite() && cfg.noise_std >= 0.0) {
        return bad(
            "tta noise std",
            format!("{} is not a number ≥ 0", cfg.noise_std),
        );
    }
    Ok(())
}

/// A carried state must belong to an adapter of the same shape.
fn check_state(state: &OptimizerState, adapter: &Adapter) -> Result<()> {
    let shape = state.weight.as_ref().map(|s| s.m.dims());
    match shape {
        Some(dims) if dims != adapter.weight.dims() => Err(Error::Model(format!(
            "kept TTA optimizer state is for W {dims:?}, this adapter has W {:?}; \
             keep one state per class and adapter kind",
            adapter.weight.dims()
        ))),
        _ => Ok(()),
    }
}

/// `t` on `device` without autodiff: a constant that no gradient flows back through.
fn constant<const D: usize>(t: Tensor<D>, device: &Device) -> Tensor<D> {
    t.inner().to_device(device)
}

/// `(states [2, D], prompts [2P, D])` as constants, checked against the token width.
fn anchor_constants(
    anchors: &TextAnchors,
    dim: usize,
    device: &Device,
) -> Result<(Tensor<2>, Tensor<2>)> {
    let states = constant(anchors.states.clone(), device);
    let prompts = constant(anchors.prompts.clone(), device);
    if states.dims() != [2, dim] || prompts.dims()[1] != dim {
        return Err(Error::Model(format!(
            "text anchors {:?} / prompts {:?} do not fit tokens of width {dim}; \
             expected [2, {dim}] / [2P, {dim}] (same model for image and text)",
            states.dims(),
            prompts.dims()
        )));
    }
    Ok((states, prompts))
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, seedable, identical on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// An independent stream for one purpose (`tag`) of one seed.
    pub fn stream(seed: u64, tag: u64) -> Self {
        Rng(Rng(seed ^ Rng(tag).next_u64()).next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n) (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Standard normal (Box–Muller, cosine branch only).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
