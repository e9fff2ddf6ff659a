//! The CPU fast path: affine maps (x·W+b), multi-head attention of both streams, and their
//! elementwise maths, on plain f32 CPU tensors. Knows tensors, not CLIP.
//!
//! Natively the products go through the system's OpenBLAS (feature `blas`, `blas.rs`); in the
//! browser through our SIMD128 GEMM (`simd_gemm.rs`). Each function here answers `None` where
//! the fast path does not serve — a GPU tensor, an autodiff graph, another dtype, a build
//! without a fast path — and the caller then computes with burn. The `#[cfg]`s that pick a
//! path live in this file only.

#[cfg(all(feature = "blas", not(target_arch = "wasm32")))]
mod blas;
#[cfg(all(feature = "blas", target_os = "linux"))]
mod huge_pages;
#[cfg(any(feature = "blas", target_arch = "wasm32", test))]
mod operands;
#[cfg(any(target_arch = "wasm32", test))]
mod simd_gemm;
#[cfg(any(feature = "blas", target_arch = "wasm32", test))]
mod vector_math;

use burn::tensor::{Device, Tensor, TensorData};

// The products of this build: OpenBLAS natively, our SIMD128 GEMM in the browser, none else.
// `affine(x, w, b, act)`: `act(x·w + b)` for `x`: `[m, k]`, `w`: `[k, n]`, `b`: `[n]`.
// `attention(qkv, heads, stream, causal)`: multi-head attention straight from the fused
// projection `qkv` (`[batch, tokens, 3·width]`), per head `softmax(a·bᵀ/√d)·c` with `a, b, c`
// the parts `attend` names, the heads side by side in the result (`[batch, tokens, width]`).
// Both answer `None` where the fast path does not serve their tensors.
#[cfg(all(feature = "blas", not(target_arch = "wasm32")))]
pub use blas::{affine, attention};
#[cfg(not(any(feature = "blas", target_arch = "wasm32")))]
pub use no_fast_path::{affine, attention};
#[cfg(target_arch = "wasm32")]
pub use simd_gemm::{affine, attention};

/// The non-linearity applied in a product's output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (erf).
    Gelu,
    /// `x·σ(1.702·x)`.
    QuickGelu,
}

/// A part of the fused projection `q | k | v`, in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Query,
    Key,
    Value,
}

/// The parts `[a, b, c]` that attend in `softmax(a·bᵀ/√d)·c`: the caller says which (for CLIP's
/// two streams, `clip::block::Stream`).
pub type Attend = [Part; 3];

impl Part {
    /// Its position in the fused projection (0: q, 1: k, 2: v).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether the fast path serves tensors on `device`: the plain CPU device (not its autodiff
/// twin), in a build that has a fast path.
pub fn serves(device: &Device) -> bool {
    cfg!(any(feature = "blas", target_arch = "wasm32"))
        && *device == Device::flex()
        && !device.is_autodiff()
}

/// A weight stored as PyTorch keeps it (row-major `[out, in]`), as the `[in, out]` view the
/// fast path's products take, for a `device` it [`serves`]. Both fast paths pack `[out, in]`
/// directly — OpenBLAS faster than `[in, out]` when the weights come from memory, the SIMD128
/// GEMM in 4 × 4 lane transposes — so a model loads without transposing its weights; natively
/// the storage is in huge pages where the system has them.
pub fn weight_out_in(values: Vec<f32>, [out, inp]: [usize; 2], device: &Device) -> Tensor<2> {
    #[cfg(all(feature = "blas", target_os = "linux"))]
    if let Some(stored) = huge_pages::tensor(&values, [out, inp]) {
        return stored.transpose();
    }
    let stored = TensorData::new(values, [out, inp]);
    Tensor::<2>::from_data(stored, device).transpose()
}

/// A native build without `blas`: burn computes everything.
#[cfg(not(any(feature = "blas", target_arch = "wasm32")))]
mod no_fast_path {
    use burn::tensor::Tensor;

    use super::{Activation, Attend};

    pub fn affine(
        _: &Tensor<2>,
        _: &Tensor<2>,
        _: Option<&Tensor<1>>,
        _: Option<Activation>,
    ) -> Option<Tensor<2>> {
        None
    }

    pub fn attention(_: &Tensor<3>, _: usize, _: Attend, _: bool) -> Option<Tensor<3>> {
        None
    }
}
