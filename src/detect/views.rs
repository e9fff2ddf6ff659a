//! Test-time views for the image score (METHOD.md §4): the image score is the mean of
//! `p_abn` over views of the normalized input, 1 view (fast) or AnoVL's 22 (faithful).
//!
//! The 22 views are those of AnoVL's official test code (`utils.py`, function `aug`), in the
//! order it builds them before shuffling them (the order does not change the mean):
//! the original; 8 rotations by −π/4, −3π/16, −π/8, −π/16, π/16, π/8, 3π/16, π/4; 8
//! translations by (0.2, 0.2), (−0.2, 0.2), (−0.2, −0.2), (0.2, −0.2), (0.1, 0.1), (−0.1, 0.1),
//! (−0.1, −0.1), (0.1, −0.1); the horizontal flip; grayscale; 1, 2 and 3 quarter turns.
//!
//! Semantics, matched to what AnoVL calls:
//! - Rotations and translations are torch `F.affine_grid(θ)` + `F.grid_sample(mode='bilinear',
//!   padding_mode='reflection', align_corners=True)` with θ = `[[cos a, −sin a, 0], [sin a,
//!   cos a, 0]]` or `[[1, 0, dx], [0, 1, dy]]` (entries rounded to f32, as AnoVL's
//!   `.type(torch.FloatTensor)` does). The view at grid point (x, y) ∈ [−1, 1]² samples the
//!   image at θ·(x, y, 1): a positive angle turns the content counter-clockwise as displayed
//!   (y pointing down), a positive dx moves it left.
//! - Quarter turns: AnoVL uses kornia's `rotate(±90°·k, padding_mode='reflection')`, a bilinear
//!   warp whose f32 matrix is off by ~4e-8 from an exact quarter turn (its result differs from
//!   the exact one by ~1e-5); we take the exact turn, `torch.rot90(x, k, dims=(H, W))`
//!   (counter-clockwise as displayed, kornia's sense for positive angles).
//! - Horizontal flip: kornia `hflip`, columns reversed.
//! - Grayscale: kornia `rgb_to_grayscale` on the *normalized* tensor, `0.299·R + 0.587·G +
//!   0.114·B`, repeated to 3 channels.

use std::f64::consts::PI;

use crate::{Error, Result};

/// One test-time view of a square normalized CHW image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    Original,
    /// Rotation about the centre by `radians` (positive: counter-clockwise as displayed),
    /// reflection padding.
    Rotate {
        radians: f64,
    },
    /// Shift by `(dx, dy)` in [−1, 1] grid units: the view at (x, y) shows the image at
    /// (x + dx, y + dy); reflection padding.
    Translate {
        dx: f32,
        dy: f32,
    },
    FlipHorizontal,
    /// Luma of the normalized channels, repeated to 3 channels.
    Grayscale,
    /// `k` exact quarter turns, counter-clockwise as displayed.
    QuarterTurns(u8),
}

/// AnoVL's 22 views, in the order of its code (see the module docs).
pub const ANOVL_VIEWS: [View; 22] = [
    View::Original,
    View::Rotate { radians: -PI / 4.0 },
    View::Rotate {
        radians: -3.0 * PI / 16.0,
    },
    View::Rotate { radians: -PI / 8.0 },
    View::Rotate {
        radians: -PI / 16.0,
    },
    View::Rotate { radians: PI / 16.0 },
    View::Rotate { radians: PI / 8.0 },
    View::Rotate {
        radians: 3.0 * PI / 16.0,
    },
    View::Rotate { radians: PI / 4.0 },
    View::Translate { dx: 0.2, dy: 0.2 },
    View::Translate { dx: -0.2, dy: 0.2 },
    View::Translate { dx: -0.2, dy: -0.2 },
    View::Translate { dx: 0.2, dy: -0.2 },
    View::Translate { dx: 0.1, dy: 0.1 },
    View::Translate { dx: -0.1, dy: 0.1 },
    View::Translate { dx: -0.1, dy: -0.1 },
    View::Translate { dx: 0.1, dy: -0.1 },
    View::FlipHorizontal,
    View::Grayscale,
    View::QuarterTurns(1),
    View::QuarterTurns(2),
    View::QuarterTurns(3),
];

