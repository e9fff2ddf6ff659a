//! The browser's CPU matrix products: a cache-blocked f32 GEMM on 128-bit lanes (wasm SIMD128),
//! for the linear layers and attention.
//!
//! The kernel keeps a 2 × 16 tile of C in eight lane registers, with four for B's row and one
//! for A's broadcast: few enough that V8 (16 xmm registers on x64, one of them its scratch)
//! never spills them, and one broadcast per four multiply-adds. With relaxed SIMD (Cargo
//! feature `relaxed-simd`) the multiply-adds are fused. Blocking (BLIS order): a depth block of
//! A is packed once for all column panels; each `KC × NR` panel of B (16 KiB) stays in L1
//! while every row panel of A streams past it. The tile shapes tried and the speeds against
//! burn-flex's `gemm` are in BENCHMARKS.md ("Browser, wasm CPU").
//!
//! In the threaded browser build (feature `threads`) a product's rows, and attention's queries,
//! are split across rayon's pool of Web Workers.
//!
//! Natively this module is built only for its tests, on a portable stand-in for the lanes.

use lanes::F4;

/// Rows of A per micro-tile.
const MR: usize = 2;
/// Lanes of four columns per micro-tile: `NR = 4·NV` columns.
const NV: usize = 4;
const NR: usize = 4 * NV;
/// Depth of one packed block.
const KC: usize = 256;

/// A read-only strided matrix: element `(i, j)` at `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether `data` holds every element the view addresses.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// Rows `first..first + count`, as a view.
    fn row_range(self, first: usize, count: usize) -> Option<Self> {
        let data = match count {
            0 => &[],
            _ => self.data.get(first * self.row_stride..)?,
        };
        Some(Self {
            data,
            rows: count,
            ..self
        })
    }
}

/// Whether `c += a·b` is a product of agreeing shapes whose operands lie within their storage
/// (`c` row-major `[a.rows, b.cols]`, rows `ldc` floats apart).
fn agrees(a: &View, b: &View, c: &[f32], ldc: usize) -> bool {
    let (m, n) = (a.rows, b.cols);
    let c_fits = m == 0 || n == 0 || (n <= ldc && (m - 1) * ldc + n <= c.len());
    b.rows == a.cols && a.fits() && b.fits() && c_fits
}

/// `c ← act(c + alpha·a·b)` as [`gemm_acc`], its rows split across the thread pool where the
/// build has one (feature `threads`): each thread packs its own rows of `a` and all of `b`, and
/// applies `act` to its rows while they are in its cache.
pub fn gemm(
    alpha: f32,
    a: View,
    b: View,
    c: &mut [f32],
    ldc: usize,
    act: Option<super::Activation>,
) -> Option<()> {
    if !agrees(&a, &b, c, ldc) {
        return None;
    }
    let (n, macs) = (b.cols, a.rows * a.cols * b.cols);
    split_rows(c, ldc, a.rows, macs, |first, rows, c| {
        gemm_acc(alpha, a.row_range(first, rows)?, b, c, ldc)?;
        if let Some(act) = act {
            for row in c.chunks_mut(ldc).take(rows) {
                super::vector_math::activate(row.get_mut(..n)?, act);
            }
        }
        Some(())
    })
}

/// `c += alpha·a·b`, with `c` row-major `[a.rows, b.cols]`, rows `ldc` floats apart; `None` (and
/// `c` untouched) when the shapes disagree or a view overruns its storage. One thread.
#[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
pub fn gemm_acc(alpha: f32, a: View, b: View, c: &mut [f32], ldc: usize) -> Option<()> {
    if !agrees(&a, &b, c, ldc) {
        return None;
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let row_panels = m.div_ceil(MR);
    // Sized for the deepest block this product has: attention's (k = head width) are 4× smaller.
    let depth = KC.min(k);
    let mut a_pack = vec![[0.0; MR]; row_panels * depth];
    let mut b_pack = vec![[[0.0; 4]; NV]; depth];
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        for (panel, packed) in a_pack.chunks_exact_mut(kc).take(row_panels).enumerate() {
            pack_a(alpha, a, panel * MR, p0, packed);
        }
        for j0 in (0..n).step_by(NR) {
            pack_b(b, p0, j0, &mut b_pack[..kc]);
            for (panel, packed) in a_pack.chunks_exact(kc).take(row_panels).enumerate() {
                let tile = micro_tile(packed, &b_pack[..kc]);
                add_tile(c, ldc, [panel * MR, j0], [m, n], &tile);
            }
        }
    }
    Some(())
}

