//! Visual references (METHOD.md §5): how far each patch of an image is from its nearest
//! patch in other images of the same object — a partner (the dual-image pair), the rest of a
//! batch (set), or known-good images the user supplies (few-shot). All three use one rule.
//!
//! Everything here is burn tensor code, so it runs on whatever device the features live on.
//! It avoids operations that burn's GPU backends only emulate by reading the tensor back to
//! the host (`sort`, `topk`): a synchronous read is impossible on WebGPU in the browser.
//!
//! ASSUMPTIONS (METHOD.md is silent on these; each is the choice made here):
//! - r×r neighbourhood averaging (r = 3) averages the *raw* tokens of the 3×3 window and
//!   normalizes afterwards; the grid is extended by replicate (edge) padding, so border patches
//!   average over copies of their edge neighbours rather than over fewer patches or zeros.
//! - The distance is computed as `¼·‖a − b‖²` to the most cosine-similar reference token,
//!   which equals `½·(1 − cos)` for unit vectors but is exactly 0 for identical tokens.
//! - `⌈0.3·k⌉` is computed in integers, as the ceiling of 3k/10, so k = 10 keeps 3 (not 4 from
//!   `0.3 * 10.0 = 3.0000000000000004`).

use burn::tensor::ops::PadMode;
use burn::tensor::{Int, Tensor};

use super::config::Pairing;
use super::text_score::unit_rows;
use crate::clip::VisionOutput;
use crate::clip::block::affine;
use crate::{Error, Result};

/// The matching features of one image: layer 0 is the V-V patch tokens, then the tapped
/// ordinary-stream blocks in the order they were requested. Each tensor is `[N, C_l]`
/// (N patches in row-major grid order), every token L2-normalized.
#[derive(Debug, Clone)]
pub struct PatchFeatures {
    pub layers: Vec<Tensor<2>>,
}

/// Neighbourhood sizes accepted by `--neighbourhood`.
const NEIGHBOURHOODS: [usize; 2] = [1, 3];

/// Matching features of image `image` of `out` (METHOD.md §5), with optional r×r averaging
/// of raw tokens over the patch grid (r = 1: none; r = 3: replicate-padded 3×3 mean) before
/// each token is L2-normalized.
pub fn patch_features(
    out: &VisionOutput,
    image: usize,
    neighbourhood: usize,
) -> Result<PatchFeatures> {
    if !NEIGHBOURHOODS.contains(&neighbourhood) {
        return Err(Error::Option {
            option: "neighbourhood".into(),
            message: format!("accepted: 1 (no averaging) or 3 (3×3 patches), got {neighbourhood}"),
        });
    }
    let batch = out.vv_patch_tokens.dims()[0];
    if image >= batch {
        return Err(Error::Model(format!(
            "image {image} asked of a batch of {batch} images"
        )));
    }
    let [rows, cols] = out.grid;
    std::iter::once(&out.vv_patch_tokens)
        .chain(&out.taps)
        .map(|tokens| {
            let [_, n, channels] = tokens.dims();
            if n != rows * cols {
                return Err(Error::Model(format!(
                    "{n} patch tokens do not fill the {rows}×{cols} patch grid"
                )));
            }
            let one = tokens.clone().narrow(0, image, 1).reshape([n, channels]);
            let averaged = match neighbourhood {
                3 => box_average_3x3(one, [rows, cols]),
                _ => one,
            };
            Ok(unit_rows(averaged))
        })
        .collect::<Result<Vec<_>>>()
        .map(|layers| PatchFeatures { layers })
}

/// Mean over each patch's 3×3 grid window, borders replicate-padded: `[N, C]` → `[N, C]`.
fn box_average_3x3(tokens: Tensor<2>, [rows, cols]: [usize; 2]) -> Tensor<2> {
    let [n, channels] = tokens.dims();
    let grid = tokens.transpose().reshape([channels, rows, cols]);
    let padded = grid.pad((1, 1, 1, 1), PadMode::Edge);
    let window = |dy: usize, dx: usize| {
        padded
            .clone()
            .slice([0..channels, dy..dy + rows, dx..dx + cols])
    };
    let mut sum = window(0, 0);
    for (dy, dx) in (0..3).flat_map(|dy| (0..3).map(move |dx| (dy, dx))).skip(1) {
        sum = sum + window(dy, dx);
    }
    sum.div_scalar(9.0).reshape([channels, n]).transpose()
}

