//! Files that hold images, as clinicians and labs hand them over: raster images (PNG, JPEG,
//! TIFF, WebP, BMP: one image each), and the medical formats, where one file holds several.
//!
//! A [`Source`] is a file opened from its bytes (so the browser and the CLI share it); its
//! images ([`Part`]) are produced one at a time, so a volume is never held as 8-bit RGB all
//! at once. The format is recognised from the bytes, never from the name.

pub mod nifti;

use crate::error::{Error, Result};
use crate::image::{Decoded, ImageLimits, RgbImage, decode_windowed};
use crate::window::{AppliedWindow, WindowChoice};

pub use nifti::SliceAxis;

/// How files are read: size limits, the intensity window, and how volumes are sliced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadOptions {
    /// Bounds on each image (slice, frame), checked before any pixel is decoded.
    pub limits: ImageLimits,
    /// The window for values wider than 8 bits.
    pub window: WindowChoice,
    /// The axis a volume is sliced along.
    pub axis: SliceAxis,
    /// Every `stride`-th slice of a volume is kept (≥ 1).
    pub stride: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            limits: ImageLimits::default(),
            window: WindowChoice::Auto,
            axis: SliceAxis::Axial,
            stride: 1,
        }
    }
}

/// An image's values after the modality scaling (NIfTI scl_slope/scl_inter, DICOM rescale),
/// before the window: row-major, `channels` interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub values: Vec<f64>,
}

impl Plane {
    /// The plane through `window` as 8-bit RGB (grey replicated).
    fn to_rgb(&self, window: &AppliedWindow) -> RgbImage {
        let data = match self.channels {
            1 => self
                .values
                .iter()
                .flat_map(|&v| [window.window.to_u8(v); 3])
                .collect(),
            _ => self
                .values
                .iter()
                .map(|&v| window.window.to_u8(v))
                .collect(),
        };
        RgbImage {
            width: self.width as u32,
            height: self.height as u32,
            data,
        }
    }
}

/// One image of a file, ready for the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub image: RgbImage,
    /// The window that brought the stored values to 8 bits, where one was applied.
    pub window: Option<AppliedWindow>,
}

/// An opened file and the images it holds.
#[derive(Debug)]
pub struct Source {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A raster image, decoded when opened.
    Raster(Decoded),
    /// A NIfTI volume, held as stored; slices are cut as asked for.
    Volume(nifti::Volume),
}

impl Source {
    /// Opens `bytes` (named `name` in errors) and finds the images it holds.
    pub fn open(bytes: &[u8], name: &str, options: &ReadOptions) -> Result<Source> {
        let failed = |message: String| Error::Image {
            path: name.to_string(),
            message,
        };
        let kind = if nifti::is_nifti(bytes) || nifti::is_gzip(bytes) {
            let volume = nifti::Volume::read(
                bytes,
                &options.limits,
                options.window,
                options.axis,
                options.stride,
            )
            .map_err(failed)?;
            let (w, h, _) = volume.plane(0);
            options.limits.check(w as u32, h as u32).map_err(|m| {
                failed(format!(
                    "has slices that are {}",
                    m.trim_start_matches("is ")
                ))
            })?;
            Kind::Volume(volume)
        } else {
            Kind::Raster(decode_windowed(
                bytes,
                name,
                &options.limits,
                options.window,
            )?)
        };
        Ok(Source { kind })
    }

    /// How many images the file holds (at least one).
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Raster(_) => 1,
            Kind::Volume(volume) => volume.slices().len(),
        }
    }

    /// Never true: a file that holds no image fails to open. (For clippy's `len` rule.)
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What names image `index` within the file (`z=12`), or `None` for a file of one image.
    pub fn label(&self, index: usize) -> Option<String> {
        match &self.kind {
            Kind::Raster(_) => {
                debug_assert_eq!(index, 0);
                None
            }
            Kind::Volume(volume) => Some(volume.label(index)),
        }
    }

    /// Image `index` (`< len()`), decoded and windowed.
    pub fn image(&self, index: usize) -> Result<Part> {
        match &self.kind {
            Kind::Raster(decoded) => {
                debug_assert_eq!(index, 0);
                Ok(Part {
                    image: decoded.image.clone(),
                    window: decoded.window.clone(),
                })
            }
            Kind::Volume(volume) => {
                let window = volume.window().clone();
                let image = self
                    .stored(index)
                    .expect("volumes have planes")
                    .to_rgb(&window);
                Ok(Part {
                    image,
                    window: Some(window),
                })
            }
        }
    }

    /// Image `index`'s values before the window, for the medical formats (`None` for raster
    /// images, whose stored values are their pixels).
    pub fn stored(&self, index: usize) -> Option<Plane> {
        match &self.kind {
            Kind::Raster(_) => None,
            Kind::Volume(volume) => {
                let (width, height, values) = volume.plane(index);
                Some(Plane {
                    width,
                    height,
                    channels: 1,
                    values,
                })
            }
        }
    }
}