/// Products smaller than this many multiply-adds run on one thread: a hand-off between Web
/// Workers costs tens of microseconds.
const SPLIT_MIN_MACS: usize = 1 << 20;
/// The fewest rows a thread gets.
const SPLIT_MIN_ROWS: usize = 8;

/// Runs `f(first, rows, chunk)` over rows `0..m` of `c` (rows `ldc` floats apart) in chunks of
/// whole rows, `chunk` starting at row `first`: one chunk per thread of the pool, or all rows
/// at once where the build has none or the work (`macs`) is small.
fn split_rows<F>(c: &mut [f32], ldc: usize, m: usize, macs: usize, f: F) -> Option<()>
where
    F: Fn(usize, usize, &mut [f32]) -> Option<()> + Send + Sync,
{
    let rows = chunk_rows(m, macs);
    let task = |(part, chunk): (usize, &mut [f32])| {
        let first = part * rows;
        f(first, rows.min(m - first), chunk)
    };
    let chunks = m.div_ceil(rows);
    pool::try_for_each_chunk(c, (rows * ldc).max(1), chunks, task)
}

/// Rows per chunk of an `m`-row product of `macs` multiply-adds: one chunk per thread, whole
/// micro-tiles, none under `SPLIT_MIN_ROWS`; all rows in one for small products.
fn chunk_rows(m: usize, macs: usize) -> usize {
    let parts = if macs < SPLIT_MIN_MACS {
        1
    } else {
        pool::threads().min(m / SPLIT_MIN_ROWS).max(1)
    };
    m.div_ceil(parts).next_multiple_of(MR).max(MR)
}

/// The thread pool: rayon's, on Web Workers in the browser's threaded build (and natively,
/// where this module runs for its tests).
#[cfg(any(feature = "threads", feature = "blas"))]
mod pool {
    use rayon::prelude::*;

    pub fn threads() -> usize {
        rayon::current_num_threads()
    }

    /// `task((i, chunk))` for the first `count` chunks of `len` floats of `c`, in parallel.
    pub fn try_for_each_chunk<T>(c: &mut [f32], len: usize, count: usize, task: T) -> Option<()>
    where
        T: Fn((usize, &mut [f32])) -> Option<()> + Send + Sync,
    {
        c.par_chunks_mut(len)
            .take(count)
            .enumerate()
            .try_for_each(task)
    }
}

/// No thread pool: one thread does every chunk.
#[cfg(not(any(feature = "threads", feature = "blas")))]
mod pool {
    pub fn threads() -> usize {
        1
    }

    pub fn try_for_each_chunk<T>(c: &mut [f32], len: usize, count: usize, task: T) -> Option<()>
    where
        T: Fn((usize, &mut [f32])) -> Option<()>,
    {
        c.chunks_mut(len).take(count).enumerate().try_for_each(task)
    }
}

/// Rows `i0..i0 + MR` of `alpha·a` at depths `p0..`, one `[f32; MR]` per depth (zeros past the
/// last row).
fn pack_a(alpha: f32, a: View, i0: usize, p0: usize, packed: &mut [[f32; MR]]) {
    for r in 0..MR {
        for (p, column) in packed.iter_mut().enumerate() {
            column[r] = if i0 + r < a.rows {
                alpha * a.at(i0 + r, p0 + p)
            } else {
                0.0
            };
        }
    }
}

