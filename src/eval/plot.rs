//! Line plots of ROC, PR and PRO curves as RGB images: axes on [0,1]², ticks every 0.2,
//! an 8×8 bitmap font (font8x8) for labels. Drawn directly so plotting needs no system
//! font or graphics library.

use font8x8::{BASIC_FONTS, UnicodeFonts};

use super::maps::ClassResult;
use crate::image::RgbImage;

const WIDTH: usize = 480;
const HEIGHT: usize = 400;
const LEFT: usize = 48;
const RIGHT: usize = 16;
const TOP: usize = 28;
const BOTTOM: usize = 44;
const COLOURS: [[u8; 3]; 4] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [148, 103, 189],
];

/// One named curve of (x, y) points in [0,1]².
pub struct Series<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
}

/// What a plot shows.
pub struct Plot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series<'a>],
    /// A dashed vertical line (the FPR limit of AUPRO).
    pub marker: Option<(f64, &'a str)>,
}

struct Canvas {
    data: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: isize, y: isize, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < WIDTH && (y as usize) < HEIGHT {
            let i = (y as usize * WIDTH + x as usize) * 3;
            self.data[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A 2-pixel-wide line (Bresenham, doubled vertically).
    fn line(&mut self, (x0, y0): (isize, isize), (x1, y1): (isize, isize), c: [u8; 3], dash: bool) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err, mut step) = (x0, y0, dx + dy, 0usize);
        loop {
            if !dash || (step / 4) % 2 == 0 {
                self.set(x, y, c);
                self.set(x, y + 1, c);
            }
            step += 1;
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let glyph = BASIC_FONTS
                .get(ch)
                .or_else(|| BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.set((x + k * 8 + col) as isize, (y + row) as isize, c);
                    }
                }
            }
        }
    }
}

fn to_pixel((x, y): (f64, f64)) -> (isize, isize) {
    let w = (WIDTH - LEFT - RIGHT) as f64;
    let h = (HEIGHT - TOP - BOTTOM) as f64;
    let x = x.clamp(0.0, 1.0);
    let y = y.clamp(0.0, 1.0);
    (
        (LEFT as f64 + x * w).round() as isize,
        ((HEIGHT - BOTTOM) as f64 - y * h).round() as isize,
    )
}

/// Renders `plot` as a 480×400 image.
pub fn render(plot: &Plot<'_>) -> RgbImage {
    let mut c = Canvas {
        data: vec![255; WIDTH * HEIGHT * 3],
    };
    let (grey, black) = ([200, 200, 200], [0, 0, 0]);
    for t in 0..=5 {
        let v = t as f64 / 5.0;
        c.line(to_pixel((v, 0.0)), to_pixel((v, 1.0)), grey, false);
        c.line(to_pixel((0.0, v)), to_pixel((1.0, v)), grey, false);
        let label = format!("{v:.1}");
        let (px, py) = to_pixel((v, 0.0));
        c.text(px as usize - 12, py as usize + 6, &label, black);
        let (px, py) = to_pixel((0.0, v));
        c.text(px as usize - 30, py as usize - 4, &label, black);
    }
    c.line(to_pixel((0.0, 0.0)), to_pixel((1.0, 0.0)), black, false);
    c.line(to_pixel((0.0, 0.0)), to_pixel((0.0, 1.0)), black, false);
    if let Some((x, label)) = plot.marker {
        c.line(to_pixel((x, 0.0)), to_pixel((x, 1.0)), black, true);
        let (px, _) = to_pixel((x, 1.0));
        c.text(px as usize + 4, TOP + 12, label, black);
    }
    for (k, s) in plot.series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        for w in s.points.windows(2) {
            c.line(to_pixel(w[0]), to_pixel(w[1]), colour, false);
        }
        let y = HEIGHT - BOTTOM - 20 - 14 * (plot.series.len() - 1 - k);
        let x = (WIDTH - RIGHT - 32).saturating_sub(8 * s.name.chars().count());
        c.line(
            (x as isize, y as isize + 3),
            (x as isize + 20, y as isize + 3),
            colour,
            false,
        );
        c.text(x + 26, y, s.name, black);
    }
    c.text(LEFT, 8, plot.title, black);
    c.text(
        (WIDTH - 8 * plot.x_label.chars().count()) / 2,
        HEIGHT - 16,
        plot.x_label,
        black,
    );
    c.text(4, TOP - 12, plot.y_label, black);
    RgbImage {
        width: WIDTH as u32,
        height: HEIGHT as u32,
        data: c.data,
    }
}

/// A class's plots by kind: `roc` and `pr` (image and pixel curves), `pro` (the exact PRO
/// curve with the FPR limit marked). Curves that are undefined are left out.
pub fn class_plots(r: &ClassResult, fpr_limit: f64) -> Vec<(&'static str, RgbImage)> {
    let pixel = r.metrics.pixel.as_ref();
    let none: &[(f64, f64)] = &[];
    let image = &r.metrics.image;
    let kinds = [
        (
            "roc",
            "ROC",
            "FPR",
            "TPR",
            [&image.roc[..], pixel.map_or(none, |p| &p.binary.roc)],
        ),
        (
            "pr",
            "precision-recall",
            "recall",
            "precision",
            [&image.pr[..], pixel.map_or(none, |p| &p.binary.pr)],
        ),
        (
            "pro",
            "PRO",
            "FPR",
            "PRO",
            [none, pixel.map_or(none, |p| &p.pro)],
        ),
    ];
    let mut plots = Vec::new();
    for (kind, title, x_label, y_label, [image, pixels]) in kinds {
        let series: Vec<Series> = [("image", image), ("pixel", pixels)]
            .into_iter()
            .filter(|(_, points)| points.len() > 1)
            .map(|(name, points)| Series { name, points })
            .collect();
        if series.is_empty() {
            continue;
        }
        let title = format!("{} {title}", r.name);
        let limit = format!("FPR {fpr_limit}");
        let plot = Plot {
            title: &title,
            x_label,
            y_label,
            series: &series,
            marker: (kind == "pro").then_some((fpr_limit, limit.as_str())),
        };
        plots.push((kind, render(&plot)));
    }
    plots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagonal_is_drawn_in_the_first_colour() {
        let points = [(0.0, 0.0), (1.0, 1.0)];
        let img = render(&Plot {
            title: "ROC",
            x_label: "FPR",
            y_label: "TPR",
            series: &[Series {
                name: "image",
                points: &points,
            }],
            marker: None,
        });
        let (x, y) = to_pixel((0.5, 0.5));
        let i = (y as usize * WIDTH + x as usize) * 3;
        assert_eq!(img.data[i..i + 3], COLOURS[0]);
    }
}
