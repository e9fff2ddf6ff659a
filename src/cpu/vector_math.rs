//! The elementwise maths of the CPU paths' own kernels, written so that the compiler vectorizes
//! it: the MLP's activation applied in a linear layer's output buffer, and attention's row
//! softmax. libm's scalar `erff` and glibc's `expf` cost one call per element, and burn's GELU
//! is a pass of its own over the MLP's widest activations (their share of a forward:
//! BENCHMARKS.md).
//!
//! `exp` and `erf` are branch-free polynomials (no table lookups, no calls), accurate to
//! 1e-7 relative and 1e-6 absolute (tested below against f64). On x86-64 each public function
//! is compiled twice, for AVX2 (8 lanes) where the CPU has it and for the SSE2 baseline (4);
//! in the browser the loops become SIMD128.

use super::Activation;

/// Defines `pub fn $name` that runs its body compiled for AVX2 where this x86-64 CPU has it,
/// and as built otherwise. The body and the helpers it calls are inlined into both.
macro_rules! vectorized {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: this CPU has AVX2 (checked just now), all `avx2` needs.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

vectorized! {
    /// `values[i] ← act(values[i])`.
    pub fn activate(values: &mut [f32], act: Activation) {
        match act {
            Activation::Gelu => values.iter_mut().for_each(|x| *x = gelu(*x)),
            Activation::QuickGelu => values.iter_mut().for_each(|x| *x = quick_gelu(*x)),
        }
    }
}

vectorized! {
    /// Row-wise softmax of score rows `n` wide, row i holding query `first + i`'s scores;
    /// `causal`: query q sees columns 0..=q only (the others become 0).
    pub fn softmax_rows(scores: &mut [f32], n: usize, first: usize, causal: bool) {
        for (i, row) in scores.chunks_exact_mut(n).enumerate() {
            let seen = if causal { (first + i + 1).min(n) } else { n };
            let (row, hidden) = row.split_at_mut(seen);
            softmax(row);
            hidden.fill(0.0);
        }
    }
}

/// `row ← exp(row - max) / Σ exp(row - max)`, in three passes the compiler vectorizes (a
/// running sum inside the `exp` loop would keep it scalar: float addition is not reordered).
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = fold_lanes(row, f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    let inv_sum = 1.0 / fold_lanes(row, 0.0, |a, b| a + b);
    row.iter_mut().for_each(|s| *s *= inv_sum);
}

/// `f` folded over `v` in eight interleaved accumulators (vector lanes), then across them.
#[inline(always)]
fn fold_lanes(v: &[f32], init: f32, f: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut lanes = [init; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder().iter().fold(init, |a, &x| f(a, x));
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, x);
        }
    }
    lanes.into_iter().fold(rest, f)
}

/// `x·Φ(x) = ½·x·(1 + erf(x/√2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x·σ(1.702·x) = x / (1 + e^(−1.702·x))`.
#[inline(always)]
fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

/// `eˣ` for `x` in [−87, 88] (clamped there: e⁻⁸⁷ is next to f32's least normal number, e⁸⁸
/// next to its largest). `x = n·ln2 + r` with `|r| ≤ ln2/2`; `eʳ` by its Taylor series to r⁷
/// (remainder < 6e-9 relative); `2ⁿ` built in the exponent bits. NaN stays NaN.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer (the float's last mantissa bits then hold n), with
    // no float-to-int conversion: Rust's saturating `as` would keep the loop scalar.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75; // ln 2 split in two so that n·LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let k = x * std::f32::consts::LOG2_E + ROUND;
    let n = k - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // k's bits are ROUND's plus n: n + 127 shifted into the exponent field is 2ⁿ.
    let two_n = f32::from_bits(k.to_bits().wrapping_sub(ROUND.to_bits() - 127) << 23);
    p * two_n
}

