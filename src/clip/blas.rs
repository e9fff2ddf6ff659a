//! Linear layers and attention through the system's CBLAS `sgemm` (OpenBLAS), natively on the
//! CPU device.
//!
//! burn-flex multiplies with the `gemm` crate, which reaches 40–45 GFLOP/s per core on the
//! ViT's `[226, 896]·[896, 3584]` products here, AVX-512 kernels included; OpenBLAS reaches
//! 110–120 (BENCHMARKS.md). Linear layers and attention are nearly all of a forward, so they
//! take this path; everything else — autodiff tensors, GPU tensors, other dtypes — stays in burn.

use burn::tensor::{Device, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE, cblas_sgemm};

use super::block::Stream;

/// Whether this path serves tensors on `device` (the plain CPU device; not its autodiff twin).
pub fn serves(device: &Device) -> bool {
    *device == Device::flex() && !device.is_autodiff()
}

/// `x·w + b` for plain f32 CPU tensors (`x`: `[m, k]`, `w`: `[k, n]`, `b`: `[n]`); `None` when
/// any operand lives elsewhere (GPU, autodiff graph, non-f32), so the caller uses burn.
/// `w` may be the transposed view of a contiguous `[n, k]` buffer — the layout the loader
/// keeps on this device: OpenBLAS packs PyTorch's `[out, in]` 15% faster when the weights
/// come from memory rather than cache, as they do in a forward.
pub fn affine(x: &Tensor<2>, w: &Tensor<2>, b: Option<&Tensor<1>>) -> Option<Tensor<2>> {
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
        return None; // burn's matmul reports the mismatch with its own message
    }
    let mut out = match &bias {
        Some(b) => b.as_slice::<f32>()?.repeat(m),
        None => vec![0.0; m * n],
    };
    if out.len() != m * n {
        return None;
    }
    let a = Mat::rows(x.as_slice()?, m, k);
    let b = Mat::rows(w.as_slice()?, w_rows, w_cols);
    let b = if w_transposed { b.t() } else { b };
    sgemm(1.0, a, b, 1.0, MatMut::rows(&mut out, m, n))?;
    Some(tensor(out, [m, n]))
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

/// Multi-head attention straight from the fused projection `qkv` (`[batch, tokens, 3·width]`):
/// per batch item and head, `softmax(a·bᵀ/√d)·c`, the heads side by side in the result
/// (`[batch, tokens, width]`). Heads are read and written in place through BLAS's leading
/// dimensions: no split, transpose or merge copies.
pub fn attention(qkv: &Tensor<3>, heads: usize, stream: Stream, causal: bool) -> Option<Tensor<3>> {
    let p = f32_rows(qkv)?;
    let src = p.as_slice::<f32>()?;
    let [batch, tokens, fused] = qkv.dims();
    let width = fused / 3;
    if tokens == 0 || heads == 0 || width % heads != 0 || fused != 3 * width {
        return None;
    }
    let d = width / heads;
    let (a_at, b_at, c_at) = match stream {
        Stream::Ordinary => (0, width, 2 * width),
        Stream::ValueValue => (2 * width, 2 * width, 2 * width),
    };
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0; batch * tokens * width];
    let mut scores = vec![0.0; tokens * tokens];
    for item in 0..batch {
        for head in 0..heads {
            let at = item * tokens * fused + head * d;
            let part = |offset: usize| Mat::strided(&src[at + offset..], tokens, d, fused);
            let s = MatMut::rows(&mut scores, tokens, tokens);
            sgemm(scale, part(a_at), part(b_at).t(), 0.0, s)?;
            softmax_rows(&mut scores, tokens, causal);
            let o = &mut out[item * tokens * width + head * d..];
            let o = MatMut::strided(o, tokens, d, width);
            sgemm(1.0, Mat::rows(&scores, tokens, tokens), part(c_at), 0.0, o)?;
        }
    }
    Some(tensor(out, [batch, tokens, width]))
}

/// Row-wise softmax of a `[n, n]` score matrix; `causal`: row i sees columns 0..=i only.
fn softmax_rows(scores: &mut [f32], n: usize, causal: bool) {
    for (i, row) in scores.chunks_exact_mut(n).enumerate() {
        let seen = if causal { i + 1 } else { n };
        let (row, hidden) = row.split_at_mut(seen);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        row.iter_mut().for_each(|s| *s /= sum);
        hidden.fill(0.0);
    }
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    let data = TensorData::new(values, shape);
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(data))
}

/// The f32 CPU primitive behind `t`, made contiguous; `None` off the plain CPU backend.
fn f32_rows<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
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

/// A row-major matrix view: `rows × cols`, row starts `ld` floats apart, maybe transposed.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    ld: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    fn strided(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            ld,
            transposed: false,
        }
    }

    /// The transpose, as a view.
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            transposed: !self.transposed,
            ..self
        }
    }

    /// Whether the storage holds every element the view can address.
    fn fits(&self) -> bool {
        let (stored_rows, stored_cols) = if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        };
        stored_cols <= self.ld
            && (stored_rows == 0 || (stored_rows - 1) * self.ld + stored_cols <= self.data.len())
    }
}

