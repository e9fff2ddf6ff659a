//! NIfTI-1 and NIfTI-2 volumes (`.nii`, `.nii.gz`): the research format of BraTS and LiTS.
//!
//! Read by hand rather than through the `nifti` crate: that crate reads NIfTI-1 only (its
//! dimensions are unsigned, so a negative one reads as 65535) and needs nalgebra for the
//! affine, while both headers are fixed offsets. Nothing is allocated before the header's
//! dimensions have passed the limits, and a gzip stream is never inflated past the size the
//! header declares.
//!
//! A volume becomes 2-D slices along one voxel axis ([`SliceAxis`], default the one closest
//! to the patient's superior–inferior direction by the affine: axial slices). A slice's
//! columns run along the lower remaining voxel axis and its rows along the higher one, the
//! highest index at the top, which shows RAS-stored data the way viewers do (anterior or
//! superior up).

use std::io::Read;

use flate2::read::GzDecoder;

use crate::error::{Error, Result};
use crate::image::ImageLimits;
use crate::window::{AppliedWindow, Window, WindowChoice, percentile_window};

/// At most this many voxels (every k-th one) enter the percentile window: exact for volumes
/// up to 256×256×128, 32 MB beyond, so that a 512×512×300 int16 volume (157 MB) is read
/// within 1.3 times its size, the browser's bound.
const PERCENTILE_SAMPLE: usize = 1 << 23;
/// A slice is background, and skipped, when fewer than this fraction of its voxels are
/// brighter than [`BACKGROUND_LEVEL`]: it would show as (near) black, with nothing to score.
const BACKGROUND_FRACTION: f64 = 0.01;
/// The windowed level (0..1) below which a voxel counts as background: above MR background
/// noise, below any tissue in a percentile window.
const BACKGROUND_LEVEL: f64 = 0.05;

/// Which voxel axis a volume is sliced along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SliceAxis {
    /// The axis the affine points closest to superior–inferior.
    #[default]
    Axial,
    /// Closest to anterior–posterior.
    Coronal,
    /// Closest to left–right.
    Sagittal,
    /// Voxel axis 0, 1 or 2 (i, j, k), whatever the affine says.
    Voxel(usize),
}

impl SliceAxis {
    /// Parses `axial`, `coronal`, `sagittal`, `i`, `j` or `k`.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim() {
            "axial" => SliceAxis::Axial,
            "coronal" => SliceAxis::Coronal,
            "sagittal" => SliceAxis::Sagittal,
            "i" => SliceAxis::Voxel(0),
            "j" => SliceAxis::Voxel(1),
            "k" => SliceAxis::Voxel(2),
            other => {
                return Err(Error::Option {
                    option: "slice_axis".into(),
                    message: format!(
                        "{other:?}: give axial, coronal or sagittal (by the file's affine), \
                         or a voxel axis i, j or k"
                    ),
                });
            }
        })
    }
}

/// A volume in memory: its stored voxels, how to scale them, and the slices kept.
#[derive(Debug)]
pub struct Volume {
    dims: [usize; 3],
    datatype: Datatype,
    big_endian: bool,
    slope: f64,
    inter: f64,
    /// The voxels as stored (i fastest, then j, then k).
    raw: Vec<u8>,
    axis: usize,
    /// Voxel indices along `axis` of the slices kept.
    slices: Vec<usize>,
    window: AppliedWindow,
    /// Where the voxels lie in the world, for maps written back over them.
    geometry: Geometry,
}

/// The header fields that place a volume's voxels in the world, as read: a map written with
/// them overlays the volume in any viewer.
#[derive(Debug, Clone, PartialEq)]
struct Geometry {
    version2: bool,
    pixdim: [f64; 8],
    xyzt_units: i64,
    qform_code: i64,
    sform_code: i64,
    quatern: [f64; 6],
    srow: [[f64; 4]; 3],
}

