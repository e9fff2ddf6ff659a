//! Pixel-level metrics of one class (METHOD.md §7): P-AUROC, pixel AP and F1-max over all
//! pixels pooled, and the two AUPRO variants over 8-connected ground-truth regions.
//!
//! # How it stays exact in bounded memory
//! Maps are added one image at a time and only what the metrics need is kept: every normal
//! pixel as its `f32` score (4 bytes) and every anomalous pixel as `(f32 score, u32 region)`
//! (8 bytes), plus one `u64` size per region. Both lists are sorted in place, descending,
//! and walked once together ([`super::metrics::walk_thresholds`]): each distinct score is one
//! threshold, exactly as in the reference implementations, with no binning. 10⁸ pixels of
//! which 5 % are anomalous take ≈ 420 MB — less than a fifth of the MVTec reference code,
//! which keeps several 8-byte arrays per pixel plus a sort permutation (measured peak and
//! time: BENCHMARKS.md, "Memory").
//!
//! PRO at a threshold t is `(1/K)·Σ_k c_k(t)/|k|` where `c_k(t)` counts region k's pixels
//! scoring at or above t (`aupro`) or strictly above t (`aupro_fast`); walking the sorted
//! anomalous pixels adds `1/|k|` per pixel passed, so every curve point costs O(1).

use super::components::label_8;
use super::metrics::{BinaryMetrics, Decimator, binary_metrics, sort_descending, walk_thresholds};

/// Thresholds of `aupro_fast` (AnoVL / cflow).
pub const FAST_STEPS: usize = 200;

/// The pixels of one class, accumulated image by image.
#[derive(Debug, Default)]
pub struct PixelScores {
    normal: Vec<f32>,
    anomalous: Vec<(f32, u32)>,
    region_sizes: Vec<u64>,
    min: f32,
    max: f32,
}

/// Pixel metrics of one class; `None` where undefined (no anomalous or no normal pixel).
#[derive(Debug, Clone, Default)]
pub struct PixelMetrics {
    pub binary: BinaryMetrics,
    /// MVTec AD reference AUPRO: exact curve, area up to the FPR limit ÷ the limit.
    pub aupro: Option<f64>,
    /// AnoVL/cflow AUPRO: 200 thresholds, kept FPRs rescaled to [0, 1].
    pub aupro_fast: Option<f64>,
    /// The exact PRO curve (FPR, PRO) for plots, decimated.
    pub pro: Vec<(f64, f64)>,
    pub pixels: u64,
    pub anomalous_pixels: u64,
    pub regions: u64,
}

impl PixelScores {
    pub fn new() -> Self {
        PixelScores {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            ..Default::default()
        }
    }