/// `d_B(i) = ½·(1 − max_j cos(f_A(i), f_B(j)))` for every patch i of `a` against reference
/// `b`, averaged over layers: `[N_a]`.
///
/// Cosines (one `[N_a, N_b]` matmul per layer, dropped before the next layer) only pick the
/// nearest reference token j*; the distance itself is `¼·‖a_i − b_j*‖²`, the same number for
/// unit vectors, better conditioned near 0 and exactly 0 when `b` holds a token identical to
/// `a_i`. (Should rounding make a near-duplicate token win the argmax over an identical one,
/// the result is that near-duplicate's distance, itself within rounding of 0.)
///
/// # Panics
/// If `a` and `b` differ in layer count or channels per layer (features of one model and
/// one `--ref-layers` setting always agree; [`visual_scores`] checks before calling).
pub fn distance_to(a: &PatchFeatures, b: &PatchFeatures) -> Tensor<1> {
    assert_eq!(
        a.layers.len(),
        b.layers.len(),
        "feature layer counts differ"
    );
    let total = a
        .layers
        .iter()
        .zip(&b.layers)
        .map(|(fa, fb)| nearest_distance(fa.clone(), fb.clone()))
        .reduce(|acc, d| acc + d)
        .expect("at least the V-V layer");
    total.div_scalar(a.layers.len() as f64)
}

/// One layer of [`distance_to`]: `[N_a, C]` against `[N_b, C]` → `[N_a]`. The cosines are the
/// CPU path's own product where it serves (`block::affine`: OpenBLAS, or our SIMD128 GEMM in
/// the browser, packing `b` as it is stored); burn's gemm packed the transposed view slowly.
fn nearest_distance(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let n = a.dims()[0];
    let nearest = affine(a.clone(), b.clone().transpose(), None, None)
        .argmax(1)
        .reshape([n]);
    (a - b.select(0, nearest))
        .square()
        .sum_dim(1)
        .reshape([n])
        .mul_scalar(0.25)
}

/// How many of k references' distances the interval mean keeps: `⌈0.3·k⌉`.
pub fn interval_count(k: usize) -> usize {
    (3 * k).div_ceil(10)
}

/// The visual score of every patch of `a` against `refs` (METHOD.md §5): with one reference
/// its distance [`distance_to`]; with k ≥ 2 the mean of the ⌈0.3·k⌉ smallest distances over
/// the references (MuSc's interval averaging, robust to a defect some references share).
///
/// The result does not depend on the order of `refs`, bit for bit: the smallest distances
/// are summed in ascending order.
///
/// Memory: references are matched one at a time, so at most one `[N, N]` similarity matrix
/// (of one layer) exists at once; what is kept across references is only the `[k, N]`
/// distances. Scoring every image of a set of n images against the others this way keeps
/// O(n·N) numbers per image instead of the O(n²·N²) of all similarities at once.
pub fn visual_scores(a: &PatchFeatures, refs: &[&PatchFeatures]) -> Result<Tensor<1>> {
    if refs.is_empty() {
        return Err(Error::Model(
            "visual scores need at least one reference image".into(),
        ));
    }
    for r in refs {
        check_compatible(a, r)?;
    }
    let distances: Vec<Tensor<1>> = refs.iter().map(|r| distance_to(a, r)).collect();
    if distances.len() == 1 {
        return Ok(distances.into_iter().next().expect("one reference"));
    }
    let k = distances.len();
    Ok(mean_of_smallest(
        Tensor::stack(distances, 0),
        interval_count(k),
    ))
}

/// Per column of `d` (`[k, N]`), the mean of its `m` smallest values, summed smallest first.
///
/// m rounds of "take the column minimum, then retire one entry holding it" instead of a
/// sort: burn's GPU backends have no sort kernel. Tied entries are equal, so which of them
/// is retired cannot change the result.
fn mean_of_smallest(d: Tensor<2>, m: usize) -> Tensor<1> {
    let [k, n] = d.dims();
    let device = d.device();
    let rows = Tensor::<1, Int>::arange(0..k as i64, &device)
        .reshape([k, 1])
        .expand([k, n]);
    let mut rest = d;
    let mut sum: Option<Tensor<2>> = None;
    for _ in 0..m {
        let lowest = rest.clone().argmin(0);
        let value = rest.clone().gather(0, lowest.clone());
        let retired = rows.clone().equal(lowest.expand([k, n]));
        rest = rest.mask_fill(retired, f32::INFINITY);
        sum = Some(match sum {
            Some(s) => s + value,
            None => value,
        });
    }
    sum.expect("m ≥ 1").reshape([n]).div_scalar(m as f64)
}

