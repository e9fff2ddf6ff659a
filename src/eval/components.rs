//! Connected regions of a ground-truth mask, 8-connected: pixels that touch only at a
//! corner belong to one region, as in the MVTec AD reference (`scipy.ndimage.label` with a
//! 3×3 structure of ones) and skimage's default for 2-D. scipy's own default (4-connected)
//! would split such a region and change AUPRO.

/// Labels of a `width × height` row-major mask: 0 for normal pixels, 1..=count for the
/// regions in raster order of their first pixel. Returns (labels, count).
pub fn label_8(mask: &[bool], width: usize, height: usize) -> (Vec<u32>, u32) {
    assert_eq!(
        mask.len(),
        width * height,
        "label_8: mask is not width × height"
    );
    let mut labels = vec![0u32; mask.len()];
    let mut count = 0u32;
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        count += 1;
        labels[start] = count;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % width) as isize, (i / width) as isize);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                        continue;
                    }
                    let k = ny as usize * width + nx as usize;
                    if mask[k] && labels[k] == 0 {
                        labels[k] = count;
                        stack.push(k);
                    }
                }
            }
        }
    }
    (labels, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corner_touching_pixels_form_one_region() {
        let mask = [true, false, false, false, true, false, false, false, true];
        let (labels, count) = label_8(&mask, 3, 3);
        assert_eq!(count, 1);
        assert_eq!(labels, [1, 0, 0, 0, 1, 0, 0, 0, 1]);
        let apart = [true, false, true, false, false, false, true, false, true];
        assert_eq!(label_8(&apart, 3, 3).1, 4);
    }
}