/// The voxel types read, by NIfTI datatype code.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Datatype {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl Datatype {
    fn from_code(code: i64) -> std::result::Result<Self, String> {
        Ok(match code {
            2 => Datatype::U8,
            256 => Datatype::I8,
            4 => Datatype::I16,
            512 => Datatype::U16,
            8 => Datatype::I32,
            768 => Datatype::U32,
            1024 => Datatype::I64,
            1280 => Datatype::U64,
            16 => Datatype::F32,
            64 => Datatype::F64,
            other => {
                return Err(format!(
                    "has voxel datatype {other} (complex, RGB or unknown); duoclip reads \
                     integer and real scalar volumes: convert it, e.g. with nibabel to float32"
                ));
            }
        })
    }

    fn size(self) -> usize {
        match self {
            Datatype::U8 | Datatype::I8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::U32 | Datatype::F32 => 4,
            Datatype::I64 | Datatype::U64 | Datatype::F64 => 8,
        }
    }
}

/// Whether `bytes` start like a NIfTI-1 or NIfTI-2 single file (either byte order).
pub fn is_nifti(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..4) else {
        return false;
    };
    let le = i32::from_le_bytes(head.try_into().expect("4 bytes"));
    let be = i32::from_be_bytes(head.try_into().expect("4 bytes"));
    [348, 540].contains(&le) || [348, 540].contains(&be)
}

/// Whether `bytes` are a gzip stream (a `.nii.gz`).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// The header fields duoclip uses, from either version.
struct Header {
    big_endian: bool,
    version2: bool,
    dims: [i64; 8],
    datatype: i64,
    pixdim: [f64; 8],
    vox_offset: f64,
    slope: f64,
    inter: f64,
    cal: (f64, f64),
    qform_code: i64,
    sform_code: i64,
    quatern: [f64; 6],
    srow: [[f64; 4]; 3],
    xyzt_units: i64,
}

/// Little reader of fixed-offset fields in one byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Fields<'_> {
    fn raw<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b: [u8; N] = self.bytes[at..at + N].try_into().expect("in the header");
        if self.big_endian {
            b.reverse();
        }
        b
    }
    fn i16(&self, at: usize) -> i64 {
        i16::from_le_bytes(self.raw(at)).into()
    }
    fn i32(&self, at: usize) -> i64 {
        i32::from_le_bytes(self.raw(at)).into()
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.raw(at))
    }
    fn f32(&self, at: usize) -> f64 {
        f32::from_le_bytes(self.raw(at)).into()
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.raw(at))
    }
}