fn check_compatible(a: &PatchFeatures, b: &PatchFeatures) -> Result<()> {
    let channels = |f: &PatchFeatures| f.layers.iter().map(|l| l.dims()[1]).collect::<Vec<_>>();
    if channels(a) != channels(b) {
        return Err(Error::Model(format!(
            "an image and its reference have different features (channels per layer {:?} vs \
             {:?}); both must come from one model with the same ‹ref_layers›",
            channels(a),
            channels(b)
        )));
    }
    Ok(())
}

/// The references of every image of a batch of `n` (METHOD.md §5), as indices into the
/// batch: `Pairs` pairs consecutive images (0↔1, 2↔3, …; the paper's setting), `Set` gives
/// each image all the others. Both are symmetric: A references B exactly when B references A.
pub fn set_references(n: usize, pairing: Pairing) -> Result<Vec<Vec<usize>>> {
    let option = || "pairing".to_string();
    match pairing {
        Pairing::Pairs if n < 2 => Err(Error::Option {
            option: option(),
            message: format!(
                "a pair needs two images, got {n}; give a second image of the same object"
            ),
        }),
        Pairing::Pairs if n % 2 == 1 => Err(Error::Option {
            option: option(),
            message: format!(
                "‹pairing› pairs needs an even number of images, got {n}; use ‹pairing› set \
                 (every other image is a reference) or add an image"
            ),
        }),
        Pairing::Pairs => Ok((0..n).map(|i| vec![i ^ 1]).collect()),
        Pairing::Set if n < 2 => Err(Error::Option {
            option: option(),
            message: format!(
                "‹pairing› set needs at least two images, got {n}; give more images of the \
                 same object"
            ),
        }),
        Pairing::Set => Ok((0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn features(rows: &[&[f32]], device: &Device) -> PatchFeatures {
        let c = rows[0].len();
        let flat: Vec<f32> = rows.concat();
        PatchFeatures {
            layers: vec![Tensor::<2>::from_data(
                TensorData::new(flat, [rows.len(), c]),
                device,
            )],
        }
    }

    fn vec1(t: Tensor<1>) -> Vec<f32> {
        crate::backend::read_back(t, "test values").unwrap()
    }

    #[test]
    fn interval_count_is_ceil_of_three_tenths() {
        let want = [
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 2),
            (5, 2),
            (7, 3),
            (10, 3),
            (11, 4),
            (20, 6),
        ];
        for (k, m) in want {
            assert_eq!(interval_count(k), m, "k = {k}");
        }
    }

    #[test]
    fn mean_of_smallest_handles_ties() {
        let device = Device::flex();
        // Columns: ties at the minimum, ties across the cut, all equal.
        let d = Tensor::<2>::from_data(
            [
                [0.5, 0.3, 0.2],
                [0.1, 0.3, 0.2],
                [0.1, 0.9, 0.2],
                [0.7, 0.3, 0.2],
            ],
            &device,
        );
        let got = vec1(mean_of_smallest(d, 2));
        assert_eq!(got, vec![0.1, 0.3, 0.2]);
    }

    #[test]
    fn distance_is_exactly_zero_for_identical_tokens() {
        let device = Device::flex();
        let a = features(&[&[0.6, 0.8], &[1.0, 0.0]], &device);
        assert_eq!(vec1(distance_to(&a, &a)), vec![0.0, 0.0]);
    }

    #[test]
    fn pairs_and_sets_are_symmetric() {
        let pairs = set_references(6, Pairing::Pairs).unwrap();
        assert_eq!(
            pairs,
            vec![vec![1], vec![0], vec![3], vec![2], vec![5], vec![4]]
        );
        let set = set_references(4, Pairing::Set).unwrap();
        assert_eq!(set[2], vec![0, 1, 3]);
        for refs in [pairs, set] {
            for (i, r) in refs.iter().enumerate() {
                for &j in r {
                    assert!(refs[j].contains(&i), "{i} → {j} but not back");
                }
            }
        }
    }
}
