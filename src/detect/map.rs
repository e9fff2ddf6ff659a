//! Anomaly maps on the host: smoothing, upsampling and the tiling of wide images
//! (METHOD.md §1 and §4). Maps are small (a 15×15 grid, a 240×240 map), so plain `f32`
//! slices, row-major, are all that is needed and the same code serves every backend.

use crate::image::{
    CLIP_MEAN, CLIP_STD, RgbImage, resize_bilinear_chw, resize_bilinear_chw_align_corners,
};

/// 3×3 mean filter, stride 1, replicate padding: `h × w` in, `h × w` out.
///
/// Equal to torch `avg_pool2d(F.pad(x, (1, 1, 1, 1), 'replicate'), 3, stride=1)` as AnoVL
/// smooths its patch grid; the nine inputs are summed in row-major order, then divided by 9.
///
/// # Panics
/// If `grid.len() != h * w` (a caller bug).
pub fn box_filter3(grid: &[f32], h: usize, w: usize) -> Vec<f32> {
    assert_eq!(grid.len(), h * w, "box_filter3: grid is not h × w");
    let clamp = |i: isize, len: usize| i.clamp(0, len as isize - 1) as usize;
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h as isize {
        for x in 0..w as isize {
            let mut sum = 0.0f32;
            for dy in -1..=1 {
                let row = &grid[clamp(y + dy, h) * w..][..w];
                for dx in -1..=1 {
                    sum += row[clamp(x + dx, w)];
                }
            }
            out.push(sum / 9.0);
        }
    }
    out
}

/// Bilinear resize with `align_corners = true` (torch `F.interpolate(..., mode='bilinear',
/// align_corners=True)`): the corner values of `grid` land exactly on the corners of the
/// `out_h × out_w` result, as METHOD §4 upsamples the patch grid.
///
/// # Panics
/// If `grid.len() != h * w`, or the grid is empty while the output is not.
pub fn upsample(grid: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    resize_bilinear_chw_align_corners(grid, 1, h, w, out_h, out_w)
}

/// A patch grid's scores as a map (METHOD §4 steps 2–3; the visual scores of §5 alike):
/// per-patch scores on a `grid = [rows, cols]` patch grid → 3×3 box filter → bilinear (align_corners) upsampling to
/// `size × size`. No Gaussian, no min–max rescaling.
///
/// # Panics
/// If `scores.len() != rows * cols`.
pub fn smooth_and_upsample(scores: &[f32], grid: [usize; 2], size: usize) -> Vec<f32> {
    let [h, w] = grid;
    upsample(&box_filter3(scores, h, w), h, w, size, size)
}

/// Width of a `width × height` image once its height is resized to `size` (wide images,
/// METHOD §1): `⌊size · width / height⌋`, the rounding of torchvision's `Resize(size)` that
/// the VisA protocol uses (the long side is truncated, never rounded up).
///
/// Images that are not wider than tall are not tiled: they are squashed to `size × size`
/// like [`to_clip_input`](crate::image::to_clip_input) does, so their resized width is `size`.
pub fn resized_width(width: u32, height: u32, size: u32) -> u32 {
    if width <= height {
        return size;
    }
    // u64: 16384 · 16384 and more does not fit u32.
    (u64::from(size) * u64::from(width) / u64::from(height)) as u32
}

/// Left edges of the `size × size` tiles that cover a `width × height` image after the
/// short-side resize (METHOD §1): `[0, W' − size]` with `W' = resized_width(..)`, the left and
/// right tiles of the VisA protocol; `[0]` when `W' == size` (square, or not wide).
///
/// METHOD describes two tiles, which cover any image up to twice as wide as tall. Wider
/// images (`W' > 2·size`) get `⌈W'/size⌉` tiles spread evenly from `0` to `W' − size`
/// (offsets rounded half up), so that no column is left without a score.
pub fn tile_offsets(width: u32, height: u32, size: u32) -> Vec<u32> {
    let resized = resized_width(width, height, size);
    if resized <= size {
        return vec![0];
    }
    let span = u64::from(resized - size);
    let tiles = u64::from(resized.div_ceil(size)).max(2);
    (0..tiles)
        .map(|i| ((2 * i * span + (tiles - 1)) / (2 * (tiles - 1))) as u32)
        .collect()
}