/// Columns `j0..j0 + NR` of `b` at depths `p0..`, one row of NR per depth (zeros past the last
/// column). Whole rows of row-major storage are copied as a block of NR; whole columns of
/// column-major storage (the browser's weights: PyTorch's `[out, in]`, which the loader keeps
/// so that a model loads without transposing every weight) in 4 × 4 lane transposes.
fn pack_b(b: View, p0: usize, j0: usize, packed: &mut [[[f32; 4]; NV]]) {
    let whole = j0 + NR <= b.cols;
    if whole && b.col_stride == 1 && pack_b_rows(b, p0, j0, packed).is_some() {
        return;
    }
    if whole && b.row_stride == 1 && pack_b_columns(b, p0, j0, packed).is_some() {
        return;
    }
    for (p, row) in packed.iter_mut().enumerate() {
        for (j, v) in row.as_flattened_mut().iter_mut().enumerate() {
            *v = if j0 + j < b.cols {
                b.at(p0 + p, j0 + j)
            } else {
                0.0
            };
        }
    }
}

/// [`pack_b`] for row-major `b`: each depth's NR columns are one contiguous run. `None` when a
/// run lies past the storage.
fn pack_b_rows(b: View, p0: usize, j0: usize, packed: &mut [[[f32; 4]; NV]]) -> Option<()> {
    for (p, row) in packed.iter_mut().enumerate() {
        let start = (p0 + p) * b.row_stride + j0;
        row.as_flattened_mut()
            .copy_from_slice(b.data.get(start..start + NR)?);
    }
    Some(())
}

/// [`pack_b`] for column-major `b`: each column's depths are one contiguous run; four columns
/// at four depths are loaded as four lanes and transposed into four packed rows. `None` (and
/// nothing written) when a run lies past the storage.
fn pack_b_columns(b: View, p0: usize, j0: usize, packed: &mut [[[f32; 4]; NV]]) -> Option<()> {
    let kc = packed.len();
    let mut columns = [&[][..]; NR];
    for (j, column) in columns.iter_mut().enumerate() {
        let start = (j0 + j) * b.col_stride + p0;
        *column = b.data.get(start..start + kc)?;
    }
    for (v, quad) in columns.chunks_exact(4).enumerate() {
        let depths: [&[[f32; 4]]; 4] = std::array::from_fn(|c| quad[c].as_chunks::<4>().0);
        let (blocks, _) = packed.as_chunks_mut::<4>();
        for (q, rows) in blocks.iter_mut().enumerate() {
            let lanes = depths.map(|d| F4::load(&d[q]));
            for (row, lane) in rows.iter_mut().zip(F4::transpose(lanes)) {
                lane.store(&mut row[v]);
            }
        }
        for p in kc - kc % 4..kc {
            packed[p][v] = std::array::from_fn(|c| quad[c][p]);
        }
    }
    Some(())
}

/// `Σ_p a[p]ᵀ·b[p]`: one `MR × NR` tile over a packed depth block, in lane registers.
#[inline(always)]
fn micro_tile(a: &[[f32; MR]], b: &[[[f32; 4]; NV]]) -> [[F4; NV]; MR] {
    let mut acc = [[F4::zero(); NV]; MR];
    for (a, b) in a.iter().zip(b) {
        let b = b.each_ref().map(F4::load);
        for (acc, x) in acc.iter_mut().zip(a) {
            let x = F4::splat_load(x);
            for (acc, &b) in acc.iter_mut().zip(&b) {
                *acc = x.mul_add(b, *acc);
            }
        }
    }
    acc
}

/// Adds a tile at `(i0, j0)` into `c`, clipped to the `[m, n]` result.
fn add_tile(
    c: &mut [f32],
    ldc: usize,
    [i0, j0]: [usize; 2],
    [m, n]: [usize; 2],
    tile: &[[F4; NV]; MR],
) {
    let cols = NR.min(n - j0);
    for (i, lanes) in (i0..m).zip(tile) {
        let row = &mut c[i * ldc + j0..i * ldc + j0 + cols];
        let (quads, rest) = row.as_chunks_mut::<4>();
        for (quad, lane) in quads.iter_mut().zip(lanes) {
            lane.add(F4::load(quad)).store(quad);
        }
        if !rest.is_empty() {
            let last = lanes[quads.len()].to_array();
            rest.iter_mut().zip(last).for_each(|(v, x)| *v += x);
        }
    }
}

