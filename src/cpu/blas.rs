//! Linear layers and attention through the system's CBLAS `sgemm` (OpenBLAS), natively on the
//! CPU device.
//!
//! OpenBLAS multiplies the ViT's products several times faster per core than burn-flex's `gemm`
//! (BENCHMARKS.md, "Where the CPU time goes"). Linear layers and attention are nearly all of a
//! forward, so they take this path; everything else — autodiff tensors, GPU tensors, other
//! dtypes — stays in burn.

use std::marker::PhantomData;
use std::sync::Once;

use burn::tensor::Tensor;
use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE, cblas_sgemm};
use rayon::prelude::*;

use super::Activation;
use super::Attend;
use super::operands::{Affine, FusedHeads, f32_rows, tensor};
use super::vector_math::{activate, softmax_rows};

unsafe extern "C" {
    /// OpenBLAS's own thread count (not part of CBLAS; every OpenBLAS build exports it).
    fn openblas_set_num_threads(threads: i32);
}

/// Products smaller than this many multiply-adds run as one call: splitting them costs more
/// in hand-offs than it saves.
const SPLIT_MIN_MACS: usize = 1 << 21;
/// The narrowest column block a thread gets (a multiple of OpenBLAS's kernel widths).
const SPLIT_MIN_COLS: usize = 64;

