//! Image decoding and CLIP preprocessing (METHOD.md §1).
//!
//! Everything here works on bytes, never on paths, so the same code runs natively and in the
//! browser (wasm32). The CLI reads the file; the web front end hands over a `Blob`'s bytes.
//!
//! Pipeline: [`decode`] (PNG, JPEG, TIFF, WebP, BMP → [`RgbImage`], RGB8) → [`to_clip_input`] (→ CHW f32,
//! `x/255`, bilinear resize to the model's input size, then `(x − mean)/std`).
//!
//! Colour handling in [`decode`], chosen to match what open_clip's `Image.open(p).convert("RGB")`
//! feeds the reference implementations wherever that is well defined:
//! - **Alpha is dropped, not composited.** A transparent pixel keeps the RGB stored under it,
//!   as Pillow's `convert("RGB")` does. Grey + alpha becomes grey replicated to R, G, B.
//! - **Grey** (1–16 bit) is replicated to R = G = B; low bit depths are expanded to the full
//!   0–255 range (1-bit white → 255).
//! - **16-bit and floating-point** images (PNG, TIFF) go through an intensity window
//!   ([`crate::window`]): the one asked for, else the 0.5th–99.5th percentile of all their
//!   colour samples, shared by the channels so colours keep their balance. Such files are
//!   microscopy, pathology and radiology exports whose stored range rarely matches the content
//!   (12-bit data in 16-bit words); Pillow's `v >> 8` would show most of them nearly black.
//! - **Palette PNG** is expanded through its palette (and tRNS, whose alpha is then dropped).
//! - **CMYK / YCCK JPEG** is converted to RGB by the `image` crate (zune-jpeg) with the naive
//!   formula R = (255 − C)(255 − K)/255 (likewise G from M, B from Y), reading the samples as
//!   Adobe-inverted the way Photoshop and Pillow write them. No ICC profile is applied. This
//!   agrees with Pillow's `convert("RGB")` to within JPEG rounding.
//! - EXIF orientation and ICC profiles are ignored, as in the reference pipelines.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use crate::error::{Error, Result};
use crate::window::{AppliedWindow, WindowChoice, percentile_window};

/// The formats [`decode`] reads, for messages.
pub const RASTER_FORMATS: &str = "PNG, JPEG, TIFF, WebP and BMP";

// The published constants verbatim (open_clip's OPENAI_DATASET_MEAN/STD), though f32
// rounds their last digit: greppable beats minimal.
/// CLIP's per-channel mean (R, G, B) of pixels scaled to [0, 1].
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel standard deviation (R, G, B) of pixels scaled to [0, 1].
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// The image sizes [`decode`] accepts. Checked against the file's header before any pixel
/// is decoded, so a small file that claims a huge size cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Widest accepted image, in pixels.
    pub max_width: u32,
    /// Tallest accepted image, in pixels.
    pub max_height: u32,
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Smallest accepted width and height: a few pixels carry no usable structure once
    /// stretched to the model's input size.
    pub min_side: u32,
    /// Most voxels accepted in one volume (NIfTI) or one multi-frame file (DICOM), all
    /// frames together: such files are held in memory as stored.
    pub max_voxels: u64,
}

impl Default for ImageLimits {
    /// 16384 × 16384 at most and 100 megapixels; at least 8 × 8. Decoding the largest
    /// accepted image needs about 1 GB transiently (16-bit RGBA worst case).
    fn default() -> Self {
        ImageLimits {
            max_width: 16_384,
            max_height: 16_384,
            max_pixels: 100_000_000,
            min_side: 8,
            // A 512 × 512 × 1900 CT: 1 GB as 16-bit integers.
            max_voxels: 500_000_000,
        }
    }
}

