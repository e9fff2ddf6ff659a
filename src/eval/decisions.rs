//! How well calibrated decisions ([`crate::decide`]) do on a labelled class: image-level
//! precision and recall of the verdicts, pixel-level precision, recall and F1 of map > pixel
//! threshold against the ground-truth masks. Threshold-free metrics (AUROC, AUPRO) say how
//! well the scores rank; these say how well the rule a user without labels would apply works.

use serde::Serialize;

use crate::decide::{Thresholds, Verdict, verdict};

/// A class's thresholds and the known-good images they were calibrated on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassCalibration {
    pub thresholds: Thresholds,
    pub images: Vec<GoodImage>,
}

/// One calibration image: its file, leave-one-out score and map maximum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoodImage {
    pub file: String,
    pub score: f32,
    pub peak: f32,
}

/// A class's calibration and what its decisions give on the test images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassDecisions {
    pub calibration: ClassCalibration,
    pub metrics: DecisionMetrics,
}

/// Counts of one class's decisions, image by image.
#[derive(Debug, Clone, Default)]
pub struct DecisionCounts {
    /// Verdicts on the anomalous images: [anomalous, uncertain, ok].
    on_anomalous: [usize; 3],
    /// Verdicts on the normal images: [anomalous, uncertain, ok].
    on_normal: [usize; 3],
    /// Pixels above the pixel threshold inside / outside the masks, and mask pixels below it;
    /// `None` for classes with image labels only.
    pixels: Option<PixelCounts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PixelCounts {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
}

/// Precision, recall and F1 of one binary decision, with the counts behind them; each `None`
/// where its denominator is zero (nothing called anomalous, nothing anomalous).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
}

/// A class's decision metrics. Images are called anomalous two ways: `image` counts only the
/// verdict `anomalous` (uncertain as not anomalous: what the rule asserts), `image_or_uncertain`
/// also `uncertain` (what a user who inspects every uncertain image would catch).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionMetrics {
    pub image: Rates,
    pub image_or_uncertain: Rates,
    /// Verdicts on the class's anomalous and normal test images.
    pub verdicts: VerdictCounts,
    pub pixel: Option<Rates>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    pub anomalous_images: Tally,
    pub normal_images: Tally,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub anomalous: usize,
    pub uncertain: usize,
    pub ok: usize,
}

impl DecisionCounts {
    /// `pixel_level`: whether the class has ground-truth masks.
    pub fn new(pixel_level: bool) -> Self {
        DecisionCounts {
            pixels: pixel_level.then(PixelCounts::default),
            ..Default::default()
        }
    }

    /// Adds one test image: its score and label, and for pixel-level classes its map and
    /// mask on the evaluation grid (equal lengths).
    pub fn add(
        &mut self,
        t: &Thresholds,
        score: f32,
        anomalous: bool,
        pixels: Option<(&[f32], &[bool])>,
    ) {
        let slot = match verdict(score, t).0 {
            Verdict::Anomalous => 0,
            Verdict::Uncertain => 1,
            Verdict::Ok => 2,
        };
        if anomalous {
            self.on_anomalous[slot] += 1;
        } else {
            self.on_normal[slot] += 1;
        }
        if let (Some(counts), Some((map, mask))) = (&mut self.pixels, pixels) {
            for (&value, &truth) in map.iter().zip(mask) {
                match (value > t.pixel, truth) {
                    (true, true) => counts.true_positives += 1,
                    (true, false) => counts.false_positives += 1,
                    (false, true) => counts.false_negatives += 1,
                    (false, false) => {}
                }
            }
        }
    }

    pub fn finish(&self) -> DecisionMetrics {
        let (a, n) = (self.on_anomalous, self.on_normal);
        let flagged = |upto: usize| {
            let tp = a[..upto].iter().sum::<usize>() as u64;
            let fp = n[..upto].iter().sum::<usize>() as u64;
            let fn_ = a[upto..].iter().sum::<usize>() as u64;
            rates(tp, fp, fn_)
        };
        let tally = |c: [usize; 3]| Tally {
            anomalous: c[0],
            uncertain: c[1],
            ok: c[2],
        };
        DecisionMetrics {
            image: flagged(1),
            image_or_uncertain: flagged(2),
            verdicts: VerdictCounts {
                anomalous_images: tally(a),
                normal_images: tally(n),
            },
            pixel: self
                .pixels
                .map(|p| rates(p.true_positives, p.false_positives, p.false_negatives)),
        }
    }
}

fn rates(tp: u64, fp: u64, fn_: u64) -> Rates {
    let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
    Rates {
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        // 2PR/(P+R) without dividing by zero: 0 when nothing was found right.
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::calibrate;

    #[test]
    fn counts_follow_the_verdicts_and_the_pixel_threshold() {
        // One good score 0.5 at α = 0.5: image threshold 0.5, band 1e-6, pixel threshold 0.6.
        let t = calibrate(&[0.5], &[0.6], 0.5).unwrap();
        let mut c = DecisionCounts::new(true);
        c.add(
            &t,
            0.9,
            true,
            Some((&[0.7, 0.1, 0.65], &[true, true, false])),
        );
        c.add(&t, 0.5, true, Some((&[0.2], &[true])));
        c.add(&t, 0.1, true, None);
        c.add(&t, 0.8, false, None);
        c.add(&t, 0.2, false, None);
        let m = c.finish();
        assert_eq!((m.image.true_positives, m.image.false_positives), (1, 1));
        assert_eq!(
            (m.image.precision, m.image.recall),
            (Some(0.5), Some(1.0 / 3.0))
        );
        assert_eq!(m.image_or_uncertain.recall, Some(2.0 / 3.0));
        assert_eq!(m.verdicts.anomalous_images.uncertain, 1);
        let p = m.pixel.unwrap();
        assert_eq!(
            (p.true_positives, p.false_positives, p.false_negatives),
            (1, 1, 2)
        );
        assert_eq!(p.f1, Some(2.0 / 5.0));
        let none = DecisionCounts::new(false).finish();
        assert_eq!(
            (none.image.precision, none.image.recall, none.pixel),
            (None, None, None)
        );
    }
}
