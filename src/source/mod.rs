//! Files that hold images, as clinicians and labs hand them over: raster images (PNG, JPEG,
//! TIFF, WebP, BMP: one image each), and the medical formats, where one file holds several.
//!
//! A [`Source`] is a file opened from its bytes (so the browser and the CLI share it); its
//! images ([`Part`]) are produced one at a time, so a volume is never held as 8-bit RGB all
//! at once. The format is recognised from the bytes, never from the name.

use crate::error::Result;
use crate::image::{Decoded, ImageLimits, RgbImage, decode_windowed};
use crate::window::{AppliedWindow, WindowChoice};

/// How files are read: size limits and the intensity window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReadOptions {
    /// Bounds on each image (slice, frame), checked before any pixel is decoded.
    pub limits: ImageLimits,
    /// The window for values wider than 8 bits.
    pub window: WindowChoice,
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
}

impl Source {
    /// Opens `bytes` (named `name` in errors) and finds the images it holds.
    pub fn open(bytes: &[u8], name: &str, options: &ReadOptions) -> Result<Source> {
        let kind = Kind::Raster(decode_windowed(
            bytes,
            name,
            &options.limits,
            options.window,
        )?);
        Ok(Source { kind })
    }

    /// How many images the file holds (at least one).
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Raster(_) => 1,
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
        }
    }
}