/// The view counts `--views` accepts.
pub const VIEW_COUNTS: [usize; 2] = [1, 22];

/// The views behind a `--views` count: 1 → the original alone, 22 → [`ANOVL_VIEWS`].
pub fn view_set(count: usize) -> Result<&'static [View]> {
    match count {
        1 => Ok(&ANOVL_VIEWS[..1]),
        22 => Ok(&ANOVL_VIEWS),
        other => Err(Error::Option {
            option: "views".into(),
            message: format!(
                "{other} views are not available; accepted: 1 (the image alone, fast) or 22 \
                 (AnoVL's test-time views: rotations, shifts, flip, grayscale, quarter turns)"
            ),
        }),
    }
}

/// The `count` views of a normalized CHW image `3 × size × size`, each the same shape, in
/// [`ANOVL_VIEWS`] order. `count` is 1 (`[original]`) or 22; anything else is an
/// [`Error::Option`] naming `views`.
pub fn views(pixels: &[f32], size: usize, count: usize) -> Result<Vec<Vec<f32>>> {
    let set = view_set(count)?;
    if pixels.len() != 3 * size * size {
        return Err(Error::Model(format!(
            "views: the image has {} values; expected 3×{size}×{size}",
            pixels.len()
        )));
    }
    Ok(set.iter().map(|v| v.apply(pixels, size)).collect())
}

impl View {
    /// This view of `pixels` (`3 × size × size`, normalized CHW).
    ///
    /// # Panics
    /// If `pixels.len() != 3 * size * size` ([`views`] checks it for callers).
    pub fn apply(&self, pixels: &[f32], size: usize) -> Vec<f32> {
        assert_eq!(
            pixels.len(),
            3 * size * size,
            "View::apply: not 3 × size × size"
        );
        match *self {
            View::Original => pixels.to_vec(),
            View::Rotate { radians } => {
                let (cos, sin) = (radians.cos() as f32, radians.sin() as f32);
                warp_affine(pixels, size, [[cos, -sin, 0.0], [sin, cos, 0.0]])
            }
            View::Translate { dx, dy } => {
                warp_affine(pixels, size, [[1.0, 0.0, dx], [0.0, 1.0, dy]])
            }
            View::FlipHorizontal => remap(pixels, size, |y, x| (y, size - 1 - x)),
            View::Grayscale => grayscale(pixels, size),
            View::QuarterTurns(k) => match k % 4 {
                0 => pixels.to_vec(),
                1 => remap(pixels, size, |y, x| (x, size - 1 - y)),
                2 => remap(pixels, size, |y, x| (size - 1 - y, size - 1 - x)),
                _ => remap(pixels, size, |y, x| (size - 1 - x, y)),
            },
        }
    }
}

/// Every output pixel `(y, x)` of every channel copied from input pixel `from(y, x)`.
fn remap(pixels: &[f32], size: usize, from: impl Fn(usize, usize) -> (usize, usize)) -> Vec<f32> {
    let mut out = Vec::with_capacity(pixels.len());
    for plane in pixels.chunks_exact(size * size) {
        for y in 0..size {
            for x in 0..size {
                let (sy, sx) = from(y, x);
                out.push(plane[sy * size + sx]);
            }
        }
    }
    out
}

/// kornia's luma weights for float images (ITU-R BT.601).
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

fn grayscale(pixels: &[f32], size: usize) -> Vec<f32> {
    let plane = size * size;
    let (r, rest) = pixels.split_at(plane);
    let (g, b) = rest.split_at(plane);
    // Same association as kornia: (R·wr + G·wg) + B·wb.
    let luma: Vec<f32> = (0..plane)
        .map(|i| r[i] * LUMA[0] + g[i] * LUMA[1] + b[i] * LUMA[2])
        .collect();
    luma.repeat(3)
}