impl Header {
    /// Parses the first 348 (NIfTI-1) or 540 (NIfTI-2) bytes.
    fn parse(bytes: &[u8]) -> std::result::Result<Header, String> {
        let size = |big_endian| Fields { bytes, big_endian }.i32(0);
        let big_endian = ![348, 540].contains(&size(false));
        let f = Fields { bytes, big_endian };
        let version2 = size(big_endian) == 540;
        let needed = if version2 { 540 } else { 348 };
        if bytes.len() < needed {
            return Err(format!(
                "is truncated: {} bytes, shorter than the {needed}-byte NIfTI header",
                bytes.len()
            ));
        }
        let magic = if version2 {
            &bytes[4..7]
        } else {
            &bytes[344..347]
        };
        if magic == b"ni1" || magic == b"ni2" {
            return Err("is a NIfTI header without its volume (a .hdr/.img pair); \
                        convert it to a single .nii file, e.g. with nibabel or fslchfiletype"
                .into());
        }
        if magic != b"n+1" && magic != b"n+2" {
            return Err(
                "has a NIfTI header size but not its magic (\"n+1\" or \"n+2\"); \
                        the file is not NIfTI or is corrupt"
                    .into(),
            );
        }
        let h = if version2 {
            Header {
                big_endian,
                version2,
                dims: std::array::from_fn(|i| f.i64(16 + 8 * i)),
                datatype: f.i16(12),
                pixdim: std::array::from_fn(|i| f.f64(104 + 8 * i)),
                vox_offset: f.i64(168) as f64,
                slope: f.f64(176),
                inter: f.f64(184),
                cal: (f.f64(200), f.f64(192)),
                qform_code: f.i32(344),
                sform_code: f.i32(348),
                quatern: std::array::from_fn(|i| f.f64(352 + 8 * i)),
                srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c))),
                xyzt_units: f.i32(500),
            }
        } else {
            Header {
                big_endian,
                version2,
                dims: std::array::from_fn(|i| f.i16(40 + 2 * i)),
                datatype: f.i16(70),
                pixdim: std::array::from_fn(|i| f.f32(76 + 4 * i)),
                vox_offset: f.f32(108),
                slope: f.f32(112),
                inter: f.f32(116),
                cal: (f.f32(128), f.f32(124)),
                qform_code: f.i16(252),
                sform_code: f.i16(254),
                quatern: std::array::from_fn(|i| f.f32(256 + 4 * i)),
                srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
                xyzt_units: bytes[123].into(),
            }
        };
        Ok(h)
    }

    /// The three spatial dimensions, checked.
    fn spatial_dims(&self) -> std::result::Result<[usize; 3], String> {
        let rank = self.dims[0];
        if !(1..=7).contains(&rank) {
            return Err(format!(
                "declares {rank} dimensions (dim[0]); NIfTI allows 1 to 7: the header is corrupt"
            ));
        }
        let mut dims = [1usize; 3];
        for axis in 1..=rank as usize {
            let n = self.dims[axis];
            if n < 1 {
                return Err(format!(
                    "declares a {} size of {n} along axis {axis} (dim[{axis}]); sizes must be \
                     at least 1: the header is corrupt",
                    if n < 0 { "negative" } else { "zero" }
                ));
            }
            if axis <= 3 {
                dims[axis - 1] = n as usize;
                let size = self.pixdim[axis];
                if size == 0.0 || !size.is_finite() {
                    return Err(format!(
                        "declares a voxel size of {size} along axis {axis} (pixdim[{axis}]); \
                         voxel sizes must be non-zero: fix the header, e.g. with nibabel's \
                         set_zooms"
                    ));
                }
            } else if n > 1 {
                return Err(format!(
                    "holds {n} volumes along axis {axis} (a 4-D or higher series); duoclip \
                     scores one 3-D volume: split it first, e.g. with fslsplit or nibabel"
                ));
            }
        }
        Ok(dims)
    }

    /// The voxel-to-world matrix's first three columns (the voxel axes in world space), by
    /// the NIfTI rule: sform if set, else qform, else the voxel sizes alone.
    fn axes(&self) -> [[f64; 3]; 3] {
        let p = &self.pixdim;
        if self.sform_code > 0 {
            return std::array::from_fn(|c| std::array::from_fn(|r| self.srow[r][c]));
        }
        let scale = [p[1], p[2], p[3]];
        if self.qform_code <= 0 {
            return std::array::from_fn(|c| {
                std::array::from_fn(|r| if r == c { scale[c] } else { 0.0 })
            });
        }
        let [b, c, d, ..] = self.quatern;
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rotation = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if p[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [scale[0], scale[1], scale[2] * qfac];
        std::array::from_fn(|col| std::array::from_fn(|row| rotation[row][col] * scale[col]))
    }
}

impl Volume {
    /// Reads a `.nii` or `.nii.gz` from `bytes`, which become the volume's voxels: an
    /// uncompressed file loses its header in place, a compressed one is freed once inflated,
    /// so a volume never costs twice its size. `Err` holds what is wrong, for the caller to
    /// name the file.
    pub fn read(
        bytes: Vec<u8>,
        limits: &ImageLimits,
        window: WindowChoice,
        axis: SliceAxis,
        stride: usize,
    ) -> std::result::Result<Volume, String> {
        let (header, raw) = if is_gzip(&bytes) {
            let inflated = inflate(&bytes, limits)?;
            // Freed before the window's sample is taken: the peak is the volume and a sample.
            drop(bytes);
            inflated
        } else {
            let header = Header::parse(&bytes)?;
            let raw = voxels_of(&header, limits, bytes)?;
            (header, raw)
        };
        Self::from_parts(&header, raw, limits, window, axis, stride)
    }

