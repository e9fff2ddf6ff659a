//! Anomaly maps as pictures: a colour heat map blended over the image, with a legend bar
//! that states the score range the colours span.

use crate::image::RgbImage;

/// Matplotlib's "inferno" at 9 evenly spaced stops: perceptually uniform, readable in
/// grayscale print, and dark for low scores so normal tissue stays visible underneath.
const INFERNO: [[f32; 3]; 9] = [
    [0.0, 0.0, 4.0],
    [31.0, 12.0, 72.0],
    [85.0, 15.0, 109.0],
    [136.0, 34.0, 106.0],
    [186.0, 54.0, 85.0],
    [227.0, 89.0, 51.0],
    [249.0, 140.0, 10.0],
    [249.0, 201.0, 50.0],
    [252.0, 255.0, 164.0],
];

/// Colour of `t` in [0, 1] (clamped).
pub fn colour(t: f32) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * (INFERNO.len() - 1) as f32;
    let i = (x.floor() as usize).min(INFERNO.len() - 2);
    let f = x - i as f32;
    let (a, b) = (INFERNO[i], INFERNO[i + 1]);
    [0, 1, 2].map(|c| (a[c] + f * (b[c] - a[c])).round() as u8)
}

/// Height in pixels of the legend strip under the image.
const LEGEND: u32 = 18;

/// Blends the map (values in `range`, same size as `image`) over the image with `alpha`,
/// and appends a legend: a colour bar labelled with the range's ends.
pub fn overlay(image: &RgbImage, map: &[f32], range: (f32, f32), alpha: f32) -> RgbImage {
    let (w, h) = (image.width, image.height);
    assert_eq!(map.len(), (w * h) as usize, "map and image sizes agree");
    let span = (range.1 - range.0).max(f32::MIN_POSITIVE);
    let mut out = RgbImage {
        width: w,
        height: h + LEGEND,
        data: Vec::with_capacity(((h + LEGEND) * w * 3) as usize),
    };
    for (px, &m) in image.data.chunks(3).zip(map) {
        let c = colour((m - range.0) / span);
        out.data.extend(
            (0..3).map(|k| ((1.0 - alpha) * px[k] as f32 + alpha * c[k] as f32).round() as u8),
        );
    }
    out.data.extend(legend(w, range));
    out
}

/// Cyan: absent from inferno, so an outline stands out on every colour of the map.
const OUTLINE: [u8; 3] = [0, 255, 255];

/// Draws the outlines of the regions where `map` exceeds `threshold` on an [`overlay`] of it:
/// the region pixels that touch, side by side, a pixel outside the region or the map's edge.
pub fn outline(overlaid: &mut RgbImage, map: &[f32], threshold: f32) {
    let w = overlaid.width as usize;
    let h = map.len() / w.max(1);
    let inside = |x: usize, y: usize| map[y * w + x] > threshold;
    for y in 0..h {
        for x in 0..w {
            let edge = x == 0 || y == 0 || x + 1 == w || y + 1 == h;
            let border = edge
                || !inside(x - 1, y)
                || !inside(x + 1, y)
                || !inside(x, y - 1)
                || !inside(x, y + 1);
            if inside(x, y) && border {
                let i = (y * w + x) * 3;
                overlaid.data[i..i + 3].copy_from_slice(&OUTLINE);
            }
        }
    }
}

/// The legend strip: a 6-pixel colour bar, then the low and high ends written in digits.
fn legend(width: u32, range: (f32, f32)) -> Vec<u8> {
    let mut strip = vec![255u8; (width * LEGEND * 3) as usize];
    for x in 0..width {
        let c = colour(x as f32 / (width.max(2) - 1) as f32);
        for y in 0..6 {
            let i = ((y * width + x) * 3) as usize;
            strip[i..i + 3].copy_from_slice(&c);
        }
    }
    let low = format!("{:.3}", range.0);
    let high = format!("{:.3}", range.1);
    draw_text(&mut strip, width, 1, 8, &low);
    let high_x = width as i64 - 1 - text_width(&high) as i64;
    draw_text(&mut strip, width, high_x.max(0) as u32, 8, &high);
    strip
}

/// 3×5 glyphs for the characters a number needs; each row is 3 bits, left to right.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 3, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * 4
}

fn draw_text(strip: &mut [u8], width: u32, x0: u32, y0: u32, text: &str) {
    for (k, ch) in text.chars().enumerate() {
        let Some(rows) = glyph(ch) else { continue };
        for (dy, bits) in rows.iter().enumerate() {
            for dx in 0..3u32 {
                let x = x0 + k as u32 * 4 + dx;
                if bits >> (2 - dx) & 1 == 1 && x < width {
                    let i = (((y0 + dy as u32) * width + x) * 3) as usize;
                    strip[i..i + 3].copy_from_slice(&[0, 0, 0]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_ends_are_the_colormap_ends() {
        assert_eq!(colour(0.0), [0, 0, 4]);
        assert_eq!(colour(1.0), [252, 255, 164]);
        assert_eq!(colour(2.0), colour(1.0));
    }

    #[test]
    fn overlay_is_brighter_where_the_map_is_high() {
        let image = RgbImage {
            width: 10,
            height: 4,
            data: vec![100; 120],
        };
        let map: Vec<f32> = (0..40)
            .map(|i| if i % 10 >= 5 { 1.0 } else { 0.0 })
            .collect();
        let out = overlay(&image, &map, (0.0, 1.0), 0.6);
        assert_eq!((out.width, out.height), (10, 4 + LEGEND));
        let sum = |x: usize| {
            out.data[x * 3..x * 3 + 3]
                .iter()
                .map(|&v| v as u32)
                .sum::<u32>()
        };
        assert!(sum(7) > sum(2) + 200, "high {} vs low {}", sum(7), sum(2));
    }

    #[test]
    fn outlines_ring_a_region_and_leave_its_inside_and_outside() {
        let (w, h) = (6u32, 5u32);
        let image = RgbImage {
            width: w,
            height: h,
            data: vec![100; (w * h * 3) as usize],
        };
        // A 3×3 block at (1..4, 1..4) and one pixel on the right edge.
        let map: Vec<f32> = (0..w * h)
            .map(|i| (i % w, i / w))
            .map(|(x, y)| {
                ((1..4).contains(&x) && (1..4).contains(&y) || (x, y) == (5, 0)) as u8 as f32
            })
            .collect();
        let mut out = overlay(&image, &map, (0.0, 1.0), 0.5);
        let before = out.data.clone();
        outline(&mut out, &map, 0.5);
        let drawn: Vec<(u32, u32)> = (0..w * h)
            .filter(|&i| out.data[i as usize * 3..][..3] == OUTLINE)
            .map(|i| (i % w, i / w))
            .collect();
        let ring = [
            (1, 1),
            (2, 1),
            (3, 1),
            (5, 0),
            (1, 2),
            (3, 2),
            (1, 3),
            (2, 3),
            (3, 3),
        ];
        let mut want = ring.to_vec();
        want.sort_by_key(|&(x, y)| (y, x));
        assert_eq!(drawn, want);
        let legend = (w * h * 3) as usize;
        assert_eq!(out.data[legend..], before[legend..], "legend untouched");
    }
}