/// The CLIP inputs of an image's tiles, left to right: normalized CHW `3 × size × size` each,
/// one per entry of [`tile_offsets`].
///
/// Same pipeline as [`to_clip_input`](crate::image::to_clip_input), with the short-side resize
/// in place of the square one: pixels scaled to [0, 1], the whole image resized to
/// `size × resized_width(..)` with [`resize_bilinear_chw`] (torch bilinear, align_corners =
/// false, no antialias), each tile cut out, then `(x − mean)/std`. An image that is not wider
/// than tall gives exactly `to_clip_input(img, size)`.
pub fn clip_tiles(img: &RgbImage, size: u32) -> Vec<Vec<f32>> {
    let (h, w) = (img.height as usize, img.width as usize);
    let (s, resized) = (
        size as usize,
        resized_width(img.width, img.height, size) as usize,
    );
    let unit = crate::image::to_unit_chw(img);
    let full = if (h, w) == (s, resized) {
        unit
    } else {
        resize_bilinear_chw(&unit, 3, h, w, s, resized)
    };
    tile_offsets(img.width, img.height, size)
        .into_iter()
        .map(|offset| {
            let mut tile = Vec::with_capacity(3 * s * s);
            for (c, plane) in full.chunks_exact(s * resized).enumerate() {
                for row in plane.chunks_exact(resized) {
                    tile.extend(
                        row[offset as usize..][..s]
                            .iter()
                            .map(|v| (v - CLIP_MEAN[c]) / CLIP_STD[c]),
                    );
                }
            }
            tile
        })
        .collect()
}

