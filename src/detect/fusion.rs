//! The fusion rule and the image score of product mode (METHOD.md §5):
//! `M = (1−λ)·M_text + λ·M_vis` and `s = ½·mean_views p_abn(c) + ½·max(M)`.

/// `M = (1−λ)·M_text + λ·M_vis`, pixel by pixel; `M_text` alone when there is no visual map
/// (one image and no reference).
pub fn fuse(text: Vec<f32>, visual: Option<&[f32]>, lambda: f32) -> Vec<f32> {
    match visual {
        None => text,
        Some(visual) => text
            .iter()
            .zip(visual)
            .map(|(t, v)| (1.0 - lambda) * t + lambda * v)
            .collect(),
    }
}

/// `s = ½·p + ½·max(M)`, with `p` the view-averaged `p_abn` of the image embedding.
pub fn image_score(p_image: f32, fused: &[f32]) -> f32 {
    let peak = fused.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    0.5 * p_image + 0.5 * peak
}

/// `mean_views p_abn(c)`, and for a tiled image the mean of its tiles' (ASSUMPTION, as the
/// map's tiles are averaged where they overlap).
pub fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const M_TEXT: [f32; 4] = [0.25, 0.5, 0.75, 0.125];

    /// Two copies of one image match perfectly: `M_vis = 0`, so with λ = ½ the fused map is
    /// `½·M_text` and the score `½·p + ¼·max M_text`.
    #[test]
    fn identical_pair_halves_the_text_map() {
        let fused = fuse(M_TEXT.to_vec(), Some(&[0.0; 4]), 0.5);
        assert_eq!(fused, M_TEXT.map(|t| 0.5 * t));
        assert_eq!(image_score(0.5, &fused), 0.5 * 0.5 + 0.25 * 0.75);
    }

    #[test]
    fn lambda_weighs_the_visual_map() {
        let visual = [1.0, 0.0, 0.5, 0.25];
        let fused = fuse(M_TEXT.to_vec(), Some(&visual), 0.25);
        let want: Vec<f32> = M_TEXT
            .iter()
            .zip(visual)
            .map(|(t, v)| 0.75 * t + 0.25 * v)
            .collect();
        assert_eq!(fused, want);
        assert_eq!(fuse(M_TEXT.to_vec(), Some(&visual), 0.0), M_TEXT);
        assert_eq!(fuse(M_TEXT.to_vec(), Some(&visual), 1.0), visual);
    }

    /// One image without a reference: `M = M_text`, `s = ½·p + ½·max M_text`.
    #[test]
    fn no_visual_map_keeps_the_text_map() {
        let fused = fuse(M_TEXT.to_vec(), None, 0.5);
        assert_eq!(fused, M_TEXT);
        assert_eq!(image_score(0.25, &fused), 0.125 + 0.375);
    }

    #[test]
    fn the_image_term_is_a_mean_over_views() {
        assert_eq!(mean(&[0.25, 0.5, 0.75]), 0.5);
        assert_eq!(mean(&[]), 0.0);
    }
}
