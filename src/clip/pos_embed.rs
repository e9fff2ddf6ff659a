//! Bicubic resizing of the positional-embedding grid for another input size; equals
//! `torch.nn.functional.interpolate(mode="bicubic", align_corners=False, antialias=False)`.

/// Resizes `[1 + g0², width]` (class position first, then the row-major grid) to
/// `[1 + g1², width]`; the class position is kept as is.
pub fn resize_positional_embedding(pos: &[f32], width: usize, g0: usize, g1: usize) -> Vec<f32> {
    let (cls, grid) = pos.split_at(width);
    let weights_y = cubic_weights(g0, g1);
    let weights_x = &weights_y;
    let mut out = cls.to_vec();
    out.reserve(g1 * g1 * width);
    for (ys, wy) in &weights_y {
        for (xs, wx) in weights_x {
            for c in 0..width {
                let mut acc = 0.0f32;
                for (&y, &ay) in ys.iter().zip(wy) {
                    let row: f32 = xs
                        .iter()
                        .zip(wx)
                        .map(|(&x, &ax)| ax * grid[(y * g0 + x) * width + c])
                        .sum();
                    acc += ay * row;
                }
                out.push(acc);
            }
        }
    }
    out
}

/// For each output index: the 4 clamped source indices and their cubic weights.
fn cubic_weights(n_in: usize, n_out: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|o| {
            // torch computes the source coordinate without clamping for cubic modes.
            let real = scale * (o as f32 + 0.5) - 0.5;
            let base = real.floor();
            let t = real - base;
            let clamp = |i: f32| (i.max(0.0) as usize).min(n_in - 1);
            let idx = [-1.0, 0.0, 1.0, 2.0].map(|d| clamp(base + d));
            (idx, cubic_coefficients(t))
        })
        .collect()
}

/// Keys' cubic convolution with A = −0.75 (torch's `upsample_bicubic2d`).
fn cubic_coefficients(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let width = 3;
        let pos: Vec<f32> = (0..(1 + 16) * width).map(|i| (i as f32).sin()).collect();
        let out = resize_positional_embedding(&pos, width, 4, 4);
        for (a, b) in pos.iter().zip(&out) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn weights_sum_to_one() {
        for (_, w) in cubic_weights(5, 9) {
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}
