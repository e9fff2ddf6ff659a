//! Language-guided scores (METHOD.md §3–§4): how much a feature looks like the abnormal
//! state prompt rather than the normal one.
//!
//! `p_abn(f) = softmax([f̂·t_n, f̂·t_a])[1]` with `f̂ = f/‖f‖` and the unit anchors `t_n`, `t_a`
//! of [`TextAnchors::states`](crate::prompts::TextAnchors). There is **no ×100 logit scale**:
//! AnoVL's faithful maps compare raw cosines, so scores stay close to ½ (ranking, and thus
//! AUROC, is unaffected). Everything runs on burn tensors, on whichever device holds them.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// `p_abn` of every V-V patch token: `tokens` `[N, D]` (unnormalized, as the vision tower
/// returns them), `states` `[2, D]` (rows `t_n`, `t_a`) → `[N]`, in the tokens' row order
/// (row-major over the patch grid).
pub fn patch_abnormality(tokens: Tensor<2>, states: &Tensor<2>) -> Tensor<1> {
    abnormality(tokens, states)
}

/// `p_abn` of the image embedding of each view: `cls` `[V, D]` (unnormalized) → `[V]`.
/// The image score is their mean (METHOD §4); the caller takes it, so that it can also show
/// the views one by one.
pub fn image_abnormality(cls: Tensor<2>, states: &Tensor<2>) -> Tensor<1> {
    abnormality(cls, states)
}

/// `softmax(f̂·[t_n, t_a]ᵀ)[:, 1]` for every row `f` of `features`.
fn abnormality(features: Tensor<2>, states: &Tensor<2>) -> Tensor<1> {
    let [rows, _] = features.dims();
    let cosines = unit_rows(features).matmul(states.clone().transpose()); // [rows, 2]
    softmax(cosines, 1).narrow(1, 1, 1).reshape([rows])
}

/// Each row divided by its L2 norm, `x / max(‖x‖, 1e-12)`: the one L2 normalisation of the
/// detector. The norm is floored at 1e-12 (as torch's `F.normalize`) so that an all-zero
/// feature scores ½ instead of poisoning a map with NaN; real CLIP features are never near
/// zero, so this changes no score.
pub fn unit_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn tensor(values: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    fn host(t: Tensor<1>) -> Vec<f32> {
        crate::backend::read_back(t, "test values").unwrap()
    }

    /// `t_n = e0`, `t_a = e1` in 3-D.
    fn axes() -> Tensor<2> {
        tensor(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [2, 3])
    }

    #[test]
    fn scores_are_softmax_of_raw_cosines() {
        // Row 0 along t_a with a huge norm, row 1 along t_n, row 2 orthogonal to both.
        let tokens = tensor(vec![0.0, 50.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 3.0], [3, 3]);
        let p = host(patch_abnormality(tokens, &axes()));
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        // No logit scale: a perfect match gives σ(1) ≈ 0.73, not ≈ 1.
        let want = [sigmoid(1.0), sigmoid(-1.0), 0.5];
        for (g, w) in p.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{p:?} vs {want:?}");
        }
    }

    #[test]
    fn image_score_is_per_view_and_scale_free() {
        let cls = tensor(vec![1.0, 1.0, 0.0, 10.0, 10.0, 0.0], [2, 3]);
        let p = host(image_abnormality(cls, &axes()));
        assert_eq!(p.len(), 2);
        assert!(
            (p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn zero_feature_scores_one_half() {
        let p = host(patch_abnormality(tensor(vec![0.0; 3], [1, 3]), &axes()));
        assert_eq!(p, [0.5]);
    }
}
