//! From scores and maps to decisions: thresholds calibrated on known-good images, a verdict
//! per image and the regions of its map above the pixel threshold. Pure computation (no
//! files), so the CLI and the browser share one rule.
//!
//! The rule is split conformal prediction (Vovk et al. 2005; Angelopoulos & Bates 2021, "A
//! gentle introduction to conformal prediction and distribution-free uncertainty
//! quantification"): the scores s₁..s_N of N known-good images, scored in the setting a new
//! image is scored in, are exchangeable with a new good image's score s. The new score's rank
//! among the N + 1 is then uniform, so for the k-th smallest good score s₍ₖ₎
//!
//!   P(s > s₍ₖ₎) ≤ 1 − k/(N+1),   k = ⌈(N+1)(1−α)⌉  ⇒  P(s > s₍ₖ₎) ≤ α,
//!
//! whatever the score distribution, with as few images as the user has. With k > N (fewer
//! than ⌈1/α⌉ − 1 good images) no good score is high enough: the threshold is the largest
//! and the bound it gives, 1/(N+1), is recorded instead of α.

mod regions;

pub use regions::{Region, regions};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The default false-alarm rate α: at most one good image in twenty called anomalous.
pub const DEFAULT_FALSE_ALARM: f64 = 0.05;

/// The least half-width of the uncertain band: good scores all alike (MAD 0) still leave a
/// band wider than f32 rounding around the threshold.
const MIN_BAND: f32 = 1e-6;

/// 1/Φ⁻¹(3/4): the MAD times this estimates a normal distribution's standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Thresholds from known-good images' scores (the rule of the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Image scores above this are beyond the good images' conformal quantile.
    pub image: f32,
    /// Half-width of the uncertain band around `image`: 1.4826 · MAD of the good scores.
    pub band: f32,
    /// Map values above this form regions: the conformal quantile of the good maps' maxima.
    pub pixel: f32,
    /// α, the false-alarm rate asked for.
    pub false_alarm: f64,
    /// The false-alarm bound the N good images allow, 1 − k/(N+1): at most α when N is
    /// large enough, else 1/(N+1).
    pub bound: f64,
    pub good: GoodSummary,
}

/// The good images' image scores, summarized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoodSummary {
    pub count: usize,
    pub min: f32,
    pub median: f32,
    pub max: f32,
    /// Median absolute deviation from the median.
    pub mad: f32,
}

/// What a score says about an image, against calibrated thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Anomalous,
    /// Within the band around the threshold, where the good images' own spread leaves the
    /// call open.
    Uncertain,
}

/// Thresholds from the image `scores` of N known-good images and `peaks`, the maximum of each
/// one's map, for a false-alarm rate `false_alarm` (α, in (0, 1)).
pub fn calibrate(scores: &[f32], peaks: &[f32], false_alarm: f64) -> Result<Thresholds> {
    check_inputs(scores, peaks, false_alarm)?;
    let n = scores.len();
    let k = conformal_rank(n, false_alarm).min(n);
    let good = summary(scores);
    Ok(Thresholds {
        image: kth_smallest(scores, k),
        band: ((MAD_TO_SIGMA * good.mad as f64) as f32).max(MIN_BAND),
        pixel: kth_smallest(peaks, k),
        false_alarm,
        bound: 1.0 - k as f64 / (n + 1) as f64,
        good,
    })
}

/// The verdict on an image `score` and its margin, `score − t.image`.
pub fn verdict(score: f32, t: &Thresholds) -> (Verdict, f32) {
    let margin = score - t.image;
    let verdict = if margin > t.band {
        Verdict::Anomalous
    } else if margin < -t.band {
        Verdict::Ok
    } else {
        Verdict::Uncertain
    };
    (verdict, margin)
}

/// The fewest good images for which the conformal quantile at `false_alarm` is a good score
/// (k ≤ N), so that the bound is `false_alarm` itself.
pub fn good_images_needed(false_alarm: f64) -> usize {
    // k ≤ N ⇔ (N+1)(1−α) ≤ N ⇔ N ≥ 1/α − 1; the loop settles the rounding of the ceiling.
    let mut n = ((1.0 / false_alarm).ceil() as usize)
        .saturating_sub(2)
        .max(1);
    while conformal_rank(n, false_alarm) > n {
        n += 1;
    }
    n
}

/// k = ⌈(N+1)(1−α)⌉, the rank of the conformal quantile among N good scores (may exceed N).
fn conformal_rank(n: usize, false_alarm: f64) -> usize {
    (n.saturating_add(1) as f64 * (1.0 - false_alarm)).ceil() as usize
}

/// The k-th smallest value (1-based) of `values`.
fn kth_smallest(values: &[f32], k: usize) -> f32 {
    sorted(values)[k - 1]
}

fn sorted(values: &[f32]) -> Vec<f32> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    sorted
}