/// erf(x): Abramowitz & Stegun 7.1.26 for |x| ≥ ½ (absolute error 1.5e-7 in exact arithmetic):
/// `1 − t·(a₁ + a₂t + … + a₅t⁴)·e^(−x²)` with `t = 1/(1 + p·|x|)`, odd in x. Below ½ that
/// difference from 1 cancels to a few ulps of 1, so there the Maclaurin series to x¹¹
/// (remainder < 2e-8) keeps erf's relative accuracy near 0. Both are computed and one chosen
/// per lane: no branch.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let far = (1.0 - poly * exp(-a * a)).copysign(x);
    let x2 = x * x;
    let near = x
        * std::f32::consts::FRAC_2_SQRT_PI
        * (1.0
            - x2 * (1.0 / 3.0
                - x2 * (1.0 / 10.0 - x2 * (1.0 / 42.0 - x2 * (1.0 / 216.0 - x2 / 1320.0)))));
    if a < 0.5 { near } else { far }
}

/// Parity with f64 references over dense grids, each with its stated tolerance.
#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 step of `step` over `[from, to)`.
    fn grid(from: f32, to: f32, step: f32) -> impl Iterator<Item = f32> {
        let count = ((to - from) / step) as usize;
        (0..count).map(move |i| from + i as f32 * step)
    }

    #[test]
    fn exp_is_within_2e_7_relative_of_f64() {
        let worst = grid(-87.0, 88.0, 7e-4)
            .map(|x| {
                let want = f64::from(x).exp();
                (f64::from(exp(x)) - want).abs() / want
            })
            .fold(0.0, f64::max);
        assert!(worst <= 2e-7, "exp: worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(
            exp(-1e4) < 1.7e-38 && exp(-1e4) > 0.0,
            "clamped below, not NaN"
        );
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_1e_6_of_f64_and_4_ulps_near_0() {
        let worst = grid(-6.0, 6.0, 1e-5)
            .map(|x| (f64::from(erf(x)) - libm::erf(f64::from(x))).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "erf: worst absolute error {worst:e}");
        let worst_near_0 = grid(-0.5, 0.5, 1e-6)
            .filter(|&x| x != 0.0)
            .map(|x| (f64::from(erf(x)) / libm::erf(f64::from(x)) - 1.0).abs())
            .fold(0.0, f64::max);
        assert!(
            worst_near_0 <= 5e-7,
            "erf near 0: worst relative error {worst_near_0:e}"
        );
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(-3.0), -erf(3.0));
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs: Vec<f32> = grid(-12.0, 12.0, 1e-3).collect();
        for act in [Activation::Gelu, Activation::QuickGelu] {
            let mut got = xs.clone();
            activate(&mut got, act);
            for (&x, &y) in xs.iter().zip(&got) {
                let x64 = f64::from(x);
                let want = match act {
                    Activation::Gelu => 0.5 * x64 * (1.0 + libm::erf(x64 / 2f64.sqrt())),
                    Activation::QuickGelu => x64 / (1.0 + (-1.702 * x64).exp()),
                };
                let err = (f64::from(y) - want).abs();
                assert!(
                    err <= 2e-6 * (1.0 + want.abs()),
                    "{act:?}({x}) = {y}, want {want}"
                );
            }
        }
    }

    #[test]
    fn softmax_rows_match_f64_and_hide_the_future() {
        let (n, rows) = (37, 5); // not a multiple of the 8 lanes
        let scores: Vec<f32> = (0..n * rows)
            .map(|i| ((i * 7919 % 263) as f32 - 131.0) / 9.0)
            .collect();
        for causal in [false, true] {
            let first = 3;
            let mut got = scores.clone();
            softmax_rows(&mut got, n, first, causal);
            for (i, (row, want_row)) in got.chunks(n).zip(scores.chunks(n)).enumerate() {
                let seen = if causal { first + i + 1 } else { n };
                let max = want_row[..seen]
                    .iter()
                    .map(|&s| f64::from(s))
                    .fold(f64::MIN, f64::max);
                let sum: f64 = want_row[..seen]
                    .iter()
                    .map(|&s| (f64::from(s) - max).exp())
                    .sum();
                for (j, &p) in row.iter().enumerate() {
                    let want = if j < seen {
                        (f64::from(want_row[j]) - max).exp() / sum
                    } else {
                        0.0
                    };
                    assert!(
                        (f64::from(p) - want).abs() <= 1e-7,
                        "row {i} col {j}: {p} vs {want}"
                    );
                }
            }
        }
    }
}