/// Puts the `size × size` maps of the tiles back into one `size × width` map, averaging
/// where tiles overlap (METHOD §1). `offsets` are the tiles' left edges ([`tile_offsets`]),
/// `width` the resized width ([`resized_width`]). Overlapping values are summed in tile
/// order, then divided by their count.
///
/// # Panics
/// If the counts or sizes disagree, a tile sticks out past `width`, or some column is
/// covered by no tile (caller bugs).
pub fn merge_tiles(maps: &[Vec<f32>], offsets: &[u32], size: usize, width: usize) -> Vec<f32> {
    assert_eq!(maps.len(), offsets.len(), "merge_tiles: one offset per map");
    let mut sum = vec![0.0f32; size * width];
    let mut count = vec![0u32; width];
    for (map, &offset) in maps.iter().zip(offsets) {
        let offset = offset as usize;
        assert_eq!(
            map.len(),
            size * size,
            "merge_tiles: a map is not size × size"
        );
        assert!(
            offset + size <= width,
            "merge_tiles: tile at {offset} sticks out of width {width}"
        );
        for (row, tile_row) in sum.chunks_exact_mut(width).zip(map.chunks_exact(size)) {
            for (acc, v) in row[offset..][..size].iter_mut().zip(tile_row) {
                *acc += v;
            }
        }
        for n in &mut count[offset..][..size] {
            *n += 1;
        }
    }
    assert!(
        count.iter().all(|&n| n > 0),
        "merge_tiles: a column is covered by no tile"
    );
    for row in sum.chunks_exact_mut(width) {
        for (v, &n) in row.iter_mut().zip(&count) {
            *v /= n as f32;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_filter_of_a_constant_grid_is_constant() {
        for (h, w) in [(1, 1), (3, 5), (15, 15)] {
            let out = box_filter3(&vec![0.37; h * w], h, w);
            assert!(
                out.iter().all(|v| (v - 0.37).abs() < 1e-6),
                "{h}×{w}: {out:?}"
            );
        }
    }

    #[test]
    fn box_filter_replicates_the_border() {
        // 1×3 [0, 0, 9]: left 3×3 window sees columns (0, 0, 0) thrice → 0;
        // middle (0, 0, 9) → 3; right (0, 9, 9) → 6.
        assert_eq!(box_filter3(&[0.0, 0.0, 9.0], 1, 3), [0.0, 3.0, 6.0]);
    }

    #[test]
    fn upsampled_corners_equal_the_grid_corners() {
        let grid: Vec<f32> = (0..12).map(|i| (i * i) as f32 * 0.1).collect();
        let (h, w, oh, ow) = (3, 4, 17, 23);
        let up = upsample(&grid, h, w, oh, ow);
        assert_eq!(up.len(), oh * ow);
        assert_eq!(up[0], grid[0]);
        assert_eq!(up[ow - 1], grid[w - 1]);
        assert_eq!(up[(oh - 1) * ow], grid[(h - 1) * w]);
        assert_eq!(up[oh * ow - 1], grid[h * w - 1]);
    }

    #[test]
    fn language_map_has_the_input_size() {
        let map = smooth_and_upsample(&[0.5; 16], [4, 4], 32);
        assert_eq!(map.len(), 32 * 32);
        assert!(map.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn wide_images_get_left_and_right_tiles() {
        // VisA's 1500×1000 at 240: 360 wide, tiles [0, 240) and [120, 360).
        assert_eq!(resized_width(1500, 1000, 240), 360);
        assert_eq!(tile_offsets(1500, 1000, 240), [0, 120]);
        // Truncation, as torchvision: 240 · 1001 / 1000 = 240.24 → 240, one tile.
        assert_eq!(resized_width(1001, 1000, 240), 240);
        assert_eq!(tile_offsets(1001, 1000, 240), [0]);
        // 240 · 512 / 496 = 247.7 → 247.
        assert_eq!(tile_offsets(512, 496, 240), [0, 7]);
        // Square and tall images are one tile.
        assert_eq!(tile_offsets(700, 700, 240), [0]);
        assert_eq!(tile_offsets(500, 1000, 240), [0]);
        assert_eq!(resized_width(500, 1000, 240), 240);
    }

    #[test]
    fn very_wide_images_are_covered_without_gaps() {
        // 5:1 at 240 → 1200 wide → 5 tiles, evenly spread: exactly abutting here.
        assert_eq!(tile_offsets(5000, 1000, 240), [0, 240, 480, 720, 960]);
        // 3.5:1 → 840 → 4 tiles over a span of 600: 0, 200, 400, 600.
        assert_eq!(tile_offsets(3500, 1000, 240), [0, 200, 400, 600]);
        for (w, h) in [(2345, 1000), (4001, 999), (1000, 333)] {
            let resized = resized_width(w, h, 240) as usize;
            let offsets = tile_offsets(w, h, 240);
            let maps = vec![vec![1.0f32; 240 * 240]; offsets.len()];
            let merged = merge_tiles(&maps, &offsets, 240, resized); // panics on a gap
            assert_eq!(merged.len(), 240 * resized);
            assert_eq!(*offsets.last().unwrap() as usize, resized - 240);
        }
    }

    #[test]
    fn merge_averages_the_overlap() {
        // Two 2×2 tiles of 1s and 3s at offsets 0 and 1 in a width of 3.
        let merged = merge_tiles(&[vec![1.0; 4], vec![3.0; 4]], &[0, 1], 2, 3);
        assert_eq!(merged, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn square_image_tiles_equal_the_clip_input() {
        let data: Vec<u8> = (0..10 * 10 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let img = RgbImage {
            width: 10,
            height: 10,
            data,
        };
        assert_eq!(clip_tiles(&img, 6), [crate::image::to_clip_input(&img, 6)]);
        let tall = RgbImage {
            width: 10,
            height: 15,
            data: vec![9; 10 * 15 * 3],
        };
        assert_eq!(
            clip_tiles(&tall, 6),
            [crate::image::to_clip_input(&tall, 6)]
        );
    }

    #[test]
    fn wide_image_tiles_are_cut_from_one_resize() {
        // 12×4 at size 4: no resampling (height already 4), width stays 12 → tiles at 0, 4, 8
        // (three tiles: 12 > 2·4); each is the image's columns [o, o + 4).
        let data: Vec<u8> = (0..12 * 4 * 3).map(|i| (i % 251) as u8).collect();
        let img = RgbImage {
            width: 12,
            height: 4,
            data,
        };
        let tiles = clip_tiles(&img, 4);
        assert_eq!(tile_offsets(12, 4, 4), [0, 4, 8]);
        assert_eq!(tiles.len(), 3);
        for (t, offset) in tiles.iter().zip([0usize, 4, 8]) {
            for c in 0..3 {
                for y in 0..4 {
                    for x in 0..4 {
                        let raw = img.data[3 * (y * 12 + offset + x) + c];
                        let want = (f32::from(raw) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
                        assert_eq!(t[c * 16 + y * 4 + x], want);
                    }
                }
            }
        }
    }
}