fn summary(scores: &[f32]) -> GoodSummary {
    let sorted = sorted(scores);
    let median = median(&sorted);
    let deviations: Vec<f32> = sorted
        .iter()
        .map(|&s| (s as f64 - median).abs() as f32)
        .collect();
    GoodSummary {
        count: sorted.len(),
        min: sorted[0],
        median: median as f32,
        max: sorted[sorted.len() - 1],
        mad: median_of(&deviations) as f32,
    }
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
fn median(sorted: &[f32]) -> f64 {
    let n = sorted.len();
    (sorted[(n - 1) / 2] as f64 + sorted[n / 2] as f64) / 2.0
}

fn median_of(values: &[f32]) -> f64 {
    median(&sorted(values))
}

/// Refuses a false-alarm rate outside (0, 1), which no threshold can meet.
pub fn check_false_alarm(false_alarm: f64) -> Result<()> {
    if false_alarm > 0.0 && false_alarm < 1.0 {
        return Ok(());
    }
    Err(Error::Option {
        option: "false_alarm".into(),
        message: format!(
            "{false_alarm} is not a rate: give a false-alarm rate between 0 and 1, such as \
             {DEFAULT_FALSE_ALARM}"
        ),
    })
}

fn check_inputs(scores: &[f32], peaks: &[f32], false_alarm: f64) -> Result<()> {
    check_false_alarm(false_alarm)?;
    let fail = |message: String| Err(Error::Model(format!("calibration: {message}")));
    if scores.is_empty() {
        return fail("no known-good images were scored; give at least one".into());
    }
    if scores.len() != peaks.len() {
        return fail(format!(
            "{} image scores but {} map maxima; give one of each per good image",
            scores.len(),
            peaks.len()
        ));
    }
    for (what, values) in [("image score", scores), ("map maximum", peaks)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return fail(format!(
                "good image #{} has {what} {}; only finite values can be calibrated on",
                i + 1,
                values[i]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(image: f32, band: f32) -> Thresholds {
        calibrate(&[image], &[image], 0.5)
            .map(|t| Thresholds { band, ..t })
            .unwrap()
    }

    #[test]
    fn twenty_good_scores_give_the_largest_at_five_percent_the_nineteenth_at_ten() {
        let scores: Vec<f32> = (1..=20).rev().map(|i| i as f32 / 100.0).collect();
        let t = calibrate(&scores, &scores, 0.05).unwrap();
        // k = ⌈21 · 0.95⌉ = 20 = N: the largest; bound 1 − 20/21.
        assert_eq!(t.image, 0.20);
        assert!((t.bound - 1.0 / 21.0).abs() < 1e-15);
        let t = calibrate(&scores, &scores, 0.10).unwrap();
        // k = ⌈21 · 0.9⌉ = 19.
        assert_eq!(t.image, 0.19);
        assert!(t.bound <= 0.10);
    }

    #[test]
    fn too_few_good_images_fall_back_to_the_largest_with_its_bound() {
        let t = calibrate(&[0.3, 0.1, 0.2], &[0.5, 0.9, 0.7], 0.05).unwrap();
        assert_eq!((t.image, t.pixel), (0.3, 0.9));
        assert_eq!(t.bound, 0.25);
        assert_eq!(good_images_needed(0.05), 19);
        assert_eq!(good_images_needed(0.5), 1);
        assert_eq!(good_images_needed(0.1), 9);
    }

    #[test]
    fn verdicts_follow_the_band() {
        let t = thresholds(0.5, 0.1);
        assert_eq!(verdict(0.61, &t).0, Verdict::Anomalous);
        assert_eq!(verdict(0.39, &t).0, Verdict::Ok);
        assert_eq!(verdict(0.55, &t), (Verdict::Uncertain, 0.55 - 0.5));
        assert_eq!(
            serde_json::to_string(&Verdict::Anomalous).unwrap(),
            "\"anomalous\""
        );
    }

    #[test]
    fn bad_input_is_refused_with_what_is_wrong() {
        let err = |r: Result<Thresholds>| r.unwrap_err().render(&|k| format!("--{k}"));
        assert!(err(calibrate(&[], &[], 0.05)).contains("at least one"));
        assert!(err(calibrate(&[0.1], &[0.1, 0.2], 0.05)).contains("1 image scores but 2"));
        assert!(err(calibrate(&[0.1, f32::NAN], &[0.1, 0.2], 0.05)).contains("#2"));
        assert!(err(calibrate(&[0.1], &[f32::INFINITY], 0.05)).contains("map maximum inf"));
        assert!(err(calibrate(&[0.1], &[0.1], 1.0)).contains("--false_alarm"));
        assert!(err(calibrate(&[0.1], &[0.1], f64::NAN)).contains("between 0 and 1"));
    }
}