/// Four f32 lanes: wasm SIMD128.
#[cfg(target_arch = "wasm32")]
mod lanes {
    use core::arch::wasm32::{
        f32x4_add, f32x4_splat, u32x4_shuffle, v128, v128_load, v128_load32_splat, v128_store,
    };

    #[derive(Clone, Copy)]
    pub struct F4(v128);

    impl F4 {
        #[inline(always)]
        pub fn zero() -> Self {
            Self::splat(0.0)
        }

        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self(f32x4_splat(x))
        }

        /// `*x` in every lane, loaded straight into the lanes (`v128.load32_splat`).
        #[inline(always)]
        pub fn splat_load(x: &f32) -> Self {
            // SAFETY: `x` is 4 readable bytes.
            Self(unsafe { v128_load32_splat((x as *const f32).cast()) })
        }

        #[inline(always)]
        pub fn load(q: &[f32; 4]) -> Self {
            // SAFETY: `q` is 16 readable bytes; `v128.load` needs no alignment.
            Self(unsafe { v128_load(q.as_ptr().cast()) })
        }

        #[inline(always)]
        pub fn store(self, q: &mut [f32; 4]) {
            // SAFETY: `q` is 16 writable bytes; `v128.store` needs no alignment.
            unsafe { v128_store(q.as_mut_ptr().cast(), self.0) }
        }

        /// `self·b + c`, rounded twice: SIMD128 has no fused multiply-add.
        #[cfg(not(feature = "relaxed-simd"))]
        #[inline(always)]
        pub fn mul_add(self, b: Self, c: Self) -> Self {
            Self(f32x4_add(core::arch::wasm32::f32x4_mul(self.0, b.0), c.0))
        }

        /// `self·b + c` in one instruction where the machine fuses it (relaxed SIMD: x86 FMA3,
        /// ARM's FMLA), else rounded twice — so results may differ in the last bit by machine.
        #[cfg(feature = "relaxed-simd")]
        #[inline(always)]
        pub fn mul_add(self, b: Self, c: Self) -> Self {
            Self(core::arch::wasm32::f32x4_relaxed_madd(self.0, b.0, c.0))
        }

        #[inline(always)]
        pub fn add(self, b: Self) -> Self {
            Self(f32x4_add(self.0, b.0))
        }

        pub fn to_array(self) -> [f32; 4] {
            let mut q = [0.0; 4];
            self.store(&mut q);
            q
        }

        /// Four rows of four lanes as four columns: two rounds of interleaving shuffles.
        #[inline(always)]
        pub fn transpose([a, b, c, d]: [Self; 4]) -> [Self; 4] {
            let (ab_lo, ab_hi) = (
                u32x4_shuffle::<0, 4, 1, 5>(a.0, b.0),
                u32x4_shuffle::<2, 6, 3, 7>(a.0, b.0),
            );
            let (cd_lo, cd_hi) = (
                u32x4_shuffle::<0, 4, 1, 5>(c.0, d.0),
                u32x4_shuffle::<2, 6, 3, 7>(c.0, d.0),
            );
            [
                Self(u32x4_shuffle::<0, 1, 4, 5>(ab_lo, cd_lo)),
                Self(u32x4_shuffle::<2, 3, 6, 7>(ab_lo, cd_lo)),
                Self(u32x4_shuffle::<0, 1, 4, 5>(ab_hi, cd_hi)),
                Self(u32x4_shuffle::<2, 3, 6, 7>(ab_hi, cd_hi)),
            ]
        }
    }
}