impl ImageLimits {
    /// `Err(message)` when a `width × height` image falls outside these limits.
    pub fn check(&self, width: u32, height: u32) -> std::result::Result<(), String> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_width || height > self.max_height || pixels > self.max_pixels {
            return Err(format!(
                "is {width}×{height} pixels ({pixels} pixels), larger than the limit of \
                 {}×{} and {} pixels; downscale the image, or raise the limit \
                 (‹max_pixels› / ‹max_side› of duoclip score and eval; ImageLimits \
                 max_width / max_height / max_pixels in the library)",
                self.max_width, self.max_height, self.max_pixels
            ));
        }
        if width < self.min_side || height < self.min_side {
            return Err(format!(
                "is {width}×{height} pixels, too small: both sides must be at least {} pixels \
                 (ImageLimits min_side)",
                self.min_side
            ));
        }
        Ok(())
    }

    /// The `image` crate's own limits, a second line of defence inside the decoder.
    fn for_decoder(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        // 8 bytes per pixel: the widest buffer PNG/JPEG decode into is 16-bit RGBA.
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8));
        limits
    }
}

/// A decoded image: 8-bit RGB, row-major, `data.len() == width * height * 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// A decoded image and the window that brought it to 8 bits, where one was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub image: RgbImage,
    pub window: Option<AppliedWindow>,
}

/// Decodes a PNG, JPEG, TIFF, WebP or BMP image from `bytes` into 8-bit RGB, windowing
/// 16-bit and floating-point samples with the automatic window.
///
/// `name` (a path or file name) only labels errors. The format is recognised from the
/// bytes, not the name. Sizes outside `limits` are refused from the header alone.
/// See the module docs for how alpha, grey, 16-bit, palette and CMYK inputs are converted.
pub fn decode(bytes: &[u8], name: &str, limits: &ImageLimits) -> Result<RgbImage> {
    decode_windowed(bytes, name, limits, WindowChoice::Auto).map(|d| d.image)
}

/// [`decode`] with the window for 16-bit and floating-point samples chosen by `window`
/// (8-bit images are shown as stored: no window is applied to them).
pub fn decode_windowed(
    bytes: &[u8],
    name: &str,
    limits: &ImageLimits,
    window: WindowChoice,
) -> Result<Decoded> {
    let format = sniff_format(bytes).map_err(|m| image_error(name, m))?;
    let (width, height) = reader(bytes, format).into_dimensions().map_err(|e| {
        image_error(
            name,
            format!("cannot read the {} header: {e}", label(format)),
        )
    })?;
    limits
        .check(width, height)
        .map_err(|m| image_error(name, m))?;

    let mut reader = reader(bytes, format);
    reader.limits(limits.for_decoder());
    let pixels = reader
        .decode()
        .map_err(|e| image_error(name, decode_failure(format, &e)))?;
    into_rgb(pixels, window).map_err(|m| image_error(name, m))
}

fn image_error(name: &str, message: String) -> Error {
    Error::Image {
        path: name.to_string(),
        message,
    }
}

/// Recognises the format from magic bytes: users' file names lie (`.png` that is a JPEG).
fn sniff_format(bytes: &[u8]) -> std::result::Result<ImageFormat, String> {
    if bytes.is_empty() {
        return Err(format!("is empty; duoclip reads {RASTER_FORMATS} images"));
    }
    if crate::source::dicom::is_dicom(bytes) || crate::source::nifti::is_nifti(bytes) {
        return Err(
            "is a DICOM or NIfTI file, which holds frames or slices rather than one \
                    image: open it as a source (duoclip::source::Source; `duoclip score` does)"
                .to_string(),
        );
    }
    match image::guess_format(bytes) {
        Ok(
            format @ (ImageFormat::Png
            | ImageFormat::Jpeg
            | ImageFormat::Tiff
            | ImageFormat::WebP
            | ImageFormat::Bmp),
        ) => Ok(format),
        Ok(other) => Err(format!(
            "is a {} image; duoclip reads only {RASTER_FORMATS}, convert it to PNG first",
            label(other)
        )),
        Err(_) => Err(format!(
            "is not an image duoclip reads (its first bytes match none of {RASTER_FORMATS}, \
             DICOM or NIfTI); convert it to PNG"
        )),
    }
}

fn reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    ImageReader::with_format(Cursor::new(bytes), format)
}

