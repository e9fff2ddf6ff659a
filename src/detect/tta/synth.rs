//! Synthesized-anomaly TTA (METHOD.md §6, product mode — ASSUMPTION, our documented choice).
//!
//! A pseudo-anomaly is pasted into the image itself, DRAEM-style: a thresholded Perlin-noise
//! mask selects where a crop of the partner image (or, without a partner, a tile-shuffled crop
//! of the image itself) is blended in; the frozen image tower encodes the result; a linear
//! adapter learns to mark the covered patches (focal + dice on `p_abn`) and is then applied to
//! the image's own tokens. Everything random comes from the seed, so a seed gives bitwise the
//! same result on a deterministic backend.
//!
//! Choices where METHOD.md is silent (all ASSUMPTIONS):
//! - one octave of Perlin noise per axis-resolution `2^ey × 2^ex`, ey, ex drawn from 0..=5;
//!   mask = noise > 0.5 (noise √2-scaled to span [−1, 1], as DRAEM); redrawn (same stream)
//!   until at least one patch is labelled, at most [`MAX_MASK_DRAWS`] times;
//! - the crop: each side a fraction in [0.5, 1) of the image at a random offset, resized
//!   bilinearly back to the image size; the self-source shuffles a 4 × 4 grid of tiles after
//!   cropping;
//! - blend inside the mask `β·image + (1 − β)·source`, β ∈ [0.1, 1) (DRAEM's opacity);
//!   pixels outside the mask are untouched; blending happens on normalized pixels, which is
//!   the same as blending raw ones (normalization is affine per channel);
//! - patch label 1 where at least half the patch's pixels are masked;
//! - loss = focal (γ = 2, no α) + soft dice (smoothing 1) on `p_abn`, no temperature;
//! - the adapter is always the linear one (`cfg.adapter` is ignored), W, b ~ U(±1/√D).

use burn::tensor::{Tensor, TensorData};

use super::adapter::{Adapter, AdapterInit, column};
use super::{OptimizerState, Rng, TtaResult, anchor_constants, check_config, constant, train};
use crate::detect::config::{AdapterKind, TtaConfig};
use crate::image::resize_bilinear_chw;
use crate::prompts::TextAnchors;
use crate::{Error, Result};

/// Mask draws before settling for a mask that labels no patch.
pub const MAX_MASK_DRAWS: usize = 32;

const STREAM_SYNTHESIS: u64 = 1;
const STREAM_ADAPTER: u64 = 2;

/// One image for [`adapt_synth`].
#[derive(Debug, Clone)]
pub struct SynthInput<'a> {
    /// The image's own V-V tokens `[N, D]` (N = grid rows × cols): the ones the adapted map is for.
    pub tokens: Tensor<2>,
    /// The image as the tower saw it: normalized CHW, `3 × H × W`.
    pub pixels: &'a [f32],
    /// `[H, W]`.
    pub size: [usize; 2],
    /// Patch grid `[rows, cols]` of the tokens.
    pub grid: [usize; 2],
    /// The partner image (same size, normalized CHW), the source of the pasted texture.
    pub partner: Option<&'a [f32]>,
}

/// A pseudo-anomalous image.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthesized {
    /// Normalized CHW, `3 × H × W`.
    pub pixels: Vec<f32>,
    /// 1 where the source was blended in, else 0; `H × W`.
    pub mask: Vec<f32>,
    /// Per patch (row-major grid), 1 where at least half of it is masked.
    pub labels: Vec<f32>,
}

/// What [`adapt_synth`] produced.
#[derive(Debug, Clone)]
pub struct SynthResult {
    /// `p_abn` per patch of the image itself and the loss per step.
    pub adapted: TtaResult,
    /// The training image and its labels.
    pub synthesized: Synthesized,
}

/// Synthesized-anomaly TTA for one image. `encode` runs the frozen image tower on normalized
/// CHW pixels of the input size and returns the V-V tokens `[N, D]`.
pub fn adapt_synth(
    input: SynthInput<'_>,
    anchors: &TextAnchors,
    cfg: &TtaConfig,
    seed: u64,
    state: &mut OptimizerState,
    encode: impl Fn(&[f32]) -> Result<Tensor<2>>,
) -> Result<SynthResult> {
    check_config(cfg)?;
    let clean = input.tokens;
    let device = clean.device().inner();
    let [n, dim] = clean.dims();
    let [rows, cols] = input.grid;
    if rows * cols != n {
        return Err(Error::Model(format!(
            "{n} tokens do not fill the patch grid {rows}×{cols}"
        )));
    }
    let synthesized = synthesize(
        input.pixels,
        input.size,
        input.grid,
        input.partner,
        Rng::stream(seed, STREAM_SYNTHESIS).next_u64(),
    )?;
    let synth_tokens = encode(&synthesized.pixels)?;
    if synth_tokens.dims() != [n, dim] {
        return Err(Error::Model(format!(
            "the image tower gave {:?} tokens for the synthesized image, expected [{n}, {dim}]",
            synth_tokens.dims()
        )));
    }
    let init = AdapterInit::uniform(dim, dim, &mut Rng::stream(seed, STREAM_ADAPTER), &device);
    let adapted = adapt_to_labels(
        clean,
        synth_tokens,
        &synthesized.labels,
        init,
        anchors,
        cfg,
        state,
    )?;
    Ok(SynthResult {
        adapted,
        synthesized,
    })
}

