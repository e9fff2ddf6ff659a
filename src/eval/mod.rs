//! Evaluation: the metrics of METHOD.md §7 per class and their unweighted mean, over the
//! datasets of §8 (MVTec AD, VisA, BMAD, a generic folder layout).
//!
//! The metrics ([`metrics`], [`aupro`], [`components`]) are pure and build everywhere; the
//! parts that read datasets and maps and write reports are native-only (they need files).
//!
//! Evaluation resolution: each image is evaluated on the grid of its anomaly map (the
//! detector's S×S, or S×W′ for wide images), or on `eval_size` (short side; the map's aspect
//! kept) when given. Maps are resized to that grid like the detector's own maps (bilinear,
//! align_corners = true); masks are resized with nearest-neighbour sampling at pixel centres,
//! so they stay binary. No smoothing is applied before the metrics.

pub mod aupro;
pub mod components;
pub mod decisions;
pub mod metrics;

#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod datasets;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod maps;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod plot;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod report;

use aupro::{PixelMetrics, PixelScores};
use metrics::{BinaryMetrics, image_metrics};

/// What one class's images add up to, image by image.
#[derive(Debug)]
pub struct ClassAccumulator {
    scores: Vec<f32>,
    labels: Vec<bool>,
    /// `None` for sets with image labels only.
    pixels: Option<PixelScores>,
}

/// The metrics of one class.
#[derive(Debug, Clone)]
pub struct ClassMetrics {
    pub image: BinaryMetrics,
    pub pixel: Option<PixelMetrics>,
    pub images: usize,
    pub anomalous_images: usize,
}

impl ClassAccumulator {
    /// `pixel_level`: whether the class has ground-truth masks.
    pub fn new(pixel_level: bool) -> Self {
        ClassAccumulator {
            scores: Vec::new(),
            labels: Vec::new(),
            pixels: pixel_level.then(PixelScores::new),
        }
    }

    /// Adds one image: its score and label, and (for pixel-level classes) its map and mask
    /// on the evaluation grid. `Err` (nothing added) names what is wrong with the map.
    pub fn add(
        &mut self,
        score: f32,
        anomalous: bool,
        grid: Option<Grid<'_>>,
    ) -> Result<(), String> {
        if !score.is_finite() {
            return Err(format!("image score {score} is not a finite number"));
        }
        if let (Some(pixels), Some(g)) = (&mut self.pixels, grid) {
            pixels.add(g.map, g.mask, g.width, g.height)?;
        }
        self.scores.push(score);
        self.labels.push(anomalous);
        Ok(())
    }

    pub fn finish(self, fpr_limit: f64) -> ClassMetrics {
        ClassMetrics {
            image: image_metrics(&self.scores, &self.labels),
            pixel: self.pixels.map(|p| p.metrics(fpr_limit)),
            images: self.labels.len(),
            anomalous_images: self.labels.iter().filter(|l| **l).count(),
        }
    }
}

/// One image's map and mask, both `width × height`, row-major.
pub struct Grid<'a> {
    pub map: &'a [f32],
    pub mask: &'a [bool],
    pub width: usize,
    pub height: usize,
}

/// The evaluation grid (width, height) of a `map_w × map_h` map: the map's own, or
/// `eval_size` on the short side with the map's aspect kept.
pub fn eval_grid(map_w: usize, map_h: usize, eval_size: Option<usize>) -> (usize, usize) {
    match eval_size {
        None => (map_w, map_h),
        Some(s) if map_w >= map_h => (((s * map_w) as f64 / map_h as f64).round() as usize, s),
        Some(s) => (s, ((s * map_h) as f64 / map_w as f64).round() as usize),
    }
}

/// Nearest-neighbour resize of a binary mask, sampling source pixel ⌊(x + ½)·w/out_w⌋ (PIL's
/// NEAREST): the result stays binary.
pub fn resize_mask(mask: &[bool], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<bool> {
    if (w, h) == (out_w, out_h) {
        return mask.to_vec();
    }
    let src = |o: usize, n: usize, out: usize| {
        (((o as f64 + 0.5) * n as f64 / out as f64) as usize).min(n - 1)
    };
    let mut out = Vec::with_capacity(out_w * out_h);
    for y in 0..out_h {
        let row = &mask[src(y, h, out_h) * w..][..w];
        out.extend((0..out_w).map(|x| row[src(x, w, out_w)]));
    }
    out
}

/// A map brought to the evaluation grid like the detector's maps (bilinear, align_corners).
pub fn resize_map(map: &[f32], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    if (w, h) == (out_w, out_h) {
        return map.to_vec();
    }
    crate::detect::map::upsample(map, h, w, out_h, out_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_mask_resize_stays_binary_and_keeps_blocks() {
        let mask = [true, false, false, true];
        let up = resize_mask(&mask, 2, 2, 4, 4);
        assert_eq!(up.iter().filter(|m| **m).count(), 8);
        assert_eq!(resize_mask(&up, 4, 4, 2, 2), mask);
        assert_eq!(eval_grid(64, 32, Some(16)), (32, 16));
        assert_eq!(eval_grid(32, 32, None), (32, 32));
    }
}