/// Four f32 lanes, portably: the same arithmetic, so the blocking is tested natively.
#[cfg(not(target_arch = "wasm32"))]
mod lanes {
    #[derive(Clone, Copy)]
    pub struct F4([f32; 4]);

    impl F4 {
        pub fn zero() -> Self {
            Self::splat(0.0)
        }

        pub fn splat(x: f32) -> Self {
            Self([x; 4])
        }

        pub fn splat_load(x: &f32) -> Self {
            Self::splat(*x)
        }

        pub fn load(q: &[f32; 4]) -> Self {
            Self(*q)
        }

        pub fn store(self, q: &mut [f32; 4]) {
            *q = self.0;
        }

        pub fn mul_add(self, b: Self, c: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
        }

        pub fn add(self, b: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + b.0[i]))
        }

        pub fn to_array(self) -> [f32; 4] {
            self.0
        }

        pub fn transpose(rows: [Self; 4]) -> [Self; 4] {
            std::array::from_fn(|j| Self(std::array::from_fn(|i| rows[i].0[j])))
        }
    }
}

/// The product in the browser's linear layers: `x·w + b` for plain f32 CPU tensors, `None`
/// for anything else (the caller then uses burn).
#[cfg(any(target_arch = "wasm32", test))]
pub fn affine(
    x: &burn::tensor::Tensor<2>,
    w: &burn::tensor::Tensor<2>,
    b: Option<&burn::tensor::Tensor<1>>,
    act: Option<super::Activation>,
) -> Option<burn::tensor::Tensor<2>> {
    let mut op = super::operands::Affine::new(x, w, b)?;
    let (m, k, n) = (op.m, op.k, op.n);
    let a = View::rows(op.x.as_slice()?, m, k);
    let [rows, cols] = op.stored_shape();
    let stored = View::rows(op.w.as_slice()?, rows, cols);
    let b = if op.w_transposed { stored.t() } else { stored };
    gemm(1.0, a, b, &mut op.out, n, act)?;
    Some(op.into_tensor())
}

/// Multi-head attention in the browser, straight from the fused projection `qkv` (`[batch,
/// tokens, 3·width]`) as `blas::attention` does natively: heads are read and written in place
/// through strided views, with no split, transpose or merge copies. The queries (all items'
/// rows) are split across the thread pool; each thread runs every head on its rows. `None` for
/// anything but a plain f32 CPU tensor of that shape.
#[cfg(any(target_arch = "wasm32", test))]
pub fn attention(
    qkv: &burn::tensor::Tensor<3>,
    heads: usize,
    attend: super::Attend,
    causal: bool,
) -> Option<burn::tensor::Tensor<3>> {
    use super::operands::{FusedHeads, f32_rows, tensor};
    let p = f32_rows(qkv)?;
    let src = p.as_slice::<f32>()?;
    let h = FusedHeads::new(qkv.dims(), heads, attend)?;
    let (n, rows) = (h.tokens, h.batch * h.tokens);
    let mut out = vec![0.0; rows * h.width];
    let macs = rows * n * 2 * h.width;
    split_rows(&mut out, h.width, rows, macs, |first, count, o| {
        let mut scores = vec![0.0; count.min(n) * n];
        let mut row = first;
        while row < first + count {
            // Queries `q0..q0 + span` of one item, into `o` from its row `row - first`.
            let (item, q0) = (row / n, row % n);
            let span = (n - q0).min(first + count - row);
            let o = o.get_mut((row - first) * h.width..)?;
            let queries = (item, q0, span);
            head_attention(src, &h, heads, queries, &mut scores[..span * n], o, causal)?;
            row += span;
        }
        Some(())
    })?;
    Some(tensor(out, [h.batch, n, h.width]))
}