/// The training half of [`adapt_synth`]: a linear adapter from `init` learns `labels` (one per
/// row of `synth`, 1 = pseudo-anomalous) under focal + dice, and is applied to `clean`.
pub fn adapt_to_labels(
    clean: Tensor<2>,
    synth: Tensor<2>,
    labels: &[f32],
    init: AdapterInit,
    anchors: &TextAnchors,
    cfg: &TtaConfig,
    state: &mut OptimizerState,
) -> Result<TtaResult> {
    check_config(cfg)?;
    let device = clean.device().inner();
    let [n, dim] = synth.dims();
    if labels.len() != n {
        return Err(Error::Model(format!(
            "{} labels for {n} synthesized tokens",
            labels.len()
        )));
    }
    let (clean, synth) = (constant(clean, &device), constant(synth, &device));
    let (states, prompts) = anchor_constants(anchors, dim, &device)?;
    let labels = Tensor::<1>::from_data(TensorData::new(labels.to_vec(), [n]), &device);
    let adapter = Adapter::new(AdapterKind::Linear, init);
    let (adapter, losses) = train(adapter, cfg, state, |a| {
        let log_p = a.log_probs(
            synth.clone().autodiff(),
            &prompts.clone().autodiff(),
            &states.clone().autodiff(),
        );
        focal_dice_loss(log_p, labels.clone().autodiff())
    })?;
    Ok(TtaResult {
        p_abn: adapter.p_abn(clean, &prompts, &states),
        losses,
    })
}

/// Focal loss (γ = 2) plus soft dice on `p_abn`. `log_probs`: `[N, 2]` (normal, abnormal);
/// `labels`: `[N]` of 0/1.
pub fn focal_dice_loss(log_probs: Tensor<2>, labels: Tensor<1>) -> Tensor<1> {
    let log_abn = column(log_probs.clone(), 1);
    let log_nor = column(log_probs, 0);
    let p = log_abn.clone().exp();
    let q = log_nor.clone().exp(); // 1 − p, without cancellation
    let negatives = labels.clone().neg().add_scalar(1.0);
    let focal = (labels.clone() * q.square() * log_abn + negatives * p.clone().square() * log_nor)
        .mean()
        .neg();
    let overlap = (p.clone() * labels.clone())
        .sum()
        .mul_scalar(2.0)
        .add_scalar(1.0);
    let dice = overlap / (p.sum() + labels.sum()).add_scalar(1.0);
    focal + dice.neg().add_scalar(1.0)
}

/// Pastes a pseudo-anomaly into `pixels` (normalized CHW, `size` = `[H, W]`); `grid` is the
/// patch grid the labels are for. Deterministic in `seed`.
pub fn synthesize(
    pixels: &[f32],
    size: [usize; 2],
    grid: [usize; 2],
    partner: Option<&[f32]>,
    seed: u64,
) -> Result<Synthesized> {
    let [h, w] = size;
    let [rows, cols] = grid;
    let expected = 3 * h * w;
    if pixels.len() != expected || partner.is_some_and(|p| p.len() != expected) {
        return Err(Error::Model(format!(
            "synthesized-anomaly TTA: image has {} values, partner {:?}; both must be 3×{h}×{w}",
            pixels.len(),
            partner.map(<[f32]>::len)
        )));
    }
    if rows == 0 || cols == 0 || rows > h || cols > w {
        return Err(Error::Model(format!(
            "patch grid {rows}×{cols} does not fit a {h}×{w} image"
        )));
    }
    let mut rng = Rng::new(seed);
    let (mask, labels) = draw_mask(size, grid, &mut rng);
    let source = source(pixels, partner, size, &mut rng);
    let beta = (0.1 + 0.9 * rng.uniform()) as f32;
    let mut out = pixels.to_vec();
    for (i, v) in out.iter_mut().enumerate() {
        if mask[i % (h * w)] > 0.0 {
            *v = beta * *v + (1.0 - beta) * source[i];
        }
    }
    Ok(Synthesized {
        pixels: out,
        mask,
        labels,
    })
}

/// A Perlin mask that labels at least one patch, if one comes up in [`MAX_MASK_DRAWS`] draws.
fn draw_mask(size: [usize; 2], grid: [usize; 2], rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let mut last = None;
    for _ in 0..MAX_MASK_DRAWS {
        let res = [1 << rng.below(6), 1 << rng.below(6)];
        let mask: Vec<f32> = perlin(size, res, rng)
            .into_iter()
            .map(|v| if v > 0.5 { 1.0 } else { 0.0 })
            .collect();
        let labels = patch_labels(&mask, size, grid);
        if labels.iter().any(|&l| l > 0.0) {
            return (mask, labels);
        }
        last = Some((mask, labels));
    }
    last.expect("MAX_MASK_DRAWS > 0")
}