/// torch `F.grid_sample(x, F.affine_grid(θ, x.size(), align_corners=True), mode='bilinear',
/// padding_mode='reflection', align_corners=True)` on a square CHW image, in f32 with torch's
/// CPU formulas (so results agree to float rounding).
fn warp_affine(pixels: &[f32], size: usize, theta: [[f32; 3]; 2]) -> Vec<f32> {
    let base = linspace_neg_one_to_one(size);
    let plane = size * size;
    // The sampling taps depend only on the output position: compute them once for all channels.
    let taps: Vec<[(usize, f32); 4]> = (0..plane)
        .map(|i| {
            let (x, y) = (base[i % size], base[i / size]);
            let gx = theta[0][0] * x + theta[0][1] * y + theta[0][2];
            let gy = theta[1][0] * x + theta[1][1] * y + theta[1][2];
            bilinear_taps(source_index(gx, size), source_index(gy, size), size)
        })
        .collect();
    let mut out = Vec::with_capacity(pixels.len());
    for channel in pixels.chunks_exact(plane) {
        out.extend(taps.iter().map(|t| {
            // torch's order: nw + ne + sw + se.
            t.iter().fold(0.0f32, |acc, &(at, w)| acc + channel[at] * w)
        }));
    }
    out
}

/// `torch.linspace(-1, 1, n)` in f32, computed as torch does (from both ends towards the middle).
fn linspace_neg_one_to_one(n: usize) -> Vec<f32> {
    if n <= 1 {
        return vec![0.0; n]; // affine_grid's base for a single step
    }
    let step = 2.0f32 / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                -1.0 + step * i as f32
            } else {
                1.0 - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

/// Grid coordinate in [−1, 1] → pixel coordinate (align_corners = true), reflected about the
/// outermost pixel centres, then clamped into `[0, size − 1]` (torch's `compute_coordinates`
/// for `padding_mode='reflection'`).
fn source_index(coord: f32, size: usize) -> f32 {
    let max = (size - 1) as f32;
    let unnormalized = (coord + 1.0) * (max / 2.0);
    let twice_span = max * 2.0;
    if twice_span == 0.0 {
        return 0.0;
    }
    let magnitude = unnormalized.abs();
    let extra = magnitude - (magnitude / twice_span).trunc() * twice_span;
    extra.min(twice_span - extra).clamp(0.0, max)
}

/// The four neighbours of pixel coordinate `(x, y)` as (flat index, weight), in torch's order
/// nw, ne, sw, se. A neighbour past the last row or column (only reached with weight 0,
/// since coordinates are clamped) is pointed at the corner pixel with weight 0.
fn bilinear_taps(x: f32, y: f32, size: usize) -> [(usize, f32); 4] {
    let (x0, y0) = (x.floor(), y.floor());
    let (w, n) = (x - x0, y - y0);
    let (e, s) = (1.0 - w, 1.0 - n);
    let (x0, y0) = (x0 as usize, y0 as usize);
    let tap = |xi: usize, yi: usize, weight: f32| {
        if xi < size && yi < size {
            (yi * size + xi, weight)
        } else {
            (0, 0.0)
        }
    };
    [
        tap(x0, y0, s * e),
        tap(x0 + 1, y0, s * w),
        tap(x0, y0 + 1, n * e),
        tap(x0 + 1, y0 + 1, n * w),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×s×s image whose every value is distinct.
    fn ramp(size: usize) -> Vec<f32> {
        (0..3 * size * size)
            .map(|i| i as f32 * 0.01 - 1.0)
            .collect()
    }

    #[test]
    fn twenty_two_views_in_anovl_order() {
        let got = views(&ramp(6), 6, 22).unwrap();
        assert_eq!(got.len(), 22);
        assert!(got.iter().all(|v| v.len() == 3 * 36));
        assert_eq!(got[0], ramp(6));
        let kinds: Vec<&str> = ANOVL_VIEWS
            .iter()
            .map(|v| match v {
                View::Original => "original",
                View::Rotate { .. } => "rotate",
                View::Translate { .. } => "translate",
                View::FlipHorizontal => "flip",
                View::Grayscale => "gray",
                View::QuarterTurns(_) => "quarter",
            })
            .collect();
        let mut want = vec!["original"];
        want.extend(["rotate"; 8]);
        want.extend(["translate"; 8]);
        want.extend(["flip", "gray", "quarter", "quarter", "quarter"]);
        assert_eq!(kinds, want);
        let angles: Vec<f64> = ANOVL_VIEWS[1..9]
            .iter()
            .map(|v| match v {
                View::Rotate { radians } => radians * 16.0 / PI,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(angles, [-4.0, -3.0, -2.0, -1.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            ANOVL_VIEWS[19..],
            [
                View::QuarterTurns(1),
                View::QuarterTurns(2),
                View::QuarterTurns(3)
            ]
        );
    }

    #[test]
    fn one_view_is_the_original() {
        assert_eq!(views(&ramp(4), 4, 1).unwrap(), [ramp(4)]);
    }

    #[test]
    fn other_counts_are_refused_naming_the_option() {
        for bad in [0, 2, 21, 23] {
            let err = views(&ramp(4), 4, bad).unwrap_err();
            let Error::Option { option, message } = &err else {
                panic!("{err}")
            };
            assert_eq!(option, "views");
            assert!(message.contains("1") && message.contains("22"), "{message}");
        }
        assert!(matches!(views(&[0.0; 5], 4, 22), Err(Error::Model(_))));
    }

    #[test]
    fn quarter_turn_is_counter_clockwise_and_matches_the_warp() {
        // One channel plane [[a, b], [c, d]] turned counter-clockwise is [[b, d], [a, c]].
        let px: Vec<f32> = [1.0, 2.0, 3.0, 4.0].repeat(3);
        assert_eq!(
            View::QuarterTurns(1).apply(&px, 2)[..4],
            [2.0, 4.0, 1.0, 3.0]
        );
        assert_eq!(
            View::QuarterTurns(2).apply(&px, 2)[..4],
            [4.0, 3.0, 2.0, 1.0]
        );
        assert_eq!(
            View::QuarterTurns(3).apply(&px, 2)[..4],
            [3.0, 1.0, 4.0, 2.0]
        );
        // The affine rotation by +π/2 turns the same way (up to float rounding).
        let x = ramp(7);
        let warped = View::Rotate { radians: PI / 2.0 }.apply(&x, 7);
        let turned = View::QuarterTurns(1).apply(&x, 7);
        let err = warped
            .iter()
            .zip(&turned)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-5, "{err}");
    }

    #[test]
    fn translation_samples_the_shifted_point_with_reflection() {
        // size 5: grid step 0.5, so dx = 0.5 is exactly one pixel: view(x) = image(x + 1),
        // and the last column reflects about the border to image(size − 2).
        let x = ramp(5);
        let v = View::Translate { dx: 0.5, dy: 0.0 }.apply(&x, 5);
        for row in 0..5 {
            for col in 0..5 {
                let src = if col < 4 { col + 1 } else { 3 };
                assert!((v[row * 5 + col] - x[row * 5 + src]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn flip_and_grayscale() {
        let px: Vec<f32> = [1.0, 2.0, 3.0, 4.0].repeat(3);
        assert_eq!(
            View::FlipHorizontal.apply(&px, 2)[..4],
            [2.0, 1.0, 4.0, 3.0]
        );
        let rgb: Vec<f32> = [vec![1.0; 4], vec![0.0; 4], vec![-1.0; 4]].concat();
        let g = View::Grayscale.apply(&rgb, 2);
        assert!(
            g.iter().all(|v| (v - (0.299 - 0.114)).abs() < 1e-6),
            "{g:?}"
        );
    }

    #[test]
    fn linspace_is_symmetric_and_exact_at_the_ends() {
        let l = linspace_neg_one_to_one(32);
        assert_eq!((l[0], l[31]), (-1.0, 1.0));
        assert!(l.iter().zip(l.iter().rev()).all(|(a, b)| a == &-b));
    }
}