    fn from_parts(
        header: &Header,
        raw: Vec<u8>,
        limits: &ImageLimits,
        window: WindowChoice,
        axis: SliceAxis,
        stride: usize,
    ) -> std::result::Result<Volume, String> {
        let (dims, datatype, _, _) = layout(header, limits)?;
        let slope_set = header.slope != 0.0 && header.slope.is_finite();
        let mut volume = Volume {
            dims,
            datatype,
            big_endian: header.big_endian,
            slope: if slope_set { header.slope } else { 1.0 },
            inter: if slope_set && header.inter.is_finite() {
                header.inter
            } else {
                0.0
            },
            raw,
            axis: pick_axis(axis, &header.axes()),
            slices: Vec::new(),
            window: AppliedWindow {
                window: Window::from_range(0.0, 1.0).into(),
                source: String::new(),
            },
            geometry: Geometry {
                version2: header.version2,
                pixdim: header.pixdim,
                xyzt_units: header.xyzt_units,
                qform_code: header.qform_code,
                sform_code: header.sform_code,
                quatern: header.quatern,
                srow: header.srow,
            },
        };
        volume.window = volume.choose_window(window, header.cal)?;
        let kept: Vec<usize> = (0..dims[volume.axis])
            .step_by(stride.max(1))
            .filter(|&s| !volume.is_background(s))
            .collect();
        if kept.is_empty() {
            return Err(format!(
                "has no slice with content: every slice has fewer than {}% of its voxels above \
                 {}% of the window {}; give another ‹window›",
                BACKGROUND_FRACTION * 100.0,
                BACKGROUND_LEVEL * 100.0,
                volume.window.source
            ));
        }
        volume.slices = kept;
        Ok(volume)
    }

    fn choose_window(
        &self,
        choice: WindowChoice,
        (cal_min, cal_max): (f64, f64),
    ) -> std::result::Result<AppliedWindow, String> {
        match choice {
            WindowChoice::Auto | WindowChoice::Percentile => {
                let count = self.voxel_count();
                let step = count.div_ceil(PERCENTILE_SAMPLE).max(1);
                let mut sample: Vec<f32> = (0..count)
                    .step_by(step)
                    .map(|i| self.value(i) as f32)
                    .collect();
                percentile_window(&mut sample)
                    .ok_or_else(|| "holds no finite voxel value, nothing to show".into())
            }
            WindowChoice::File(1) if cal_max > cal_min => Ok(AppliedWindow {
                window: Window::from_range(cal_min, cal_max).into(),
                source: "file cal_min-cal_max".into(),
            }),
            WindowChoice::File(_) => Err(format!(
                "has one display range of its own at most (cal_min {cal_min}, cal_max \
                 {cal_max}, {}); give ‹window› file:1 only where cal_max > cal_min, else \
                 auto or CENTRE,WIDTH",
                if cal_max > cal_min { "set" } else { "unset" }
            )),
            fixed => Ok(fixed.fixed().expect("presets and given windows are fixed")),
        }
    }

    fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }

    /// Voxel `i` (linear index), scaled by scl_slope/scl_inter.
    fn value(&self, i: usize) -> f64 {
        let size = self.datatype.size();
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(&self.raw[i * size..(i + 1) * size]);
        if self.big_endian {
            b[..size].reverse();
        }
        let stored = match self.datatype {
            Datatype::U8 => f64::from(b[0]),
            Datatype::I8 => f64::from(b[0] as i8),
            Datatype::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            Datatype::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            Datatype::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Datatype::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Datatype::I64 => i64::from_le_bytes(b) as f64,
            Datatype::U64 => u64::from_le_bytes(b) as f64,
            Datatype::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Datatype::F64 => f64::from_le_bytes(b),
        };
        stored * self.slope + self.inter
    }

    /// Width and height of a slice, and the linear voxel index of each of its pixels in
    /// row-major order.
    fn slice_layout(&self, slice: usize) -> (usize, usize, Vec<usize>) {
        let [nx, ny, _] = self.dims;
        let (u, v) = self.plane_axes();
        let (w, h) = (self.dims[u], self.dims[v]);
        let index = |coords: [usize; 3]| coords[0] + nx * (coords[1] + ny * coords[2]);
        let mut indices = Vec::with_capacity(w * h);
        for row in 0..h {
            for col in 0..w {
                let mut coords = [0; 3];
                coords[self.axis] = slice;
                coords[u] = col;
                coords[v] = h - 1 - row;
                indices.push(index(coords));
            }
        }
        (w, h, indices)
    }

    /// The voxel axes along a slice's columns and rows.
    fn plane_axes(&self) -> (usize, usize) {
        match self.axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        }
    }

    /// A slice's width and height.
    pub fn slice_size(&self) -> (usize, usize) {
        let (u, v) = self.plane_axes();
        (self.dims[u], self.dims[v])
    }

    fn is_background(&self, slice: usize) -> bool {
        let (_, _, indices) = self.slice_layout(slice);
        let bright = indices
            .iter()
            .filter(|&&i| self.window.window.apply(self.value(i)) > BACKGROUND_LEVEL)
            .count();
        (bright as f64) < BACKGROUND_FRACTION * indices.len() as f64
    }

    /// The slices kept, as voxel indices along the slicing axis.
    pub fn slices(&self) -> &[usize] {
        &self.slices
    }

    /// `i=`, `j=` or `k=` and the voxel index of kept slice `n`.
    pub fn label(&self, n: usize) -> String {
        format!("{}={}", ["i", "j", "k"][self.axis], self.slices[n])
    }

    /// Kept slice `n`: width, height and its scaled values, row-major.
    pub fn plane(&self, n: usize) -> (usize, usize, Vec<f64>) {
        let (w, h, indices) = self.slice_layout(self.slices[n]);
        (w, h, indices.into_iter().map(|i| self.value(i)).collect())
    }

    /// The window every slice is shown through (one for the volume, so slices compare).
    pub fn window(&self) -> &AppliedWindow {
        &self.window
    }
}