/// OpenBLAS runs single-threaded and rayon (burn-flex's pool) splits the work instead: two
/// pools on the same cores fight, OpenBLAS's idle threads spinning in `sched_yield` while rayon
/// runs the elementwise kernels between products, and two single-threaded halves of a product
/// outrun OpenBLAS's own two threads (BENCHMARKS.md).
fn single_threaded_blas() {
    static ONCE: Once = Once::new();
    // SAFETY: a plain setter of OpenBLAS's thread count, called once before our first product.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// `act(x·w + b)` for plain f32 CPU tensors (`x`: `[m, k]`, `w`: `[k, n]`, `b`: `[n]`); `None` when
/// any operand lives elsewhere (GPU, autodiff graph, non-f32), so the caller uses burn.
/// `w` may be the transposed view of a contiguous `[n, k]` buffer — the layout the loader
/// keeps on this device: OpenBLAS packs PyTorch's `[out, in]` faster when the weights come
/// from memory rather than cache, as they do in a forward. The output columns are split
/// across threads, so each thread packs only its share of the weight; the activation runs on
/// row blocks, in parallel too.
pub fn affine(
    x: &Tensor<2>,
    w: &Tensor<2>,
    b: Option<&Tensor<1>>,
    act: Option<Activation>,
) -> Option<Tensor<2>> {
    let mut op = Affine::new(x, w, b)?;
    let (m, k, n) = (op.m, op.k, op.n);
    let a = Mat::rows(op.x.as_slice()?, m, k);
    let [rows, cols] = op.stored_shape();
    let stored = Mat::rows(op.w.as_slice()?, rows, cols);
    let b = if op.w_transposed { stored.t() } else { stored };
    let c = MatMut::rows(&mut op.out, m, n);
    column_blocks(n, m * n * k)
        .into_par_iter()
        .try_for_each(|(from, to)| {
            sgemm(1.0, a, b.columns(from, to), 1.0, c.block(0, m, from, to))
        })?;
    if let Some(act) = act {
        let rows = m.div_ceil(rayon::current_num_threads()).max(1);
        op.out
            .par_chunks_mut(rows * n)
            .for_each(|block| activate(block, act));
    }
    Some(op.into_tensor())
}

/// The column ranges one product is split into: one per thread, none narrower than
/// `SPLIT_MIN_COLS`, a single range for small products.
fn column_blocks(n: usize, macs: usize) -> Vec<(usize, usize)> {
    let parts = if macs < SPLIT_MIN_MACS {
        1
    } else {
        rayon::current_num_threads().min(n / SPLIT_MIN_COLS).max(1)
    };
    let width = n.div_ceil(parts).next_multiple_of(16);
    (0..n)
        .step_by(width.max(1))
        .map(|from| (from, (from + width).min(n)))
        .collect()
}

/// Multi-head attention straight from the fused projection `qkv` (`[batch, tokens, 3·width]`):
/// per batch item and head, `softmax(a·bᵀ/√d)·c`, the heads side by side in the result
/// (`[batch, tokens, width]`). Heads are read and written in place through BLAS's leading
/// dimensions: no split, transpose or merge copies. The (item, head) pairs run in parallel.
pub fn attention(qkv: &Tensor<3>, heads: usize, attend: Attend, causal: bool) -> Option<Tensor<3>> {
    let p = f32_rows(qkv)?;
    let src = p.as_slice::<f32>()?;
    let FusedHeads {
        batch,
        tokens,
        width,
        d,
        at: [a_at, b_at, c_at],
        scale,
    } = FusedHeads::new(qkv.dims(), heads, attend)?;
    let fused = 3 * width;
    let projections = Mat::rows(src, batch * tokens, fused);
    let mut out = vec![0.0; batch * tokens * width];
    let merged = MatMut::rows(&mut out, batch * tokens, width);
    (0..batch * heads).into_par_iter().try_for_each_init(
        || vec![0.0; tokens * tokens],
        |scores, task| {
            let (item, head) = (task / heads, task % heads);
            let rows = item * tokens..(item + 1) * tokens;
            let part = |at: usize| {
                let at = at + head * d;
                projections.block(rows.start, rows.end, at, at + d)
            };
            let s = MatMut::rows(scores, tokens, tokens);
            sgemm(scale, part(a_at), part(b_at).t(), 0.0, s)?;
            softmax_rows(scores, tokens, 0, causal);
            let o = merged.block(rows.start, rows.end, head * d, (head + 1) * d);
            sgemm(1.0, Mat::rows(scores, tokens, tokens), part(c_at), 0.0, o)
        },
    )?;
    Some(tensor(out, [batch, tokens, width]))
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
        Self {
            data,
            rows,
            cols,
            ld: cols,
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

    /// Rows `r0..r1` and columns `c0..c1` of the logical matrix, as a view (empty storage when
    /// the range lies outside it: `fits` then refuses the view).
    fn block(self, r0: usize, r1: usize, c0: usize, c1: usize) -> Self {
        let (stored_r0, stored_c0) = if self.transposed { (c0, r0) } else { (r0, c0) };
        let start = stored_r0 * self.ld + stored_c0;
        Self {
            data: self.data.get(start..).unwrap_or_default(),
            rows: r1.saturating_sub(r0),
            cols: c1.saturating_sub(c0),
            ..self
        }
    }

    /// Columns `c0..c1`, all rows.
    fn columns(self, c0: usize, c1: usize) -> Self {
        self.block(0, self.rows, c0, c1)
    }

    /// Whether the storage holds every element the view can address.
    fn fits(&self) -> bool {
        fits(
            self.data.len(),
            self.rows,
            self.cols,
            self.ld,
            self.transposed,
        )
    }
}

fn fits(len: usize, rows: usize, cols: usize, ld: usize, transposed: bool) -> bool {
    let (stored_rows, stored_cols) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    stored_cols <= ld && (stored_rows == 0 || (stored_rows - 1) * ld + stored_cols <= len)
}

/// A mutable row-major matrix view (never transposed). Views of one buffer made by `block`
/// may be written from several threads at once: that is why it holds a raw pointer rather
/// than `&mut [f32]` (two overlapping `&mut` slices would be undefined behaviour even where
/// the elements each writes are disjoint). Only `sgemm` writes through it.
#[derive(Clone, Copy)]
struct MatMut<'a> {
    ptr: *mut f32,
    len: usize,
    rows: usize,
    cols: usize,
    ld: usize,
    buffer: PhantomData<&'a mut [f32]>,
}

// SAFETY: the views that cross threads (in `affine` and `attention`) are blocks of one buffer
// over disjoint element sets, each written by exactly one `sgemm`, and the buffer outlives them
// (the lifetime `'a` borrows it mutably).
unsafe impl Send for MatMut<'_> {}
unsafe impl Sync for MatMut<'_> {}

impl<'a> MatMut<'a> {
    fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            rows,
            cols,
            ld: cols,
            buffer: PhantomData,
        }
    }

    /// Rows `r0..r1` and columns `c0..c1`, as a view (refused by `fits` when outside).
    fn block(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> Self {
        let start = (r0 * self.ld + c0).min(self.len);
        Self {
            // SAFETY: `start` is clamped to the buffer's length: at most one past its end.
            ptr: unsafe { self.ptr.add(start) },
            len: self.len - start,
            rows: r1.saturating_sub(r0),
            cols: c1.saturating_sub(c0),
            ..*self
        }
    }

    fn fits(&self) -> bool {
        fits(self.len, self.rows, self.cols, self.ld, false)
    }
}

/// `c ← alpha·a·b + beta·c`; `None` when the shapes disagree, a view overruns its storage or a
/// side exceeds BLAS's 32-bit index.
fn sgemm(alpha: f32, a: Mat, b: Mat, beta: f32, c: MatMut) -> Option<()> {
    if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols || c.rows * c.cols * a.cols == 0 {
        return None;
    }
    if !(a.fits() && b.fits() && c.fits()) {
        return None;
    }
    single_threaded_blas();
    let int = |v: usize| i32::try_from(v).ok();
    let trans = |m: &Mat| {
        if m.transposed {
            CBLAS_TRANSPOSE::CblasTrans
        } else {
            CBLAS_TRANSPOSE::CblasNoTrans
        }
    };
    let [m, n, k, lda, ldb, ldc] = [c.rows, c.cols, a.cols, a.ld, b.ld, c.ld].map(int);
    // SAFETY: every view was checked to lie inside its storage (`fits`), with the dimensions
    // and leading dimensions passed here; no other call writes the elements `c` addresses.
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
            c.ptr,
            ldc?,
        );
    }
    Some(())
}