/// The name users know a format by ("JPEG", not the `jpg` extension).
fn label(format: ImageFormat) -> String {
    match format {
        ImageFormat::Png => "PNG".to_string(),
        ImageFormat::Jpeg => "JPEG".to_string(),
        other => other
            .extensions_str()
            .first()
            .map_or_else(|| format!("{other:?}"), |e| e.to_uppercase()),
    }
}

fn decode_failure(format: ImageFormat, error: &image::ImageError) -> String {
    match error {
        image::ImageError::Unsupported(_) => {
            format!(
                "uses a {} feature duoclip cannot read ({error}); re-save it as an 8-bit RGB PNG",
                label(format)
            )
        }
        image::ImageError::Limits(_) => {
            format!("needs more memory to decode than allowed ({error}); downscale the image")
        }
        _ => format!(
            "cannot decode the {} data ({error}); the file may be truncated or corrupt",
            label(format)
        ),
    }
}

/// Converts any decoded layout to RGB8 (see the module docs for the rules).
fn into_rgb(pixels: DynamicImage, window: WindowChoice) -> std::result::Result<Decoded, String> {
    let (width, height) = (pixels.width(), pixels.height());
    let grey = matches!(
        pixels,
        DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_)
    );
    // Grey is replicated to R, G, B and alpha dropped, as for 8-bit; samples stay as stored
    // (16-bit integers, or floats), since windows are given in stored values.
    let samples: Vec<f32> = match pixels {
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => pixels
            .into_rgb16()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            pixels.into_rgb32f().into_raw()
        }
        // `into_rgb8` drops alpha without compositing, replicates grey, and expands low bit
        // depths to the full range.
        narrow => {
            return Ok(Decoded {
                image: RgbImage {
                    width,
                    height,
                    data: narrow.into_rgb8().into_raw(),
                },
                window: None,
            });
        }
    };
    let applied = match window {
        WindowChoice::Auto | WindowChoice::Percentile => {
            // A grey image's percentiles are those of its grey levels, not of three copies.
            let mut values: Vec<f32> = samples
                .iter()
                .step_by(if grey { 3 } else { 1 })
                .copied()
                .collect();
            percentile_window(&mut values).ok_or("holds no finite sample value, nothing to show")?
        }
        WindowChoice::File(_) => {
            return Err(
                "has no window of its own (only DICOM files do); give a window \
                        as CENTRE,WIDTH or use ‹window› auto"
                    .into(),
            );
        }
        fixed => fixed.fixed().expect("presets and given windows are fixed"),
    };
    let data = samples
        .iter()
        .map(|&v| applied.window.to_u8(f64::from(v)))
        .collect();
    Ok(Decoded {
        image: RgbImage {
            width,
            height,
            data,
        },
        window: Some(applied),
    })
}

/// Turns an image into the CLIP vision input: CHW f32 of shape `[3, size, size]`.
///
/// Order: pixels are scaled to [0, 1] (`x / 255`), resized to `size × size` with
/// [`resize_bilinear_chw`] (torch `F.interpolate(bilinear, align_corners=False,
/// antialias=False)` on the float tensor; aspect ratio is not kept), then normalized per
/// channel with `(x − CLIP_MEAN) / CLIP_STD`. An image that is already `size × size` is not
/// resampled at all.
pub fn to_clip_input(img: &RgbImage, size: u32) -> Vec<f32> {
    let (h, w, s) = (img.height as usize, img.width as usize, size as usize);
    let unit = to_unit_chw(img);
    let mut x = if (h, w) == (s, s) {
        unit
    } else {
        resize_bilinear_chw(&unit, 3, h, w, s, s)
    };
    normalize_clip(&mut x, s * s);
    x
}

/// Interleaved RGB8 → planar CHW f32 in [0, 1].
pub fn to_unit_chw(img: &RgbImage) -> Vec<f32> {
    let plane = img.width as usize * img.height as usize;
    let mut chw = vec![0.0f32; 3 * plane];
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = f32::from(px[c]) / 255.0;
        }
    }
    chw
}