    /// Adds one image's map and its mask (same `width × height`, row-major). `Err` names
    /// the problem (a NaN or infinite score, or a size mismatch); nothing is added then.
    pub fn add(
        &mut self,
        map: &[f32],
        mask: &[bool],
        width: usize,
        height: usize,
    ) -> Result<(), String> {
        if map.len() != width * height || mask.len() != width * height {
            return Err(format!(
                "map has {} values and mask {} pixels, expected {width}×{height}",
                map.len(),
                mask.len()
            ));
        }
        if let Some(i) = map.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "score {} at row {}, column {} is not a finite number",
                map[i],
                i / width,
                i % width
            ));
        }
        let (labels, count) = label_8(mask, width, height);
        let first = self.region_sizes.len() as u32;
        self.region_sizes
            .extend(std::iter::repeat_n(0, count as usize));
        for (&score, &label) in map.iter().zip(&labels) {
            self.min = self.min.min(score);
            self.max = self.max.max(score);
            if label == 0 {
                self.normal.push(score);
            } else {
                let region = first + label - 1;
                self.region_sizes[region as usize] += 1;
                self.anomalous.push((score, region));
            }
        }
        Ok(())
    }

    /// Every pixel metric, with `fpr_limit` for both AUPRO variants (METHOD.md: 0.3).
    pub fn metrics(mut self, fpr_limit: f64) -> PixelMetrics {
        sort_descending(&mut self.normal, |s| *s);
        sort_descending(&mut self.anomalous, |a| a.0);
        let binary = binary_metrics(&self.anomalous, &self.normal, |a| a.0);
        let (aupro, pro) = self.aupro_exact(fpr_limit);
        PixelMetrics {
            binary,
            aupro,
            aupro_fast: self.aupro_fast(fpr_limit),
            pro,
            pixels: (self.normal.len() + self.anomalous.len()) as u64,
            anomalous_pixels: self.anomalous.len() as u64,
            regions: self.region_sizes.len() as u64,
        }
    }

    fn defined(&self) -> bool {
        !self.normal.is_empty() && !self.region_sizes.is_empty()
    }

    /// The MVTec AD reference: one curve point per distinct score, framed by (0,0) and (1,1);
    /// trapezoids up to `limit`, PRO linearly interpolated at exactly `limit`; ÷ `limit`.
    fn aupro_exact(&self, limit: f64) -> (Option<f64>, Vec<(f64, f64)>) {
        if !self.defined() {
            return (None, Vec::new());
        }
        let (n, k) = (self.normal.len() as f64, self.region_sizes.len() as f64);
        let mut area = Trapezoid::new(limit);
        let mut curve = Decimator::new((0.0, 0.0));
        // Both callbacks of the walk see the covered sum: one adds to it, one reads it.
        let covered = std::cell::Cell::new(0.0f64);
        walk_thresholds(
            &self.anomalous,
            &self.normal,
            |a| a.0,
            |a| covered.set(covered.get() + 1.0 / self.region_sizes[a.1 as usize] as f64),
            |_, fp| {
                let point = (fp as f64 / n, (covered.get() / k).min(1.0));
                area.push(point);
                curve.push(point);
            },
        );
        area.push((1.0, 1.0));
        curve.push((1.0, 1.0));
        (Some(area.total / limit), curve.finish())
    }

    /// AnoVL/cflow: thresholds `min + i·(max−min)/200`, i = 0..199, over all pixels of the
    /// class; a pixel counts when its score is strictly above the threshold. Points with
    /// FPR < `limit` are kept, their FPRs min–max rescaled to [0, 1], and the trapezoid
    /// area taken (sklearn `auc`).
    fn aupro_fast(&self, limit: f64) -> Option<f64> {
        let (lo, hi) = (f64::from(self.min), f64::from(self.max));
        if !self.defined() || hi <= lo {
            return None;
        }
        let (n, k) = (self.normal.len() as f64, self.region_sizes.len() as f64);
        let step = (hi - lo) / FAST_STEPS as f64;
        let (mut i, mut j, mut covered) = (0usize, 0usize, 0.0f64);
        let mut points = Vec::with_capacity(FAST_STEPS);
        for s in (0..FAST_STEPS).rev() {
            let t = lo + s as f64 * step;
            while i < self.anomalous.len() && f64::from(self.anomalous[i].0) > t {
                covered += 1.0 / self.region_sizes[self.anomalous[i].1 as usize] as f64;
                i += 1;
            }
            while j < self.normal.len() && f64::from(self.normal[j]) > t {
                j += 1;
            }
            let fpr = j as f64 / n;
            if fpr < limit {
                points.push((fpr, covered / k));
            }
        }
        let (fmin, fmax) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        if points.len() < 2 || fmax <= fmin {
            return None;
        }
        let area: f64 = points
            .windows(2)
            .map(|w| {
                let x0 = (w[0].0 - fmin) / (fmax - fmin);
                let x1 = (w[1].0 - fmin) / (fmax - fmin);
                (x1 - x0) * (w[0].1 + w[1].1) / 2.0
            })
            .sum();
        Some(area.abs())
    }
}

/// Trapezoid area of a curve given point by point (x non-decreasing, starting at (0,0)) up
/// to `limit`, with y linearly interpolated where the curve crosses `limit`.
struct Trapezoid {
    limit: f64,
    last: (f64, f64),
    total: f64,
    done: bool,
}

impl Trapezoid {
    fn new(limit: f64) -> Self {
        Trapezoid {
            limit,
            last: (0.0, 0.0),
            total: 0.0,
            done: false,
        }
    }

    fn push(&mut self, (x1, y1): (f64, f64)) {
        if self.done {
            return;
        }
        let (x0, y0) = self.last;
        if x1 <= self.limit {
            self.total += (x1 - x0) * (y0 + y1) / 2.0;
            self.last = (x1, y1);
        } else {
            if x0 < self.limit {
                let y = y0 + (y1 - y0) * (self.limit - x0) / (x1 - x0);
                self.total += (self.limit - x0) * (y0 + y) / 2.0;
            }
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_map_has_aupro_one() {
        let mut pixels = PixelScores::new();
        let mask = [false, true, true, false];
        pixels.add(&[0.0, 0.9, 0.8, 0.1], &mask, 2, 2).unwrap();
        let m = pixels.metrics(0.3);
        assert_eq!(m.aupro, Some(1.0));
        assert_eq!(m.binary.auroc, Some(1.0));
        assert_eq!(m.regions, 1);
    }

    #[test]
    fn nan_scores_are_refused() {
        let mut pixels = PixelScores::new();
        let err = pixels
            .add(&[0.0, f32::NAN], &[false, true], 2, 1)
            .unwrap_err();
        assert!(err.contains("row 0, column 1"), "{err}");
    }
}