/// A `.nii.gz`'s header and voxels, inflated no further than the header declares.
fn inflate(
    compressed: &[u8],
    limits: &ImageLimits,
) -> std::result::Result<(Header, Vec<u8>), String> {
    let mut stream = GzDecoder::new(compressed);
    let mut head = Vec::with_capacity(540);
    (&mut stream)
        .take(540)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot decompress the gzip data ({e}); the file may be truncated"))?;
    if !is_nifti(&head) {
        return Err(
            "is gzip-compressed but holds no NIfTI volume; duoclip reads gzip only as .nii.gz"
                .into(),
        );
    }
    let header = Header::parse(&head)?;
    let (_, _, offset, len) = layout(&header, limits)?;
    let total = offset + len;
    let mut data = head;
    data.try_reserve_exact(total.saturating_sub(data.len()))
        .map_err(|_| format!("needs {total} bytes of memory, more than is free"))?;
    stream
        .take((total - data.len().min(total)) as u64)
        .read_to_end(&mut data)
        .map_err(|e| {
            format!("cannot decompress the gzip data ({e}); the file may be truncated or corrupt")
        })?;
    let raw = voxels_of(&header, limits, data)?;
    Ok((header, raw))
}

/// The voxels of a whole file's `data`, in place: the header before them is removed (a
/// move within the buffer, no second allocation) and anything after them cut off.
fn voxels_of(
    header: &Header,
    limits: &ImageLimits,
    mut data: Vec<u8>,
) -> std::result::Result<Vec<u8>, String> {
    let (dims, _, offset, len) = layout(header, limits)?;
    let available = data.len().saturating_sub(offset);
    if available < len {
        return Err(format!(
            "is truncated: the header declares {}×{}×{} voxels ({len} bytes from byte \
             {offset}), the file holds {available}",
            dims[0], dims[1], dims[2]
        ));
    }
    data.truncate(offset + len);
    data.drain(..offset);
    Ok(data)
}