/// Every head's `softmax(q·kᵀ/√d)·v` for `queries` `(item, q0, span)` — queries `q0..q0 +
/// span` of batch item `item` — into `o` (`span` rows of the merged heads, `width` apart).
#[cfg(any(target_arch = "wasm32", test))]
fn head_attention(
    src: &[f32],
    h: &super::operands::FusedHeads,
    heads: usize,
    (item, q0, span): (usize, usize, usize),
    scores: &mut [f32],
    o: &mut [f32],
    causal: bool,
) -> Option<()> {
    let (n, fused) = (h.tokens, 3 * h.width);
    for head in 0..heads {
        // Rows `first..first + count` of one head's part (query, key or value) of this item.
        let part = |at: usize, first: usize, count: usize| {
            let rows = View::rows(src.get(item * n * fused + at + head * h.d..)?, n, h.d);
            View {
                row_stride: fused,
                ..rows
            }
            .row_range(first, count)
        };
        let [q, k, v] = h.at;
        scores.fill(0.0);
        gemm_acc(h.scale, part(q, q0, span)?, part(k, 0, n)?.t(), scores, n)?;
        super::vector_math::softmax_rows(scores, n, q0, causal);
        let o = o.get_mut(head * h.d..)?;
        gemm_acc(1.0, View::rows(scores, span, n), part(v, 0, n)?, o, h.width)?;
    }
    Some(())
}

