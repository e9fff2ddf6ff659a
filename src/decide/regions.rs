//! The regions of a map above the pixel threshold: where a verdict comes from.

use serde::{Deserialize, Serialize};

use crate::eval::components::label_8;
use crate::{Error, Result};

/// One 8-connected region of map values above the pixel threshold, in map pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Bounding box: left column, top row, and size.
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// Pixels in the region.
    pub area: u32,
    /// `area` as a share of the map's pixels.
    pub share: f32,
    /// The region's largest and mean map value.
    pub peak: f32,
    pub mean: f32,
}

/// The 8-connected regions of `map` (row-major `width × height`) where it exceeds
/// `threshold`, the highest peak first. NaN values belong to no region.
pub fn regions(map: &[f32], width: usize, height: usize, threshold: f32) -> Result<Vec<Region>> {
    if map.len() != width * height {
        return Err(Error::Model(format!(
            "regions: a map of {} values is not {width} × {height}",
            map.len()
        )));
    }
    let above: Vec<bool> = map.iter().map(|&v| v > threshold).collect();
    let (labels, count) = label_8(&above, width, height);
    let mut found = vec![Extent::default(); count as usize];
    for (i, &label) in labels.iter().enumerate() {
        if label > 0 {
            found[label as usize - 1].add(i % width, i / width, map[i]);
        }
    }
    let pixels = (width * height) as f64;
    let mut regions: Vec<Region> = found.iter().map(|e| e.region(pixels)).collect();
    // Stable: equal peaks keep the raster order of their first pixel.
    regions.sort_by(|a, b| b.peak.total_cmp(&a.peak));
    Ok(regions)
}

/// What a region adds up to, pixel by pixel.
#[derive(Clone)]
struct Extent {
    left: usize,
    top: usize,
    right: usize,
    bottom: usize,
    area: usize,
    peak: f32,
    sum: f64,
}

impl Default for Extent {
    fn default() -> Self {
        Extent {
            left: usize::MAX,
            top: usize::MAX,
            right: 0,
            bottom: 0,
            area: 0,
            peak: f32::NEG_INFINITY,
            sum: 0.0,
        }
    }
}

impl Extent {
    fn add(&mut self, x: usize, y: usize, value: f32) {
        self.left = self.left.min(x);
        self.top = self.top.min(y);
        self.right = self.right.max(x);
        self.bottom = self.bottom.max(y);
        self.area += 1;
        self.peak = self.peak.max(value);
        self.sum += value as f64;
    }

    fn region(&self, pixels: f64) -> Region {
        Region {
            x: self.left as u32,
            y: self.top as u32,
            width: (self.right - self.left + 1) as u32,
            height: (self.bottom - self.top + 1) as u32,
            area: self.area as u32,
            share: (self.area as f64 / pixels) as f32,
            peak: self.peak,
            mean: (self.sum / self.area as f64) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagonal_and_a_lone_pixel_are_two_regions_highest_peak_first() {
        #[rustfmt::skip]
        let map = [
            0.9, 0.0, 0.0, 0.0,
            0.0, 0.7, 0.0, 0.95,
            0.0, 0.0, 0.0, 0.0,
        ];
        let found = regions(&map, 4, 3, 0.5).unwrap();
        assert_eq!(found.len(), 2);
        let lone = Region {
            x: 3,
            y: 1,
            width: 1,
            height: 1,
            area: 1,
            share: 1.0 / 12.0,
            peak: 0.95,
            mean: 0.95,
        };
        assert_eq!(found[0], lone);
        assert_eq!(
            (found[1].x, found[1].y, found[1].width, found[1].height),
            (0, 0, 2, 2)
        );
        assert_eq!((found[1].area, found[1].peak), (2, 0.9));
        assert!((found[1].mean - 0.8).abs() < 1e-7);
    }

    #[test]
    fn a_map_of_the_wrong_size_is_an_error() {
        let err = regions(&[0.0; 5], 2, 3, 0.5).unwrap_err();
        assert!(err.render(&|k| k.into()).contains("5 values is not 2 × 3"));
    }
}
