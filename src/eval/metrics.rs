//! Threshold-free metrics of METHOD.md §7 for scores against binary labels: ROC-AUC, average
//! precision and F1-max, equal to scikit-learn's `roc_auc_score`, `average_precision_score`
//! and the maximum F1 over `precision_recall_curve`.
//!
//! Exactness: scores are sorted once (descending) and walked threshold by threshold; tied
//! scores form one threshold, as sklearn's `_binary_clf_curve` groups them. The ROC area is
//! accumulated in integers (`u128`: Σ Δfp·(tp + tp_prev)), so it is the exact average-rank AUC
//! even for 10⁸+ pixels; AP and F1 are accumulated in `f64`.
//!
//! Memory: the caller owns the scores; the walk keeps O(1) state plus a decimated curve for
//! plots ([`CURVE_POINTS`] points at most).

/// Most points kept per curve for plots (the metrics themselves use every threshold).
pub const CURVE_POINTS: usize = 1024;

/// ROC-AUC, AP and F1-max of one score set. `None` where the metric is undefined: ROC-AUC
/// needs both classes, AP and F1-max need at least one positive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BinaryMetrics {
    pub auroc: Option<f64>,
    pub ap: Option<f64>,
    pub f1max: Option<f64>,
    /// ROC curve (FPR, TPR) for plots, decimated; empty when AUROC is undefined.
    pub roc: Vec<(f64, f64)>,
    /// Precision–recall curve (recall, precision) for plots, decimated.
    pub pr: Vec<(f64, f64)>,
}

/// Sorts scores descending (NaN-free input: callers reject NaN with the file at fault).
pub fn sort_descending<T>(items: &mut [T], score: impl Fn(&T) -> f32) {
    items.sort_unstable_by(|a, b| score(b).total_cmp(&score(a)));
}

/// Walks `positives` and `negatives` (each sorted descending) as one ranking: for every
/// distinct score, from the highest, `at_positive` sees each positive with that score, then
/// `at_threshold(tp, fp)` gets the cumulative counts of items scoring ≥ that score.
pub fn walk_thresholds<T>(
    positives: &[T],
    negatives: &[f32],
    score: impl Fn(&T) -> f32,
    mut at_positive: impl FnMut(&T),
    mut at_threshold: impl FnMut(u64, u64),
) {
    let (mut i, mut j) = (0usize, 0usize);
    while i < positives.len() || j < negatives.len() {
        let t = match (positives.get(i), negatives.get(j)) {
            (Some(p), Some(&n)) => score(p).max(n),
            (Some(p), None) => score(p),
            (None, Some(&n)) => n,
            (None, None) => unreachable!("loop condition"),
        };
        while i < positives.len() && score(&positives[i]) == t {
            at_positive(&positives[i]);
            i += 1;
        }
        while j < negatives.len() && negatives[j] == t {
            j += 1;
        }
        at_threshold(i as u64, j as u64);
    }
}

/// Metrics of `positives` against `negatives`, both already sorted descending.
pub fn binary_metrics<T>(
    positives: &[T],
    negatives: &[f32],
    score: impl Fn(&T) -> f32,
) -> BinaryMetrics {
    let (p, n) = (positives.len() as u64, negatives.len() as u64);
    if p == 0 {
        return BinaryMetrics::default();
    }
    let (mut area2, mut ap, mut f1max) = (0u128, 0.0f64, 0.0f64);
    let (mut tp_prev, mut fp_prev) = (0u64, 0u64);
    let mut roc = Decimator::new((0.0, 0.0));
    let mut pr = Decimator::new((0.0, 1.0));
    walk_thresholds(
        positives,
        negatives,
        &score,
        |_| {},
        |tp, fp| {
            area2 += u128::from(fp - fp_prev) * u128::from(tp + tp_prev);
            let precision = tp as f64 / (tp + fp) as f64;
            let recall = tp as f64 / p as f64;
            ap += (tp - tp_prev) as f64 / p as f64 * precision;
            if precision + recall > 0.0 {
                f1max = f1max.max(2.0 * precision * recall / (precision + recall));
            }
            if n > 0 {
                roc.push((fp as f64 / n as f64, recall));
            }
            pr.push((recall, precision));
            (tp_prev, fp_prev) = (tp, fp);
        },
    );
    let auroc = (n > 0).then(|| area2 as f64 / (2.0 * p as f64 * n as f64));
    BinaryMetrics {
        auroc,
        ap: Some(ap),
        f1max: Some(f1max),
        roc: if n > 0 { roc.finish() } else { Vec::new() },
        pr: pr.finish(),
    }
}

/// Image-level metrics from per-image scores and labels (`true` = anomalous).
pub fn image_metrics(scores: &[f32], labels: &[bool]) -> BinaryMetrics {
    let mut positives: Vec<f32> = pick(scores, labels, true);
    let mut negatives: Vec<f32> = pick(scores, labels, false);
    sort_descending(&mut positives, |s| *s);
    sort_descending(&mut negatives, |s| *s);
    binary_metrics(&positives, &negatives, |s| *s)
}

fn pick(scores: &[f32], labels: &[bool], want: bool) -> Vec<f32> {
    scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l == want)
        .map(|(s, _)| *s)
        .collect()
}

/// Keeps a curve's points only where it moved by at least 1/[`CURVE_POINTS`] along either
/// axis, plus its last point: enough for a plot, bounded whatever the pixel count.
pub struct Decimator {
    points: Vec<(f64, f64)>,
    pending: Option<(f64, f64)>,
}

impl Decimator {
    pub fn new(start: (f64, f64)) -> Self {
        Decimator {
            points: vec![start],
            pending: None,
        }
    }

    pub fn push(&mut self, point: (f64, f64)) {
        let step = 1.0 / CURVE_POINTS as f64;
        let last = *self.points.last().expect("starts with a point");
        if (point.0 - last.0).abs() >= step || (point.1 - last.1).abs() >= step {
            self.points.push(point);
            self.pending = None;
        } else {
            self.pending = Some(point);
        }
    }

    pub fn finish(mut self) -> Vec<(f64, f64)> {
        self.points.extend(self.pending);
        self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_count_half_as_average_rank() {
        // One positive tied with one of two negatives: AUC = (1 + 0.5) / 2.
        let m = image_metrics(&[0.5, 0.5, 0.1], &[true, false, false]);
        assert_eq!(m.auroc, Some(0.75));
        // The tie group is one threshold: precision 1/2 at recall 1.
        assert_eq!(m.ap, Some(0.5));
    }

    #[test]
    fn one_class_leaves_auroc_undefined() {
        let m = image_metrics(&[0.2, 0.3], &[false, false]);
        assert_eq!(m, BinaryMetrics::default());
        let m = image_metrics(&[0.2, 0.3], &[true, true]);
        assert_eq!((m.auroc, m.ap), (None, Some(1.0)));
    }
}