/// Parity with a plain triple loop in f64, on shapes that exercise every edge of the blocking.
#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn reference(a: View, b: View) -> Vec<f64> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|p| a.at(i, p) as f64 * b.at(p, j) as f64)
                    .sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_triple_loop_across_block_edges() {
        // m, n not multiples of the tile, k across two depth blocks plus a tail, whole column
        // panels with a depth that is not a multiple of the 4 × 4 transposes.
        for (m, k, n) in [
            (1, 1, 1),
            (7, 300, 13),
            (9, 2 * KC + 5, 17),
            (4, KC, 8),
            (3, 70, 40),
        ] {
            let (a_data, b_data) = (values(m * k, 1), values(k * n, 2));
            let a = View::rows(&a_data, m, k);
            // `b` stored transposed (`[n, k]`, the loader's PyTorch layout) and plain.
            let bt_data: Vec<f32> = (0..n * k).map(|x| b_data[(x % k) * n + x / k]).collect();
            for b in [View::rows(&b_data, k, n), View::rows(&bt_data, n, k).t()] {
                let start = values(m * n, 3);
                let mut c = start.clone();
                gemm_acc(1.0, a, b, &mut c, n).expect("shapes agree");
                let want = reference(a, b);
                for ((&got, &want), &start) in c.iter().zip(&want).zip(&start) {
                    let err = (got as f64 - start as f64 - want).abs();
                    assert!(err < 1e-5 * (k as f64).sqrt(), "{m}×{k}×{n}: |Δ| = {err}");
                }
            }
        }
    }

    /// A block of a wider output (leading dimension > n) is written, its neighbours are not.
    #[test]
    fn writes_only_its_block_of_a_wider_output() {
        let (m, k, n, ldc) = (5, 20, 6, 11);
        let (a_data, b_data) = (values(m * k, 4), values(k * n, 5));
        let (a, b) = (View::rows(&a_data, m, k), View::rows(&b_data, k, n));
        let mut c = vec![1.0; m * ldc];
        gemm_acc(1.0, a, b, &mut c, ldc).unwrap();
        let want = reference(a, b);
        for i in 0..m {
            for j in 0..ldc {
                let expect = if j < n { 1.0 + want[i * n + j] } else { 1.0 };
                assert!((c[i * ldc + j] as f64 - expect).abs() < 1e-5, "({i}, {j})");
            }
        }
    }

    /// The tensor entry points against burn's own matmul and attention (the path every other
    /// device takes), as `blas.rs` is tested natively.
    #[test]
    fn affine_and_attention_match_burn() {
        use super::super::operands::test_reference::{ORDINARY, VALUE_VALUE, burn_reference};
        use burn::tensor::{Device, Distribution, Tensor};
        let random = |shape: [usize; 3]| {
            Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &Device::flex())
        };
        let max_diff = |a: Tensor<3>, b: Tensor<3>| -> f32 { (a - b).abs().max().into_scalar() };

        let (x, w, b) = (
            random([1, 9, 300]).squeeze(),
            random([1, 300, 21]).squeeze(),
            random([1, 1, 21]),
        );
        let b: Tensor<1> = b.reshape([21]);
        let want: Tensor<2> = x.clone().matmul(w.clone()) + b.clone().unsqueeze_dim(0);
        let got = affine(&x, &w, Some(&b), None).expect("CPU f32 operands take this path");
        assert!(max_diff(got.unsqueeze(), want.clone().unsqueeze()) < 1e-4);
        let act = super::super::Activation::Gelu;
        let got = affine(&x, &w, Some(&b), Some(act)).expect("served");
        let want = burn::tensor::activation::gelu(want);
        assert!(max_diff(got.unsqueeze(), want.unsqueeze()) < 1e-4);

        let heads = 3;
        let qkv = random([2, 7, 3 * heads * 5]);
        for stream in [ORDINARY, VALUE_VALUE] {
            for causal in [false, true] {
                let want = burn_reference(&qkv, heads, stream, causal);
                let got = attention(&qkv, heads, stream, causal).expect("served");
                let diff = max_diff(got, want);
                assert!(diff < 1e-5, "{stream:?}, causal {causal}: max |Δ| = {diff}");
            }
        }
        assert!(attention(&random([1, 4, 10]), 2, ORDINARY, false).is_none());
    }

    /// Products large enough to be split across a pool of three threads: each chunk of rows
    /// equals the one-thread product bit for bit, and attention's chunks, which straddle batch
    /// items, mask causally from their own first query.
    #[cfg(feature = "blas")]
    #[test]
    fn split_products_equal_the_whole() {
        use super::super::operands::test_reference::{ORDINARY, burn_reference};
        use burn::tensor::{Device, Distribution, Tensor};
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            let (m, k, n) = (37, 300, 100);
            assert_eq!(chunk_rows(m, m * k * n), 14, "three chunks of whole tiles");
            let (a_data, b_data) = (values(m * k, 7), values(k * n, 8));
            let (a, b) = (View::rows(&a_data, m, k), View::rows(&b_data, k, n));
            let (mut split, mut whole) = (vec![0.5; m * n], vec![0.5; m * n]);
            gemm(1.0, a, b, &mut split, n, None).unwrap();
            gemm_acc(1.0, a, b, &mut whole, n).unwrap();
            assert!(
                split == whole,
                "split rows differ from the one-thread product"
            );

            // 2 items × 77 tokens: chunks of 52 rows, the second from item 0's query 52 to
            // item 1's query 26.
            let qkv = Tensor::<3>::random(
                [2, 77, 3 * 96],
                Distribution::Normal(0.0, 1.0),
                &Device::flex(),
            );
            assert_eq!(chunk_rows(154, 154 * 77 * 2 * 96), 52);
            for causal in [false, true] {
                let want = burn_reference(&qkv, 3, ORDINARY, causal);
                let got = attention(&qkv, 3, ORDINARY, causal).expect("served");
                let diff: f32 = (got - want).abs().max().into_scalar();
                assert!(diff < 1e-5, "causal {causal}: max |Δ| = {diff}");
            }
        });
    }

    #[test]
    fn refuses_disagreeing_shapes_and_overrunning_views() {
        let data = values(12, 6);
        let mut c = vec![0.0; 16];
        let a = View::rows(&data, 3, 4);
        assert!(
            gemm_acc(1.0, a, View::rows(&data, 3, 4), &mut c, 4).is_none(),
            "k mismatch"
        );
        let short = View::rows(&data, 4, 4);
        assert!(
            gemm_acc(1.0, a, short, &mut c, 4).is_none(),
            "view past its data"
        );
        assert!(
            gemm_acc(1.0, a, View::rows(&data, 4, 3), &mut c[..8], 3).is_none(),
            "small output"
        );
        assert!(
            c.iter().all(|&v| v == 0.0),
            "refused products write nothing"
        );
    }
}