/// Parity with burn's own matmul and attention (the path every other device takes).
#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::super::operands::test_reference::{ORDINARY, VALUE_VALUE, burn_reference};
    use super::super::serves;
    use super::*;

    const TOL: f32 = 1e-5;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Device::flex())
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
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
        let plain = affine(&x, &w, Some(&b), None).expect("CPU f32 operands take this path");
        assert!(max_diff(plain, expected.clone()) < TOL);
        // The loader's layout: `[out, in]` storage seen through a transposed view.
        let stored_out_in = w.clone().transpose().into_data();
        let w_view = Tensor::<2>::from_data(stored_out_in, &Device::flex()).transpose();
        let viewed = affine(&x, &w_view, Some(&b), None).expect("transposed view is served");
        assert!(max_diff(viewed, expected) < TOL);
        let unbiased = affine(&x, &w, None, None).unwrap();
        assert!(max_diff(unbiased, x.matmul(w)) < TOL);
    }

    /// On a 4-thread pool the product is split into column blocks, each its own `sgemm`
    /// writing into the shared output: the result must be the one product.
    #[test]
    fn split_products_match_burn_for_both_weight_layouts() {
        let pool = pool(4);
        let (x, w, b) = (random([96, 192]), random([192, 328]), random([328]));
        const _: () = assert!(96 * 192 * 328 >= SPLIT_MIN_MACS, "large enough to be split");
        let expected = x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0);
        let stored_out_in = w.clone().transpose().into_data();
        let w_view = Tensor::<2>::from_data(stored_out_in, &Device::flex()).transpose();
        for w in [w, w_view] {
            let split = pool
                .install(|| affine(&x, &w, Some(&b), None))
                .expect("served");
            let diff = max_diff(split, expected.clone());
            assert!(diff < 1e-4, "max |Δ| = {diff}");
        }
    }

    /// The activation applied in the output buffer, on every row block of a split product,
    /// against burn's GELU and QuickGELU of burn's product.
    #[test]
    fn activations_in_the_output_match_burn() {
        use burn::tensor::activation::{gelu, sigmoid};
        let pool = pool(3);
        let (x, w, b) = (random([97, 192]), random([192, 200]), random([200]));
        let y = x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0);
        for (act, want) in [
            (Activation::Gelu, gelu(y.clone())),
            (
                Activation::QuickGelu,
                y.clone() * sigmoid(y.clone() * 1.702),
            ),
        ] {
            let got = pool
                .install(|| affine(&x, &w, Some(&b), Some(act)))
                .expect("served");
            let diff = max_diff(got, want);
            assert!(diff < 1e-4, "{act:?}: max |Δ| = {diff}");
        }
    }

    #[test]
    fn column_blocks_cover_every_column_once() {
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for n in [1, 63, 64, 200, 896, 3584] {
                let blocks = pool.install(|| column_blocks(n, SPLIT_MIN_MACS));
                let mut next = 0;
                for &(from, to) in &blocks {
                    assert!(
                        from == next && to > from,
                        "{threads} threads, n = {n}: {blocks:?}"
                    );
                    next = to;
                }
                assert_eq!(next, n, "{threads} threads, n = {n}: {blocks:?}");
                assert!(blocks.len() <= threads);
            }
            assert_eq!(
                pool.install(|| column_blocks(896, SPLIT_MIN_MACS - 1)),
                [(0, 896)]
            );
        }
    }

    #[test]
    fn affine_declines_autodiff_tensors_and_mismatched_shapes() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([2, 3], &device);
        let w = Tensor::<2>::ones([3, 4], &device);
        assert!(affine(&x, &w, None, None).is_none());
        assert!(affine(&random([2, 3]), &random([4, 4]), None, None).is_none());
        assert!(serves(&Device::flex()) && !serves(&device));
    }

    #[test]
    fn attention_matches_burn_for_each_stream_and_mask() {
        let qkv = random([2, 6, 3 * 8]);
        // Four threads: the (item, head) pairs write their blocks of one output concurrently.
        let pool = pool(4);
        for stream in [ORDINARY, VALUE_VALUE] {
            for causal in [false, true] {
                let ours = pool
                    .install(|| attention(&qkv, 2, stream, causal))
                    .expect("served");
                let diff = max_diff(ours, burn_reference(&qkv, 2, stream, causal));
                assert!(diff < TOL, "{stream:?} causal={causal}: max |Δ| = {diff}");
            }
        }
    }

    #[test]
    fn attention_declines_a_projection_that_does_not_split_into_heads() {
        assert!(attention(&random([1, 4, 3 * 8]), 3, ORDINARY, false).is_none());
        assert!(attention(&random([1, 4, 10]), 2, ORDINARY, false).is_none());
        assert!(attention(&random([1, 0, 3 * 8]), 2, ORDINARY, false).is_none());
    }
}