impl Volume {
    /// A map over this volume, as a gzip-compressed float32 NIfTI of the volume's grid and
    /// geometry (sform, qform, voxel sizes and units as read; the input's NIfTI version,
    /// little-endian), so that a viewer overlays it: kept slice `n` holds `map(n)` (row-major,
    /// [`Volume::slice_size`], as [`Volume::plane`] lays the slice out), every other voxel 0.
    /// The maps are asked for one at a time.
    pub fn map_volume<E>(
        &self,
        mut map: impl FnMut(usize) -> std::result::Result<Vec<f32>, E>,
    ) -> std::result::Result<Vec<u8>, E> {
        let mut voxels = vec![0f32; self.voxel_count()];
        for (n, &slice) in self.slices.iter().enumerate() {
            let (_, _, indices) = self.slice_layout(slice);
            for (index, value) in indices.into_iter().zip(map(n)?) {
                voxels[index] = value;
            }
        }
        let mut nifti = self.map_header();
        nifti.extend(voxels.iter().flat_map(|v| v.to_le_bytes()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &nifti).expect("writing to memory");
        Ok(gz.finish().expect("writing to memory"))
    }

    /// The header (and the empty extension flag) of a float32 map over this volume.
    fn map_header(&self) -> Vec<u8> {
        let g = &self.geometry;
        let at = if g.version2 {
            &MAP_FIELDS_2
        } else {
            &MAP_FIELDS_1
        };
        let mut h = Writer {
            bytes: vec![0; at.voxels],
            real: if g.version2 { 8 } else { 4 },
        };
        h.int(0, 4, at.size);
        h.bytes[at.magic.0..][..at.magic.1.len()].copy_from_slice(at.magic.1);
        let dims = [3, self.dims[0], self.dims[1], self.dims[2], 1, 1, 1, 1];
        for (i, &d) in dims.iter().enumerate() {
            h.int(at.dim.0 + at.dim.1 * i, at.dim.1, d as i64);
        }
        h.int(at.datatype, 2, 16); // float32
        h.int(at.datatype + 2, 2, 32); // bitpix
        h.reals(at.pixdim, &g.pixdim);
        match at.vox_offset {
            (offset, 8) => h.int(offset, 8, at.voxels as i64),
            (offset, _) => h.reals(offset, &[at.voxels as f64]),
        }
        h.reals(at.slope, &[1.0]);
        h.int(at.codes.0, at.codes.1, g.qform_code);
        h.int(at.codes.0 + at.codes.1, at.codes.1, g.sform_code);
        h.reals(at.quatern, &g.quatern);
        for (r, row) in g.srow.iter().enumerate() {
            h.reals(at.srow + 4 * h.real * r, row);
        }
        h.int(at.xyzt_units.0, at.xyzt_units.1, g.xyzt_units);
        h.bytes
    }
}

/// Where a NIfTI version keeps the fields a map's header sets: offsets, and `(offset,
/// width)` where the width differs between versions.
struct MapFields {
    size: i64,
    magic: (usize, &'static [u8]),
    dim: (usize, usize),
    datatype: usize,
    pixdim: usize,
    vox_offset: (usize, usize),
    slope: usize,
    codes: (usize, usize),
    quatern: usize,
    srow: usize,
    xyzt_units: (usize, usize),
    /// Where the voxels start: the header and 4 bytes of extension flags (none).
    voxels: usize,
}

const MAP_FIELDS_1: MapFields = MapFields {
    size: 348,
    magic: (344, b"n+1\0"),
    dim: (40, 2),
    datatype: 70,
    pixdim: 76,
    vox_offset: (108, 4),
    slope: 112,
    codes: (252, 2),
    quatern: 256,
    srow: 280,
    xyzt_units: (123, 1),
    voxels: 352,
};

const MAP_FIELDS_2: MapFields = MapFields {
    size: 540,
    magic: (4, b"n+2\0\r\n\x1a\n"),
    dim: (16, 8),
    datatype: 12,
    pixdim: 104,
    vox_offset: (168, 8),
    slope: 176,
    codes: (344, 4),
    quatern: 352,
    srow: 400,
    xyzt_units: (500, 4),
    voxels: 544,
};

/// Little-endian fields at fixed offsets of a header being written. Every value came from a
/// header of the same version, so narrowing to its widths is exact.
struct Writer {
    bytes: Vec<u8>,
    /// The width of the version's reals: 4 (NIfTI-1's f32) or 8.
    real: usize,
}

impl Writer {
    fn int(&mut self, at: usize, width: usize, v: i64) {
        self.bytes[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
    }

    fn reals(&mut self, at: usize, values: &[f64]) {
        for (i, &v) in values.iter().enumerate() {
            let start = at + self.real * i;
            match self.real {
                4 => self.bytes[start..start + 4].copy_from_slice(&(v as f32).to_le_bytes()),
                _ => self.bytes[start..start + 8].copy_from_slice(&v.to_le_bytes()),
            }
        }
    }
}

/// The voxel axis to slice along.
fn pick_axis(axis: SliceAxis, axes: &[[f64; 3]; 3]) -> usize {
    let world = match axis {
        SliceAxis::Voxel(v) => return v,
        SliceAxis::Sagittal => 0,
        SliceAxis::Coronal => 1,
        SliceAxis::Axial => 2,
    };
    // The voxel axis whose direction has the largest share along that world axis.
    let share = |c: usize| {
        let norm = axes[c].iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            axes[c][world].abs() / norm
        } else {
            0.0
        }
    };
    (0..3)
        .max_by(|&a, &b| share(a).total_cmp(&share(b)).then(b.cmp(&a)))
        .expect("three axes")
}

/// Dimensions, datatype, data offset and byte length, checked against `limits` before any
/// allocation.
fn layout(
    header: &Header,
    limits: &ImageLimits,
) -> std::result::Result<([usize; 3], Datatype, usize, usize), String> {
    let dims = header.spatial_dims()?;
    let datatype = Datatype::from_code(header.datatype)?;
    let voxels = dims
        .iter()
        .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64));
    match voxels {
        Some(v) if v <= limits.max_voxels => {}
        _ => {
            return Err(format!(
                "declares {}×{}×{} voxels, more than the limit of {} voxels; crop or \
                 downsample the volume, or raise ImageLimits max_voxels",
                dims[0], dims[1], dims[2], limits.max_voxels
            ));
        }
    }
    for (w, h) in [(dims[1], dims[2]), (dims[0], dims[2]), (dims[0], dims[1])] {
        if w.max(h) > limits.max_width.max(limits.max_height) as usize {
            return Err(format!(
                "declares {}×{}×{} voxels: a slice side is longer than the limit of {} pixels \
                 (‹max_side›)",
                dims[0], dims[1], dims[2], limits.max_width
            ));
        }
    }
    let offset = header.vox_offset;
    if !(0.0..=1e9).contains(&offset) {
        return Err(format!(
            "declares its voxels at byte {offset} (vox_offset): the header is corrupt"
        ));
    }
    let voxels = voxels.expect("checked") as usize;
    Ok((dims, datatype, offset as usize, voxels * datatype.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian NIfTI-1 of int16 `values` (i fastest) over `dims`, 1 mm voxels, no
    /// affine, voxels at byte 352.
    fn nifti1(dims: [i16; 3], values: &[i16]) -> Vec<u8> {
        let mut bytes = vec![0u8; 352];
        bytes[0..4].copy_from_slice(&348i32.to_le_bytes());
        for (i, d) in [3, dims[0], dims[1], dims[2], 1, 1, 1, 1]
            .iter()
            .enumerate()
        {
            bytes[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        bytes[70..72].copy_from_slice(&4i16.to_le_bytes());
        bytes[72..74].copy_from_slice(&16i16.to_le_bytes());
        for i in 0..8 {
            bytes[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
        }
        bytes[108..112].copy_from_slice(&352f32.to_le_bytes());
        bytes[344..348].copy_from_slice(b"n+1\0");
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes
    }

    fn read(bytes: Vec<u8>) -> Volume {
        let limits = ImageLimits::default();
        Volume::read(bytes, &limits, WindowChoice::Auto, SliceAxis::Voxel(2), 1).unwrap()
    }

    #[test]
    fn an_uncompressed_volume_keeps_the_given_buffer_as_its_voxels() {
        let values: Vec<i16> = (0..4 * 3 * 2).map(|v| v * 10).collect();
        let mut bytes = nifti1([4, 3, 2], &values);
        bytes.extend([7u8; 5]); // trailing bytes past the voxels are cut off
        let buffer = bytes.as_ptr();
        let volume = read(bytes);
        assert_eq!(volume.raw.as_ptr(), buffer, "the voxels were copied");
        assert_eq!(volume.raw.len(), 2 * values.len());
        let (w, h, plane) = volume.plane(1);
        assert_eq!((w, h), (4, 3));
        // Slice k=1, its highest j at the top: voxels 20..24 (j = 2) first.
        assert_eq!(&plane[..4], &[200.0, 210.0, 220.0, 230.0]);
    }
}