fn normalize_clip(chw: &mut [f32], plane: usize) {
    for (c, channel) in chw.chunks_exact_mut(plane).enumerate() {
        for v in channel {
            *v = (*v - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
}

/// Bilinear resize of a CHW tensor, equal (to float rounding) to torch
/// `F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False,
/// antialias=False)`: pixel centres are aligned, sources clamped at the border, and
/// downsampling does not low-pass filter (only the nearest 2 × 2 inputs contribute).
///
/// # Panics
/// If `data.len() != channels * h * w`, or the input is empty while the output is not
/// (caller bugs, never user input).
pub fn resize_bilinear_chw(
    data: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    resize_bilinear(data, channels, (h, w), (out_h, out_w), false)
}

/// Bilinear resize of a CHW tensor like torch `F.interpolate(..., mode="bilinear",
/// align_corners=True)`: the corner pixels of input and output coincide. METHOD §4
/// upsamples anomaly maps this way.
///
/// # Panics
/// As [`resize_bilinear_chw`].
pub fn resize_bilinear_chw_align_corners(
    data: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    resize_bilinear(data, channels, (h, w), (out_h, out_w), true)
}

/// The two input samples an output sample interpolates between, and their weights.
#[derive(Debug, Clone, Copy)]
struct Tap {
    lo: usize,
    hi: usize,
    w_lo: f32,
    w_hi: f32,
}

/// One axis' taps, computed in f32 with torch's formulas (`area_pixel_compute_scale`,
/// `area_pixel_compute_source_index`, `guard_index_and_lambda`) so results match bit for bit
/// in the common case.
fn axis_taps(len: usize, out_len: usize, align_corners: bool) -> Vec<Tap> {
    let scale = if align_corners {
        if out_len > 1 {
            (len - 1) as f32 / (out_len - 1) as f32
        } else {
            0.0
        }
    } else {
        len as f32 / out_len as f32
    };
    (0..out_len)
        .map(|i| {
            let src = if align_corners {
                scale * i as f32
            } else {
                // Centres of output pixels mapped back; torch clamps negatives to 0.
                (scale * (i as f32 + 0.5) - 0.5).max(0.0)
            };
            let lo = (src.floor() as usize).min(len - 1);
            let hi = if lo + 1 < len { lo + 1 } else { lo };
            let w_hi = (src - lo as f32).clamp(0.0, 1.0);
            Tap {
                lo,
                hi,
                w_lo: 1.0 - w_hi,
                w_hi,
            }
        })
        .collect()
}

fn resize_bilinear(
    data: &[f32],
    channels: usize,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
    align_corners: bool,
) -> Vec<f32> {
    assert_eq!(
        data.len(),
        channels * h * w,
        "resize_bilinear: data is not channels × h × w"
    );
    let out_len = channels * out_h * out_w;
    if out_len == 0 {
        return Vec::new();
    }
    assert!(
        h > 0 && w > 0,
        "resize_bilinear: cannot resize an empty input to a non-empty output"
    );
    let rows = axis_taps(h, out_h, align_corners);
    let cols = axis_taps(w, out_w, align_corners);
    let mut out = Vec::with_capacity(out_len);
    for plane in data.chunks_exact(h * w) {
        for r in &rows {
            let (top, bottom) = (&plane[r.lo * w..][..w], &plane[r.hi * w..][..w]);
            for c in &cols {
                // Same association as torch: interpolate along x, then along y.
                let t = top[c.lo] * c.w_lo + top[c.hi] * c.w_hi;
                let b = bottom[c.lo] * c.w_lo + bottom[c.hi] * c.w_hi;
                out.push(t * r.w_lo + b * r.w_hi);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), format)
            .expect("encode test image");
        bytes
    }

    fn decode_ok(bytes: &[u8]) -> RgbImage {
        decode(bytes, "test.png", &ImageLimits::default()).expect("decodes")
    }

    fn message(result: Result<RgbImage>) -> (String, String) {
        match result {
            Err(Error::Image { path, message }) => (path, message),
            other => panic!("expected Error::Image, got {other:?}"),
        }
    }

    // ---- a minimal PNG writer, for layouts the image crate's encoder does not produce ----

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        out
    }

    /// zlib stream of one stored (uncompressed) deflate block.
    fn zlib_stored(raw: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01, 0x01];
        let len = raw.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(raw);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in raw {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        out.extend_from_slice(&((b << 16) | a).to_be_bytes());
        out
    }

    fn ihdr(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
        let mut data = width.to_be_bytes().to_vec();
        data.extend_from_slice(&height.to_be_bytes());
        data.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
        chunk(b"IHDR", &data)
    }

    /// A PNG from already filtered scanlines (each starting with filter byte 0).
    fn png(header: Vec<u8>, extra: &[Vec<u8>], scanlines: &[u8]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(header);
        for c in extra {
            out.extend_from_slice(c);
        }
        out.extend(chunk(b"IDAT", &zlib_stored(scanlines)));
        out.extend(chunk(b"IEND", &[]));
        out
    }

    // ---- decode ----

    #[test]
    fn rgb8_png_round_trips() {
        let buf = ImageBuffer::from_fn(9, 8, |x, y| Rgb([x as u8 * 20, y as u8 * 30, 7]));
        let img = decode_ok(&encode(
            DynamicImage::ImageRgb8(buf.clone()),
            ImageFormat::Png,
        ));
        assert_eq!((img.width, img.height), (9, 8));
        assert_eq!(img.data, buf.into_raw());
    }

    #[test]
    fn rgba_png_drops_alpha_without_compositing() {
        let buf = ImageBuffer::from_fn(8, 8, |x, _| {
            Rgba([10, 20, 30, if x == 0 { 0 } else { 128 }])
        });
        let img = decode_ok(&encode(DynamicImage::ImageRgba8(buf), ImageFormat::Png));
        assert!(img.data.chunks_exact(3).all(|p| p == [10, 20, 30]));
    }

    #[test]
    fn gray_and_gray_alpha_png_replicate_grey() {
        let gray = ImageBuffer::from_fn(8, 8, |x, _| Luma([x as u8 * 30]));
        let img = decode_ok(&encode(DynamicImage::ImageLuma8(gray), ImageFormat::Png));
        assert_eq!(&img.data[..9], &[0, 0, 0, 30, 30, 30, 60, 60, 60]);

        let gray_alpha = ImageBuffer::from_fn(8, 8, |_, _| LumaA([77u8, 0]));
        let img = decode_ok(&encode(
            DynamicImage::ImageLumaA8(gray_alpha),
            ImageFormat::Png,
        ));
        assert!(img.data.iter().all(|&v| v == 77));
    }

    #[test]
    fn sixteen_bit_grey_gets_the_percentile_window_and_records_it() {
        // 12-bit data in 16-bit words: 0..=4095 along x and y; as stored it would be black.
        let gray16 = ImageBuffer::from_fn(64, 64, |x, y| Luma([(x * 64 + y) as u16]));
        let bytes = encode(DynamicImage::ImageLuma16(gray16), ImageFormat::Png);
        let decoded = decode_windowed(&bytes, "a.png", &ImageLimits::default(), WindowChoice::Auto)
            .expect("decodes");
        let applied = decoded.window.expect("16-bit gets a window");
        assert_eq!(applied.source, "percentile 0.5-99.5");
        // numpy.percentile(arange(4096), [0.5, 99.5]) == [20.475, 4074.525]
        let w = applied.window.as_window().expect("a window");
        assert!(
            (w.centre - 2047.5).abs() < 1e-6 && (w.width - 4054.05).abs() < 1e-6,
            "{w:?}"
        );
        let at = |x: usize, y: usize| decoded.image.data[3 * (y * 64 + x)];
        assert_eq!((at(0, 0), at(63, 63), at(32, 0)), (0, 255, w.to_u8(2048.0)));
        assert_eq!(w.to_u8(2048.0), 128);
    }

    #[test]
    fn sixteen_bit_rgb_shares_one_window_and_a_given_window_wins() {
        let rgb16 = ImageBuffer::from_fn(8, 8, |x, _| Rgb([x as u16 * 100, 400, 0]));
        let bytes = encode(DynamicImage::ImageRgb16(rgb16), ImageFormat::Png);
        let given = WindowChoice::parse("400,801").expect("valid window");
        let decoded =
            decode_windowed(&bytes, "c.png", &ImageLimits::default(), given).expect("decodes");
        assert_eq!(decoded.window.expect("recorded").source, "given");
        // Centre 400, width 801: 0 → 0, 400 → 128 (half way), 700 → 223.
        assert_eq!(&decoded.image.data[..3], &[0, 128, 0]);
        assert_eq!(&decoded.image.data[21..24], &[223, 128, 0]);
        let eight = encode(
            DynamicImage::ImageRgb8(ImageBuffer::from_fn(8, 8, |_, _| Rgb([1u8, 2, 3]))),
            ImageFormat::Png,
        );
        let plain = decode_windowed(&eight, "d.png", &ImageLimits::default(), given).unwrap();
        assert_eq!(
            (plain.window, &plain.image.data[..3]),
            (None, &[1u8, 2, 3][..])
        );
    }

    #[test]
    fn tiff_webp_and_bmp_decode() {
        let buf = ImageBuffer::from_fn(9, 8, |x, y| Rgb([x as u8 * 20, y as u8 * 30, 7]));
        for format in [ImageFormat::Tiff, ImageFormat::WebP, ImageFormat::Bmp] {
            let img = decode_ok(&encode(DynamicImage::ImageRgb8(buf.clone()), format));
            assert_eq!(img.data, buf.clone().into_raw(), "{format:?}");
        }
        let gray16 = ImageBuffer::from_fn(8, 8, |x, _| Luma([x as u16 * 1000]));
        let bytes = encode(DynamicImage::ImageLuma16(gray16), ImageFormat::Tiff);
        let decoded = decode_windowed(&bytes, "g.tif", &ImageLimits::default(), WindowChoice::Auto)
            .expect("16-bit TIFF decodes");
        assert!(decoded.window.is_some());
        assert_eq!((decoded.image.data[0], decoded.image.data[21]), (0, 255));
    }

    #[test]
    fn palette_png_expands_through_the_palette() {
        // 8×8, 8-bit indices alternating 0 and 1 along x; index 1 is transparent (tRNS).
        let plte = chunk(b"PLTE", &[255, 0, 0, 0, 128, 255]);
        let trns = chunk(b"tRNS", &[255, 0]);
        let scanlines: Vec<u8> = (0..8)
            .flat_map(|_| std::iter::once(0).chain((0..8).map(|x| x % 2)))
            .collect();
        let img = decode_ok(&png(ihdr(8, 8, 8, 3), &[plte, trns], &scanlines));
        assert_eq!(&img.data[..6], &[255, 0, 0, 0, 128, 255]);
    }

    #[test]
    fn one_bit_gray_png_expands_to_full_range() {
        // 8×8, one byte per row: 0b1010_1010 → white, black, white, ...
        let scanlines: Vec<u8> = (0..8).flat_map(|_| [0u8, 0b1010_1010]).collect();
        let img = decode_ok(&png(ihdr(8, 8, 1, 0), &[], &scanlines));
        assert_eq!(&img.data[..6], &[255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn rgb_and_gray_jpeg_decode() {
        let buf = ImageBuffer::from_fn(16, 16, |_, _| Rgb([200u8, 100, 50]));
        let img = decode_ok(&encode(DynamicImage::ImageRgb8(buf), ImageFormat::Jpeg));
        assert_eq!((img.width, img.height), (16, 16));
        for px in img.data.chunks_exact(3) {
            assert!(
                px.iter()
                    .zip([200, 100, 50])
                    .all(|(&a, b): (&u8, i32)| (i32::from(a) - b).abs() <= 3),
                "{px:?}"
            );
        }

        let gray = ImageBuffer::from_fn(16, 16, |_, _| Luma([90u8]));
        let img = decode_ok(&encode(DynamicImage::ImageLuma8(gray), ImageFormat::Jpeg));
        assert!(
            img.data
                .chunks_exact(3)
                .all(|p| p[0] == p[1] && p[1] == p[2] && p[0].abs_diff(90) <= 2)
        );
    }

    #[test]
    fn cmyk_jpeg_converts_like_pillow() {
        // Written by tools/gen_image_fixtures.py (Pillow, Adobe APP14, inverted CMYK):
        // left block C=255 → RGB (0,255,255); right block K=128 → Pillow RGB (127,127,127).
        let bytes = include_bytes!("../tests/fixtures/images/cmyk.jpg");
        let img = decode(bytes, "cmyk.jpg", &ImageLimits::default()).expect("CMYK JPEG decodes");
        assert_eq!((img.width, img.height), (16, 8));
        let at = |x: usize, y: usize| &img.data[3 * (y * 16 + x)..][..3];
        for (x, expect) in [(4, [0u8, 255, 255]), (12, [127, 127, 127])] {
            let got = at(x, 4);
            assert!(
                got.iter().zip(expect).all(|(&g, e)| g.abs_diff(e) <= 2),
                "x={x}: {got:?} vs {expect:?}"
            );
        }
    }

    #[test]
    fn text_file_named_png_is_refused_with_accepted_formats() {
        let (path, msg) = message(decode(
            b"just some text\n",
            "x.png",
            &ImageLimits::default(),
        ));
        assert_eq!(path, "x.png");
        assert!(msg.contains("PNG") && msg.contains("DICOM"), "{msg}");
    }

    #[test]
    fn other_formats_and_empty_files_are_named() {
        let (_, msg) = message(decode(
            b"GIF89a\x01\x00\x01\x00",
            "a.gif",
            &ImageLimits::default(),
        ));
        assert!(msg.contains("GIF") && msg.contains("PNG"), "{msg}");
        let (_, msg) = message(decode(b"", "empty.png", &ImageLimits::default()));
        assert!(msg.contains("empty"), "{msg}");
        let dicom = include_bytes!("../tests/fixtures/medical/ct_explicit.dcm");
        let (_, msg) = message(decode(dicom, "ct.dcm", &ImageLimits::default()));
        assert!(msg.contains("DICOM") && msg.contains("Source"), "{msg}");
    }

    #[test]
    fn truncated_png_is_reported_as_corrupt() {
        let buf = ImageBuffer::from_fn(32, 32, |x, y| Rgb([x as u8, y as u8, (x * y) as u8]));
        let bytes = encode(DynamicImage::ImageRgb8(buf), ImageFormat::Png);
        let (path, msg) = message(decode(
            &bytes[..bytes.len() / 2],
            "cut.png",
            &ImageLimits::default(),
        ));
        assert_eq!(path, "cut.png");
        assert!(msg.contains("truncated or corrupt"), "{msg}");
    }

    #[test]
    fn header_bomb_is_refused_before_decoding() {
        // Valid IHDR (correct CRC) claiming 30000×30000 RGB; the pixel data is a few bytes.
        let bytes = png(ihdr(30_000, 30_000, 8, 2), &[], &[0, 1, 2, 3]);
        let (path, msg) = message(decode(&bytes, "bomb.png", &ImageLimits::default()));
        assert_eq!(path, "bomb.png");
        assert!(
            msg.contains("30000×30000") && msg.contains("16384") && msg.contains("raise"),
            "{msg}"
        );
    }

    #[test]
    fn jpeg_header_bomb_is_refused_before_decoding() {
        // Patch the SOF0 frame header of a real 16×16 JPEG to claim 60000×60000.
        let buf = ImageBuffer::from_fn(16, 16, |_, _| Rgb([1u8, 2, 3]));
        let mut bytes = encode(DynamicImage::ImageRgb8(buf), ImageFormat::Jpeg);
        let sof = bytes
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .expect("baseline JPEG has SOF0");
        bytes[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let (_, msg) = message(decode(&bytes, "bomb.jpg", &ImageLimits::default()));
        assert!(
            msg.contains("60000×60000") && msg.contains("16384"),
            "{msg}"
        );
    }

    #[test]
    fn pixel_count_limit_applies_within_side_limits() {
        let bytes = png(ihdr(12_000, 12_000, 8, 2), &[], &[0]);
        let (_, msg) = message(decode(&bytes, "big.png", &ImageLimits::default()));
        assert!(
            msg.contains("144000000") && msg.contains("100000000"),
            "{msg}"
        );
        let strict = ImageLimits {
            max_width: 8,
            ..ImageLimits::default()
        };
        let buf = ImageBuffer::from_fn(9, 8, |_, _| Rgb([0u8, 0, 0]));
        let bytes = encode(DynamicImage::ImageRgb8(buf), ImageFormat::Png);
        assert!(decode(&bytes, "wide.png", &strict).is_err());
    }

    #[test]
    fn tiny_image_is_refused() {
        let buf = ImageBuffer::from_fn(1, 1, |_, _| Rgb([1u8, 2, 3]));
        let bytes = encode(DynamicImage::ImageRgb8(buf), ImageFormat::Png);
        let (_, msg) = message(decode(&bytes, "dot.png", &ImageLimits::default()));
        assert!(msg.contains("1×1") && msg.contains("at least 8"), "{msg}");
        let relaxed = ImageLimits {
            min_side: 1,
            ..ImageLimits::default()
        };
        assert_eq!(decode(&bytes, "dot.png", &relaxed).unwrap().data, [1, 2, 3]);
    }

    // ---- preprocessing ----

    #[test]
    fn clip_input_of_right_size_is_not_resampled() {
        let data: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 5) as u8).collect();
        let img = RgbImage {
            width: 4,
            height: 4,
            data: data.clone(),
        };
        let x = to_clip_input(&img, 4);
        assert_eq!(x.len(), 3 * 16);
        for (i, px) in data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let expect = (f32::from(px[c]) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
                assert_eq!(x[c * 16 + i], expect);
            }
        }
    }

    #[test]
    fn clip_input_resizes_scaled_pixels_then_normalizes() {
        let data: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 17 % 256) as u8).collect();
        let img = RgbImage {
            width: 5,
            height: 3,
            data,
        };
        let mut expect = resize_bilinear_chw(&to_unit_chw(&img), 3, 3, 5, 7, 7);
        normalize_clip(&mut expect, 49);
        assert_eq!(to_clip_input(&img, 7), expect);
    }

    #[test]
    fn resize_matches_torch_interpolate() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/images/resize.json")).unwrap();
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        for case in doc["cases"].as_array().unwrap() {
            let dim = |k: &str| case[k].as_u64().unwrap() as usize;
            let (c, h, w, oh, ow) = (
                dim("channels"),
                dim("in_h"),
                dim("in_w"),
                dim("out_h"),
                dim("out_w"),
            );
            let input = floats(&case["input"]);
            let ours = [
                (
                    resize_bilinear_chw(&input, c, h, w, oh, ow),
                    "align_corners_false",
                ),
                (
                    resize_bilinear_chw_align_corners(&input, c, h, w, oh, ow),
                    "align_corners_true",
                ),
            ];
            for (got, key) in ours {
                let want = floats(&case[key]);
                assert_eq!(got.len(), want.len());
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(err <= 1e-6, "{h}×{w} → {oh}×{ow} {key}: max error {err}");
            }
        }
    }

    #[test]
    fn resize_to_same_size_is_identity_and_empty_output_is_empty() {
        let x: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 * 0.1).collect();
        assert_eq!(resize_bilinear_chw(&x, 2, 3, 4, 3, 4), x);
        assert_eq!(resize_bilinear_chw_align_corners(&x, 2, 3, 4, 3, 4), x);
        assert!(resize_bilinear_chw(&x, 2, 3, 4, 0, 5).is_empty());
    }
}
