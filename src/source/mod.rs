//! Files that hold images, as clinicians and labs hand them over: raster images (PNG, JPEG,
//! TIFF, WebP, BMP: one image each), and the medical formats, where one file holds several.
//!
//! A [`Source`] is a file opened from its bytes (so the browser and the CLI share it); its
//! images ([`Part`]) are produced one at a time, so a volume is never held as 8-bit RGB all
//! at once. The format is recognised from the bytes, never from the name.

pub mod dicom;
mod dicom_lengths;
pub mod nifti;

use crate::detect::plan::FileShape;
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
    /// DICOM MONOCHROME1: the lowest values are white.
    pub inverted: bool,
    pub values: Vec<f64>,
}

impl Plane {
    /// The plane through `window` (as stored where there is none: 8-bit colour) as 8-bit
    /// RGB, grey replicated.
    fn to_rgb(&self, window: Option<&AppliedWindow>) -> RgbImage {
        let level = |v: f64| match window {
            Some(w) => w.window.to_u8(v),
            None => v.clamp(0.0, 255.0) as u8,
        };
        let shown = |v: f64| {
            if self.inverted {
                255 - level(v)
            } else {
                level(v)
            }
        };
        let data = match self.channels {
            1 => self.values.iter().flat_map(|&v| [shown(v); 3]).collect(),
            _ => self.values.iter().map(|&v| shown(v)).collect(),
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
    /// Identifying attributes the file holds and duoclip never writes (DICOM keywords).
    pub withheld: Vec<&'static str>,
}

/// A prompt domain that a file's own attributes point to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainHint {
    /// A built-in domain's name, as [`crate::prompts::choose_domain`] reads it.
    pub domain: &'static str,
    /// Why, naming only the non-identifying attributes that decided it ("DICOM Modality MR,
    /// Body Part Examined HEAD").
    pub because: String,
}

/// An opened file and the images it holds.
#[derive(Debug)]
pub struct Source {
    /// The file's name, for errors found after opening (a frame that does not decode).
    name: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A raster image, decoded when opened.
    Raster(Decoded),
    /// A NIfTI volume, held as stored; slices are cut as asked for.
    Volume(Box<nifti::Volume>),
    /// A DICOM file, held as parsed; frames are decoded as asked for.
    Dicom(Box<dicom::Dicom>),
}

impl Source {
    /// Opens `bytes` (named `name` in errors) and finds the images it holds. The bytes are
    /// taken, not copied: a NIfTI volume keeps them as its voxels (a browser holding a
    /// 157 MB volume must not need twice that).
    pub fn open(bytes: Vec<u8>, name: &str, options: &ReadOptions) -> Result<Source> {
        let failed = |message: String| Error::Image {
            path: name.to_string(),
            message,
        };
        let kind = if dicom::is_dicom(&bytes) {
            Kind::Dicom(Box::new(
                dicom::Dicom::read(&bytes, &options.limits, options.window).map_err(failed)?,
            ))
        } else if nifti::is_nifti(&bytes) || nifti::is_gzip(&bytes) {
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
            Kind::Volume(Box::new(volume))
        } else {
            Kind::Raster(decode_windowed(
                &bytes,
                name,
                &options.limits,
                options.window,
            )?)
        };
        Ok(Source {
            name: name.to_string(),
            kind,
        })
    }

    /// How many images the file holds (at least one).
    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::Raster(_) => 1,
            Kind::Volume(volume) => volume.slices().len(),
            Kind::Dicom(dicom) => dicom.frames(),
        }
    }

    /// What grouping needs to know of the file ([`crate::detect::plan::groups`]).
    pub fn shape(&self) -> FileShape {
        FileShape {
            images: self.len(),
            series: match &self.kind {
                Kind::Dicom(dicom) => dicom.series_key(),
                _ => None,
            },
        }
    }

    /// The prompt domain the file's attributes point to: DICOM's Modality and Body Part
    /// Examined. `None` for other files: NIfTI and raster images name no modality.
    pub fn suggested_domain(&self) -> Option<DomainHint> {
        match &self.kind {
            Kind::Dicom(dicom) => dicom.suggested_domain(),
            _ => None,
        }
    }

    /// For a NIfTI volume, a map over its voxels as a `.nii.gz` that viewers overlay on it
    /// (same grid and geometry, float32): `map(n)` is image `n`'s map, `(values, width,
    /// height)` at any resolution, brought to the slice's size bilinearly (align_corners, as
    /// maps are brought to masks); slices not scored hold 0. `None` for other files.
    pub fn map_volume(
        &self,
        mut map: impl FnMut(usize) -> Result<(Vec<f32>, usize, usize)>,
    ) -> Option<Result<Vec<u8>>> {
        let Kind::Volume(volume) = &self.kind else {
            return None;
        };
        let (w, h) = volume.slice_size();
        Some(volume.map_volume(|n| {
            let (values, map_w, map_h) = map(n)?;
            if values.len() != map_w * map_h || values.is_empty() {
                return Err(Error::Image {
                    path: self.name.clone(),
                    message: format!(
                        "the map of image {n} holds {} values where {map_w}×{map_h} were \
                         declared: it is corrupt; remove it and score again",
                        values.len()
                    ),
                });
            }
            Ok(crate::eval::resize_map(&values, map_w, map_h, w, h))
        }))
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
            Kind::Dicom(dicom) => Some(dicom.label(index)),
        }
    }

    /// Whether the file names its images by what they are (series, instance, frame) rather
    /// than by anything identifying: output names must then come from [`Source::label`]
    /// alone, never from the file's name, which may carry the patient's.
    pub fn is_private(&self) -> bool {
        matches!(self.kind, Kind::Dicom(_))
    }

    /// Image `index` (`< len()`), decoded and windowed.
    pub fn image(&self, index: usize) -> Result<Part> {
        if let Kind::Raster(decoded) = &self.kind {
            debug_assert_eq!(index, 0);
            return Ok(Part {
                image: decoded.image.clone(),
                window: decoded.window.clone(),
                withheld: Vec::new(),
            });
        }
        let (plane, window) = self.stored(index)?.expect("medical images have planes");
        let withheld = match &self.kind {
            Kind::Dicom(dicom) => dicom.withheld().to_vec(),
            _ => Vec::new(),
        };
        Ok(Part {
            image: plane.to_rgb(window.as_ref()),
            window,
            withheld,
        })
    }

    /// Image `index`'s values before the window and the window they are shown through, for
    /// the medical formats (`None` for raster images, whose stored values are their pixels).
    pub fn stored(&self, index: usize) -> Result<Option<(Plane, Option<AppliedWindow>)>> {
        Ok(match &self.kind {
            Kind::Raster(_) => None,
            Kind::Volume(volume) => {
                let (width, height, values) = volume.plane(index);
                let plane = Plane {
                    width,
                    height,
                    channels: 1,
                    inverted: false,
                    values,
                };
                Some((plane, Some(volume.window().clone())))
            }
            Kind::Dicom(dicom) => Some(dicom.plane(index).map_err(|message| Error::Image {
                path: self.name.clone(),
                message,
            })?),
        })
    }
}