/// A mutable row-major matrix view (never transposed).
struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    ld: usize,
}

impl<'a> MatMut<'a> {
    fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    fn strided(data: &'a mut [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            ld,
        }
    }
}

/// `c ← alpha·a·b + beta·c`; `None` when the shapes disagree, a view overruns its storage or a
/// side exceeds BLAS's 32-bit index.
fn sgemm(alpha: f32, a: Mat, b: Mat, beta: f32, c: MatMut) -> Option<()> {
    let c_view = Mat::strided(c.data, c.rows, c.cols, c.ld);
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols || c.rows * c.cols * a.cols == 0 {
        return None;
    }
    if !(a.fits() && b.fits() && c_view.fits()) {
        return None;
    }
    let int = |v: usize| i32::try_from(v).ok();
    let trans = |m: &Mat| match m.transposed {
        true => CBLAS_TRANSPOSE::CblasTrans,
        false => CBLAS_TRANSPOSE::CblasNoTrans,
    };
    let [m, n, k, lda, ldb, ldc] = [c.rows, c.cols, a.cols, a.ld, b.ld, c.ld].map(int);
    // SAFETY: every view was checked to lie inside its slice (`fits`), with the dimensions and
    // leading dimensions passed here; `c` is the only mutable borrow.
    unsafe {
        cblas_sgemm(
            CBLAS_LAYOUT::CblasRowMajor,
            trans(&a),
            trans(&b),
            m?,
            n?,
            k?,
            alpha,
            a.data.as_ptr(),
            lda?,
            b.data.as_ptr(),
            ldb?,
            beta,
            c.data.as_mut_ptr(),
            ldc?,
        );
    }
    Some(())
}

/// Parity with burn's own matmul and attention (the path every other device takes).
#[cfg(test)]
mod tests {
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    const TOL: f32 = 1e-5;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Device::flex())
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn affine_matches_burn_for_both_weight_layouts() {
        let x = random([7, 5]);
        let w = random([5, 3]);
        let b = random([3]);
        let expected = x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0);
        let plain = affine(&x, &w, Some(&b)).expect("CPU f32 operands take this path");
        assert!(max_diff(plain, expected.clone()) < TOL);
        // The loader's layout: `[out, in]` storage seen through a transposed view.
        let stored_out_in = w.clone().transpose().into_data();
        let w_view = Tensor::<2>::from_data(stored_out_in, &Device::flex()).transpose();
        let viewed = affine(&x, &w_view, Some(&b)).expect("transposed view is served");
        assert!(max_diff(viewed, expected) < TOL);
        let unbiased = affine(&x, &w, None).unwrap();
        assert!(max_diff(unbiased, x.matmul(w)) < TOL);
    }

    #[test]
    fn affine_declines_autodiff_tensors_and_mismatched_shapes() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([2, 3], &device);
        let w = Tensor::<2>::ones([3, 4], &device);
        assert!(affine(&x, &w, None).is_none());
        assert!(affine(&random([2, 3]), &random([4, 4]), None).is_none());
        assert!(serves(&Device::flex()) && !serves(&device));
    }

    /// burn's attention over the heads of the fused projection, merged back to `[b, t, w]`.
    fn reference(qkv: &Tensor<3>, heads: usize, stream: Stream, causal: bool) -> Tensor<3> {
        let [batch, tokens, fused] = qkv.dims();
        let width = fused / 3;
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * width, width)
                .reshape([batch, tokens, heads, width / heads])
                .swap_dims(1, 2)
        };
        let (a, b, c) = match stream {
            Stream::Ordinary => (split(0), split(1), split(2)),
            Stream::ValueValue => (split(2), split(2), split(2)),
        };
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        burn_attention(a, b, c, None, None, options)
            .swap_dims(1, 2)
            .reshape([batch, tokens, width])
    }

    #[test]
    fn attention_matches_burn_for_each_stream_and_mask() {
        let qkv = random([2, 6, 3 * 8]);
        for stream in [Stream::Ordinary, Stream::ValueValue] {
            for causal in [false, true] {
                let ours = attention(&qkv, 2, stream, causal).expect("served");
                let diff = max_diff(ours, reference(&qkv, 2, stream, causal));
                assert!(diff < TOL, "{stream:?} causal={causal}: max |Δ| = {diff}");
            }
        }
    }

    #[test]
    fn attention_declines_a_projection_that_does_not_split_into_heads() {
        assert!(attention(&random([1, 4, 3 * 8]), 3, Stream::Ordinary, false).is_none());
        assert!(attention(&random([1, 4, 10]), 2, Stream::Ordinary, false).is_none());
        assert!(attention(&random([1, 0, 3 * 8]), 2, Stream::Ordinary, false).is_none());
    }
}