/// Per patch of `grid` (row-major), 1 where at least half of its pixels are masked.
/// Patch (r, c) covers rows `⌊r·H/rows⌋ .. ⌊(r+1)·H/rows⌋`, likewise columns.
pub fn patch_labels(mask: &[f32], [h, w]: [usize; 2], [rows, cols]: [usize; 2]) -> Vec<f32> {
    let mut labels = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let (y0, y1) = (r * h / rows, (r + 1) * h / rows);
        for c in 0..cols {
            let (x0, x1) = (c * w / cols, (c + 1) * w / cols);
            let covered: f32 = (y0..y1)
                .flat_map(|y| mask[y * w + x0..y * w + x1].iter())
                .sum();
            let area = ((y1 - y0) * (x1 - x0)) as f32;
            labels.push(if 2.0 * covered >= area { 1.0 } else { 0.0 });
        }
    }
    labels
}

/// 2-D Perlin gradient noise (Perlin 2002: random unit gradients on a `(ry+1)×(rx+1)`
/// lattice, quintic fade `6t⁵ − 15t⁴ + 10t³`), `H × W` row-major, pixel (y, x) at lattice
/// coordinate `(y·ry/H, x·rx/W)`; scaled by √2 so it spans [−1, 1] (DRAEM's convention).
pub fn perlin([h, w]: [usize; 2], [ry, rx]: [usize; 2], rng: &mut Rng) -> Vec<f32> {
    let gradients: Vec<(f64, f64)> = (0..(ry + 1) * (rx + 1))
        .map(|_| {
            let angle = std::f64::consts::TAU * rng.uniform();
            (angle.sin(), angle.cos()) // (y, x)
        })
        .collect();
    let g = |i: usize, j: usize| gradients[i * (rx + 1) + j];
    let dot = |(gy, gx): (f64, f64), dy: f64, dx: f64| gy * dy + gx * dx;
    let fade = |t: f64| t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
    let lerp = |a: f64, b: f64, t: f64| a + t * (b - a);
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let v = (y * ry) as f64 / h as f64;
        let (i, fy) = (v.floor() as usize, v - v.floor());
        for x in 0..w {
            let u = (x * rx) as f64 / w as f64;
            let (j, fx) = (u.floor() as usize, u - u.floor());
            let n00 = dot(g(i, j), fy, fx);
            let n10 = dot(g(i + 1, j), fy - 1.0, fx);
            let n01 = dot(g(i, j + 1), fy, fx - 1.0);
            let n11 = dot(g(i + 1, j + 1), fy - 1.0, fx - 1.0);
            let top = lerp(n00, n10, fade(fy));
            let bottom = lerp(n01, n11, fade(fy));
            out.push((std::f64::consts::SQRT_2 * lerp(top, bottom, fade(fx))) as f32);
        }
    }
    out
}

/// The texture to paste: a random crop of the partner (or of the image, then tile-shuffled),
/// resized back to `[H, W]`.
fn source(pixels: &[f32], partner: Option<&[f32]>, [h, w]: [usize; 2], rng: &mut Rng) -> Vec<f32> {
    let base = partner.unwrap_or(pixels);
    let side = |len: usize, rng: &mut Rng| {
        ((len as f64 * (0.5 + 0.5 * rng.uniform())).round() as usize).clamp(1, len)
    };
    let (ch, cw) = (side(h, rng), side(w, rng));
    let (y0, x0) = (rng.below(h - ch + 1), rng.below(w - cw + 1));
    let mut crop = Vec::with_capacity(3 * ch * cw);
    for c in 0..3 {
        for y in y0..y0 + ch {
            let row = c * h * w + y * w;
            crop.extend_from_slice(&base[row + x0..row + x0 + cw]);
        }
    }
    let mut out = resize_bilinear_chw(&crop, 3, ch, cw, h, w);
    if partner.is_none() {
        shuffle_tiles(&mut out, [h, w], 4, rng);
    }
    out
}

/// Permutes a `k × k` grid of equal tiles (⌊H/k⌋ × ⌊W/k⌋; a leftover border stays put).
fn shuffle_tiles(img: &mut [f32], [h, w]: [usize; 2], k: usize, rng: &mut Rng) {
    let (th, tw) = (h / k, w / k);
    if th == 0 || tw == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..k * k).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1)); // Fisher–Yates
    }
    let before = img.to_vec();
    for (dst, &src) in order.iter().enumerate() {
        let (dy, dx) = (dst / k * th, dst % k * tw);
        let (sy, sx) = (src / k * th, src % k * tw);
        for c in 0..3 {
            for y in 0..th {
                let d = c * h * w + (dy + y) * w + dx;
                let s = c * h * w + (sy + y) * w + sx;
                img[d..d + tw].copy_from_slice(&before[s..s + tw]);
            }
        }
    }
}
