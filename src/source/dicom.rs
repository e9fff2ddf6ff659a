//! DICOM Part 10 files, through the dicom-rs crates (parsing, and the pure-Rust decoders of
//! dicom-pixeldata: deflate, RLE, JPEG baseline/extended/lossless).
//!
//! Each frame is an image, named by series, instance and frame number only. Nothing read
//! from the file reaches a result but those numbers, the modality and the window: the
//! patient-identifying attributes are withheld, and which of them the file holds is said
//! ([`Dicom::withheld`]).
//!
//! Intensities as a viewer shows them: stored values through the modality LUT (rescale
//! slope and intercept), then the VOI (the file's first by default: a VOI LUT, PS3.3
//! C.11.2.1.1, else a window, C.11.2.1.2), MONOCHROME1 inverted so that higher values are
//! brighter on screen as in MONOCHROME2.

use std::borrow::Cow;

use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use crate::detect::plan::SeriesKey;
use crate::image::ImageLimits;
use crate::window::{
    AppliedWindow, Voi, VoiFunction, VoiLut, Window, WindowChoice, percentile_window,
};

use super::{DomainHint, Plane};

/// Transfer syntaxes read, by UID: the uncompressed ones, deflate, RLE and the JPEG
/// processes jpeg-decoder serves (baseline, extended at 8 bits, lossless and its first-order
/// form; 12-bit extended is refused by [`check_jpeg`]).
const READ: [&str; 9] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];

/// Patient- and study-identifying attributes of the PS3.15 basic application level
/// confidentiality profile (Table E.1-1): those a file most often fills. None is ever
/// written; the ones present are listed as withheld.
const IDENTIFYING: [(Tag, &str); 44] = [
    (tags::PATIENT_NAME, "PatientName"),
    (tags::PATIENT_ID, "PatientID"),
    (tags::PATIENT_BIRTH_DATE, "PatientBirthDate"),
    (tags::PATIENT_BIRTH_TIME, "PatientBirthTime"),
    (tags::PATIENT_SEX, "PatientSex"),
    (tags::PATIENT_AGE, "PatientAge"),
    (tags::PATIENT_SIZE, "PatientSize"),
    (tags::PATIENT_WEIGHT, "PatientWeight"),
    (tags::PATIENT_ADDRESS, "PatientAddress"),
    (tags::PATIENT_TELEPHONE_NUMBERS, "PatientTelephoneNumbers"),
    (tags::PATIENT_MOTHER_BIRTH_NAME, "PatientMotherBirthName"),
    (tags::OTHER_PATIENT_I_DS_SEQUENCE, "OtherPatientIDsSequence"),
    (tags::OTHER_PATIENT_NAMES, "OtherPatientNames"),
    (Tag(0x0010, 0x2160), "EthnicGroup"),
    (tags::PATIENT_COMMENTS, "PatientComments"),
    (tags::ADDITIONAL_PATIENT_HISTORY, "AdditionalPatientHistory"),
    (Tag(0x0010, 0x1090), "MedicalRecordLocator"),
    (tags::ACCESSION_NUMBER, "AccessionNumber"),
    (tags::ADMISSION_ID, "AdmissionID"),
    (tags::STUDY_ID, "StudyID"),
    (tags::STUDY_DATE, "StudyDate"),
    (tags::STUDY_TIME, "StudyTime"),
    (tags::SERIES_DATE, "SeriesDate"),
    (tags::SERIES_TIME, "SeriesTime"),
    (tags::ACQUISITION_DATE, "AcquisitionDate"),
    (tags::CONTENT_DATE, "ContentDate"),
    (tags::STUDY_DESCRIPTION, "StudyDescription"),
    (tags::SERIES_DESCRIPTION, "SeriesDescription"),
    (tags::INSTITUTION_NAME, "InstitutionName"),
    (tags::INSTITUTION_ADDRESS, "InstitutionAddress"),
    (
        tags::INSTITUTIONAL_DEPARTMENT_NAME,
        "InstitutionalDepartmentName",
    ),
    (tags::REFERRING_PHYSICIAN_NAME, "ReferringPhysicianName"),
    (tags::PERFORMING_PHYSICIAN_NAME, "PerformingPhysicianName"),
    (tags::PHYSICIANS_OF_RECORD, "PhysiciansOfRecord"),
    (
        tags::NAME_OF_PHYSICIANS_READING_STUDY,
        "NameOfPhysiciansReadingStudy",
    ),
    (tags::OPERATORS_NAME, "OperatorsName"),
    (tags::REQUESTING_PHYSICIAN, "RequestingPhysician"),
    (tags::STATION_NAME, "StationName"),
    (tags::DEVICE_SERIAL_NUMBER, "DeviceSerialNumber"),
    (tags::STUDY_INSTANCE_UID, "StudyInstanceUID"),
    (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"),
    (tags::SOP_INSTANCE_UID, "SOPInstanceUID"),
    (tags::FRAME_OF_REFERENCE_UID, "FrameOfReferenceUID"),
    (tags::IMAGE_COMMENTS, "ImageComments"),
];

/// Whether `bytes` are a DICOM Part 10 file (the `DICM` mark after the 128-byte preamble).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// An opened DICOM file.
pub struct Dicom {
    object: DefaultDicomObject,
    frames: usize,
    rows: u32,
    columns: u32,
    samples: usize,
    monochrome1: bool,
    /// The file's rescale (slope, intercept) and VOIs (LUTs, then windows), for frames whose
    /// functional groups (enhanced multi-frame) hold none of their own.
    rescale: (f64, f64),
    windows: Vec<AppliedWindow>,
    /// PixelRepresentation 1: a VOI LUT's first input value is signed.
    signed: bool,
    choice: WindowChoice,
    series: i64,
    instance: i64,
    /// SeriesInstanceUID, for grouping a series' files only: never shown (see `Debug`).
    series_uid: Option<String>,
    /// The domain Modality and Body Part Examined point to.
    hint: Option<DomainHint>,
    withheld: Vec<&'static str>,
    /// RLE lossless: its segments are checked before decoding (see `check_rle`).
    rle: bool,
    /// A JPEG process: each frame's header is checked before decoding (see `check_jpeg`).
    jpeg: bool,
    bytes_per_sample: usize,
}

impl std::fmt::Debug for Dicom {
    /// Only what may be shown: never the attributes themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dicom")
            .field("series", &self.series)
            .field("instance", &self.instance)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Dicom {
    /// Parses `bytes`; `Err` holds what is wrong (never an attribute's value).
    pub fn read(
        bytes: &[u8],
        limits: &ImageLimits,
        choice: WindowChoice,
    ) -> std::result::Result<Dicom, String> {
        super::dicom_lengths::declared_lengths_fit(bytes)?;
        let object = OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .map_err(|e| {
                format!("cannot be parsed as DICOM ({e}); the file may be truncated or corrupt")
            })?;
        let syntax = object
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string();
        if !READ.contains(&syntax.as_str()) {
            let name = TransferSyntaxRegistry
                .get(&syntax)
                .map_or("an unknown transfer syntax", |ts| ts.name());
            return Err(format!(
                "uses transfer syntax {syntax} ({name}), which duoclip cannot decode; \
                 transcode it to explicit VR little endian first, e.g. `gdcmconv --raw IN OUT` \
                 (GDCM) or `dcmdjpls`/`dcmdjp2k`/`dcmdjpeg IN OUT` (DCMTK)"
            ));
        }
        let int = |tag: Tag| -> Option<i64> {
            attribute(&object, tag).and_then(|e| e.to_int::<i64>().ok())
        };
        let text = |tag: Tag| -> Option<String> {
            attribute(&object, tag)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim().to_string())
        };
        let (Some(rows), Some(columns)) = (int(tags::ROWS), int(tags::COLUMNS)) else {
            return Err("holds no image (no Rows/Columns): it may be a report, a \
                        DICOMDIR or a presentation state"
                .into());
        };
        if attribute(&object, tags::PIXEL_DATA).is_none() {
            return Err("holds no pixel data".into());
        }
        let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1);
        let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        let size = |n: i64| u32::try_from(n).ok().filter(|&n| n > 0);
        let (Some(rows), Some(columns)) = (size(rows), size(columns)) else {
            return Err(format!(
                "declares {columns}×{rows} pixels: the header is corrupt"
            ));
        };
        if !(1..=1_000_000).contains(&frames) || !(samples == 1 || samples == 3) {
            return Err(format!(
                "declares {frames} frames of {samples} samples per pixel: the header is \
                 corrupt or the layout unsupported (1 or 3 samples)"
            ));
        }
        limits.check(columns, rows)?;
        let voxels = u64::from(rows) * u64::from(columns) * frames as u64 * samples as u64;
        if voxels > limits.max_voxels {
            return Err(format!(
                "declares {frames} frames of {columns}×{rows} pixels, more than the limit \
                 of {} samples in one file; split the frames, or raise ImageLimits max_voxels",
                limits.max_voxels
            ));
        }
        // The data must hold the frames declared: each frame is decoded on its own, so a
        // header claiming thousands of frames over a few bytes would cost time per frame.
        let bits = int(tags::BITS_ALLOCATED).unwrap_or(8);
        let pixel_data = object
            .element(tags::PIXEL_DATA)
            .map_err(|_| "holds no pixel data")?;
        let held = match pixel_data.value().fragments() {
            Some(fragments) => fragments.len() as u64 >= frames as u64,
            None => {
                let frame_bits = u64::from(rows) * u64::from(columns) * samples as u64;
                let needed = (frame_bits * frames as u64 * bits.clamp(1, 64) as u64).div_ceil(8);
                pixel_data.value().to_bytes().map_or(0, |b| b.len()) as u64 >= needed
            }
        };
        if !held {
            return Err(format!(
                "declares {frames} frame(s) of {columns}×{rows} pixels that its pixel data \
                 does not hold: the file is truncated or its header corrupt"
            ));
        }
        let photometric = text(tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
        let jpeg = syntax.starts_with("1.2.840.10008.1.2.4.");
        match (photometric.as_str(), samples) {
            ("MONOCHROME1" | "MONOCHROME2", 1) | ("RGB", 3) => {}
            // jpeg-decoder turns JPEG's YCbCr into RGB itself.
            ("YBR_FULL" | "YBR_FULL_422", 3) if jpeg => {}
            (other, n) => {
                return Err(format!(
                    "has photometric interpretation {other:?} with {n} samples per pixel; \
                     duoclip reads MONOCHROME1/2 and RGB: convert it, e.g. with \
                     `gdcmconv --raw` or `dcmconv +cl`"
                ));
            }
        }
        let signed = int(tags::PIXEL_REPRESENTATION) == Some(1);
        let withheld = IDENTIFYING
            .iter()
            .filter(|(tag, _)| attribute(&object, *tag).is_some())
            .map(|&(_, name)| name)
            .collect();
        let dicom = Dicom {
            frames: frames as usize,
            rows,
            columns,
            samples: samples as usize,
            monochrome1: photometric == "MONOCHROME1",
            rescale: rescale_in(&object).unwrap_or((1.0, 0.0)),
            windows: voi_in(&object, signed),
            signed,
            choice,
            series: int(tags::SERIES_NUMBER).unwrap_or(0),
            instance: int(tags::INSTANCE_NUMBER).unwrap_or(0),
            series_uid: text(tags::SERIES_INSTANCE_UID)
                .map(|uid| uid.trim_end_matches('\0').to_string())
                .filter(|uid| !uid.is_empty()),
            hint: domain_hint(
                text(tags::MODALITY).as_deref(),
                text(tags::BODY_PART_EXAMINED).as_deref(),
            ),
            withheld,
            rle: syntax == "1.2.840.10008.1.2.5",
            jpeg,
            bytes_per_sample: (int(tags::BITS_ALLOCATED).unwrap_or(8).clamp(1, 64) as usize)
                .div_ceil(8),
            object,
        };
        if jpeg {
            dicom.check_jpeg(0)?;
        }
        // A window asked for by number must be there (in the first frame at least).
        dicom.chosen_window(dicom.frame_values(0).1)?;
        Ok(dicom)
    }

    /// How many frames (images) the file holds.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// `series=S,instance=I,frame=F` (F from 1), the only names a DICOM image gets.
    pub fn label(&self, frame: usize) -> String {
        format!(
            "series={},instance={},frame={}",
            self.series,
            self.instance,
            frame + 1
        )
    }

    /// The file's series and InstanceNumber, where it names its series.
    pub fn series_key(&self) -> Option<SeriesKey> {
        let uid = self.series_uid.clone()?;
        Some(SeriesKey::new(uid, self.instance))
    }

    /// The prompt domain the file's Modality and Body Part Examined point to.
    pub fn suggested_domain(&self) -> Option<DomainHint> {
        self.hint.clone()
    }

    /// The identifying attributes the file holds, none of which is ever written.
    pub fn withheld(&self) -> &[&'static str] {
        &self.withheld
    }

    /// Frame `frame`'s values after the modality LUT, and the window it is shown through
    /// (`None` for 8-bit colour, shown as stored).
    pub fn plane(
        &self,
        frame: usize,
    ) -> std::result::Result<(Plane, Option<AppliedWindow>), String> {
        if self.rle {
            self.check_rle(frame)
                .map_err(|why| format!("frame {}: the RLE data is corrupt ({why})", frame + 1))?;
        }
        if self.jpeg {
            self.check_jpeg(frame)?;
        }
        let decoded = self
            .object
            .decode_pixel_data_frame(frame as u32)
            .map_err(|e| format!("frame {}: the pixel data does not decode ({e})", frame + 1))?;
        let raw: Vec<f64> = decoded
            .to_vec_frame_with_options(
                0,
                &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
            )
            .map_err(|e| format!("frame {}: the pixel data does not convert ({e})", frame + 1))?;
        let expected = self.rows as usize * self.columns as usize * self.samples;
        if raw.len() != expected {
            return Err(format!(
                "frame {}: decodes to {} samples where {}×{}×{} were declared",
                frame + 1,
                raw.len(),
                self.columns,
                self.rows,
                self.samples
            ));
        }
        let ((slope, intercept), windows) = self.frame_values(frame);
        let colour = self.samples == 3;
        let values = if colour {
            raw
        } else {
            raw.into_iter().map(|v| v * slope + intercept).collect()
        };
        let plane = Plane {
            width: self.columns as usize,
            height: self.rows as usize,
            channels: self.samples,
            inverted: self.monochrome1,
            values,
        };
        let window = match self.chosen_window(windows)? {
            Some(w) => Some(w),
            None if colour && decoded.bits_allocated() == 8 => None,
            None => {
                let mut copy: Vec<f32> = plane.values.iter().map(|&v| v as f32).collect();
                let found = percentile_window(&mut copy)
                    .ok_or_else(|| format!("frame {}: no finite value", frame + 1))?;
                Some(match self.choice {
                    WindowChoice::Auto => AppliedWindow {
                        source: format!("{} (the file has no window)", found.source),
                        ..found
                    },
                    _ => found,
                })
            }
        };
        Ok((plane, window))
    }
}

impl Dicom {
    /// Frame `frame`'s rescale (slope, intercept) and windows: from its own functional group
    /// or the shared one (enhanced multi-frame, PS3.3 C.7.6.16), else the file's.
    fn frame_values(&self, frame: usize) -> ((f64, f64), Vec<AppliedWindow>) {
        let group = |sequence: Tag, index: usize| first_item(&self.object, sequence, index);
        let groups = [
            group(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame),
            group(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0),
        ];
        let in_groups = |macro_sequence: Tag| {
            groups
                .iter()
                .flatten()
                .filter_map(move |g| first_item(g, macro_sequence, 0))
        };
        let rescale = in_groups(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
            .find_map(rescale_in)
            .unwrap_or(self.rescale);
        let windows = in_groups(tags::FRAME_VOILUT_SEQUENCE)
            .map(|group| voi_in(group, self.signed))
            .find(|w| !w.is_empty())
            .unwrap_or_else(|| self.windows.clone());
        (rescale, windows)
    }

    /// The VOI `--window` picks among `windows` (the file's VOI LUTs, then its windows), or
    /// `None` to find a percentile window (or, for 8-bit colour, to show the values as stored).
    fn chosen_window(
        &self,
        windows: Vec<AppliedWindow>,
    ) -> std::result::Result<Option<AppliedWindow>, String> {
        Ok(match self.choice {
            WindowChoice::Auto => windows.into_iter().next(),
            WindowChoice::File(n) => Some(windows.get(n - 1).cloned().ok_or_else(|| {
                let luts = windows
                    .iter()
                    .filter(|w| matches!(w.window, Voi::Lut(_)))
                    .count();
                let held = match luts {
                    0 => format!("{} window(s)", windows.len()),
                    _ => format!("{luts} VOI LUT(s) and {} window(s)", windows.len() - luts),
                };
                let range = match windows.len() {
                    0 => String::new(),
                    count => format!("file:1 to file:{count} (VOI LUTs first), "),
                };
                format!(
                    "has {held} of its own, not a VOI {n}; give ‹window› {range}auto, \
                     percentile or CENTRE,WIDTH"
                )
            })?),
            WindowChoice::Percentile => None,
            fixed => fixed.fixed(),
        })
    }

    /// What dicom-pixeldata's JPEG adapter and jpeg-decoder assume of frame `frame`'s stream
    /// without checking: the adapter copies the decoded samples into a buffer sized by the
    /// DICOM header (a larger stream would panic it), and jpeg-decoder reads DCT data at 8 bits
    /// only. The stream's frame header (SOFn) must declare the DICOM image's size, samples and
    /// bytes per sample.
    fn check_jpeg(&self, frame: usize) -> std::result::Result<(), String> {
        let at = |why: String| format!("frame {}: {why}", frame + 1);
        let Some(stream) = self.jpeg_stream(frame) else {
            // No fragment for the frame: dicom-pixeldata says so when decoding.
            return Ok(());
        };
        let (marker, precision, height, width, components) = jpeg_frame_header(&stream)
            .ok_or_else(|| at("the JPEG data holds no frame header (SOF): it is corrupt".into()))?;
        let lossless = matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF);
        if !lossless && precision != 8 {
            return Err(at(format!(
                "is {precision}-bit JPEG (DCT, SOF{}), which duoclip's pure-Rust JPEG decoder \
                 does not read (it reads 8-bit DCT and lossless JPEG); transcode it to \
                 explicit VR little endian first, e.g. `gdcmconv --raw IN OUT` (GDCM) or \
                 `dcmdjpeg IN OUT` (DCMTK)",
                marker - 0xC0
            )));
        }
        let bytes = if precision > 8 { 2 } else { 1 };
        if (
            u32::from(width),
            u32::from(height),
            usize::from(components),
            bytes,
        ) != (self.columns, self.rows, self.samples, self.bytes_per_sample)
        {
            return Err(at(format!(
                "the JPEG data holds {width}×{height} pixels of {components} sample(s) at \
                 {precision} bits where the DICOM header declares {}×{} of {} at {} bits \
                 allocated: the file is corrupt",
                self.columns,
                self.rows,
                self.samples,
                8 * self.bytes_per_sample
            )));
        }
        Ok(())
    }

    /// Frame `frame`'s JPEG stream, gathered from its fragments as dicom-pixeldata's JPEG
    /// adapter gathers it (one fragment per frame, else by the basic offset table).
    fn jpeg_stream(&self, frame: usize) -> Option<Cow<'_, [u8]>> {
        let value = self.object.element(tags::PIXEL_DATA).ok()?.value();
        let fragments = value.fragments()?;
        if fragments.len() == 1 || fragments.len() == self.frames {
            return fragments.get(frame).map(|f| Cow::Borrowed(&f[..]));
        }
        let table = value.offset_table()?;
        let start = match table.get(frame) {
            Some(&offset) => offset as usize,
            None if frame == 0 => 0,
            None => return None,
        };
        let next = table.get(frame + 1).map(|&o| o as usize);
        let (mut offset, mut stream) = (0usize, Vec::new());
        for fragment in fragments {
            if offset >= start {
                stream.extend_from_slice(fragment);
            }
            offset += fragment.len() + 8;
            if next.is_some_and(|next| offset >= next) {
                break;
            }
        }
        Some(Cow::Owned(stream))
    }

    /// What dicom-pixeldata's RLE decoder assumes of frame `frame`'s fragment without checking
    /// (it indexes past the end otherwise): a 64-byte header of one segment per byte of
    /// each sample, offsets rising within the fragment, and every segment unpacking to at
    /// least rows × columns bytes (PS3.5 G.3).
    fn check_rle(&self, frame: usize) -> std::result::Result<(), String> {
        let fragment = self
            .object
            .element(tags::PIXEL_DATA)
            .ok()
            .and_then(|e| e.value().fragments())
            .and_then(|f| f.get(frame))
            .ok_or("no fragment for this frame")?;
        let word = |at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(fragment.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let segments = word(0).ok_or("shorter than its header")?;
        let expected = self.samples * self.bytes_per_sample;
        if segments != expected || fragment.len() < 64 {
            return Err(format!("{segments} segments where {expected} are needed"));
        }
        let mut bounds: Vec<usize> = (1..=segments).filter_map(|i| word(4 * i)).collect();
        bounds.push(fragment.len());
        let pixels = self.rows as usize * self.columns as usize;
        for (k, pair) in bounds.windows(2).enumerate() {
            let segment = fragment
                .get(pair[0]..pair[1])
                .filter(|_| pair[0] >= 64)
                .ok_or_else(|| format!("segment {} lies outside the fragment", k + 1))?;
            if unpacked_len(segment) < pixels {
                return Err(format!(
                    "segment {} unpacks to fewer than {pixels} bytes",
                    k + 1
                ));
            }
        }
        Ok(())
    }
}

/// The first frame header (SOFn) of a JPEG stream: (marker, precision, height, width,
/// components), or `None` when none comes before the first scan.
fn jpeg_frame_header(stream: &[u8]) -> Option<(u8, u8, u16, u16, u8)> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*stream.get(at)?, *stream.get(at + 1)?]));
    let mut at = 0;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while *stream.get(at)? == 0xFF && *stream.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *stream.get(at)? != 0xFF {
            return None;
        }
        let marker = *stream.get(at + 1)?;
        at += 2;
        match marker {
            // SOI, RSTn, TEM: no length.
            0xD8 | 0xD0..=0xD7 | 0x01 => continue,
            // SOS or EOI before any frame header.
            0xDA | 0xD9 => return None,
            _ => {}
        }
        let length = usize::from(u16_at(at)?);
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let precision = *stream.get(at + 2)?;
            let (height, width) = (u16_at(at + 3)?, u16_at(at + 5)?);
            return Some((marker, precision, height, width, *stream.get(at + 7)?));
        }
        at += length.max(2);
    }
}

/// How many bytes a PackBits segment unpacks to, counted as dicom-pixeldata's reader reads
/// it (a literal run cut short by the end counts only what is there).
fn unpacked_len(segment: &[u8]) -> usize {
    let (mut at, mut out) = (0, 0usize);
    while at < segment.len() {
        let header = segment[at] as i8;
        at += 1;
        match header {
            -127..=-1 => {
                if at >= segment.len() {
                    break;
                }
                out += (1 - isize::from(header)) as usize;
                at += 1;
            }
            0..=127 => {
                let run = header as usize + 1;
                out += run.min(segment.len() - at);
                at += run;
            }
            -128 => {}
        }
    }
    out
}

/// The built-in domain a Modality (0008,0060) and Body Part Examined (0018,0015) point to.
/// The reason names only values from this table, never other text of the file.
fn domain_hint(modality: Option<&str>, body_part: Option<&str>) -> Option<DomainHint> {
    let modality = modality?.to_ascii_uppercase();
    let part = body_part
        .map(str::to_ascii_uppercase)
        .filter(|p| !p.is_empty());
    // The body part shown with the modality: the one that decided, else none.
    let (domain, modality, shown): (_, &str, Option<&str>) =
        match (modality.as_str(), part.as_deref()) {
            ("MR", Some(p @ ("HEAD" | "BRAIN"))) => ("brain-mri", "MR", Some(p)),
            ("CT", Some(p @ ("ABDOMEN" | "LIVER"))) => ("liver-ct", "CT", Some(p)),
            (m @ ("OPT" | "OCT"), _) => ("retinal-oct", m, None),
            (m @ ("CR" | "DX"), Some("CHEST")) => ("chest-xray", m, Some("CHEST")),
            (m @ ("CR" | "DX"), None) => ("chest-xray", m, None),
            ("SM", _) => ("histopathology", "SM", None),
            _ => return None,
        };
    let because = match (shown, &part) {
        (Some(p), _) => format!("DICOM Modality {modality}, Body Part Examined {p}"),
        (None, None) => format!("DICOM Modality {modality}, no Body Part Examined"),
        (None, Some(_)) => format!("DICOM Modality {modality}"),
    };
    Some(DomainHint { domain, because })
}

/// Attribute `tag` of `object`, where present and readable.
fn attribute(object: &InMemDicomObject, tag: Tag) -> Option<&InMemElement> {
    object.element_opt(tag).ok().flatten()
}

/// Item `index` of sequence `tag` in `object`.
fn first_item(object: &InMemDicomObject, tag: Tag, index: usize) -> Option<&InMemDicomObject> {
    attribute(object, tag)?.value().items()?.get(index)
}

/// The rescale (slope, intercept) `object` holds, if it holds either (a zero slope is 1).
fn rescale_in(object: &InMemDicomObject) -> Option<(f64, f64)> {
    let float =
        |tag: Tag| -> Option<f64> { attribute(object, tag).and_then(|e| e.to_float64().ok()) };
    let (slope, intercept) = (float(tags::RESCALE_SLOPE), float(tags::RESCALE_INTERCEPT));
    if slope.is_none() && intercept.is_none() {
        return None;
    }
    let slope = slope.filter(|s| *s != 0.0).unwrap_or(1.0);
    Some((slope, intercept.unwrap_or(0.0)))
}

/// The VOIs `object` holds, in the order `--window file:N` numbers them: its VOI LUT Sequence
/// items, then its windows. `signed`: PixelRepresentation 1, whose LUT Descriptor's first
/// input value is signed (US or SS, PS3.3 C.11.2.1.1). Malformed ones are passed over.
fn voi_in(object: &InMemDicomObject, signed: bool) -> Vec<AppliedWindow> {
    let luts = attribute(object, tags::VOILUT_SEQUENCE)
        .and_then(|e| e.value().items())
        .into_iter()
        .flatten()
        .filter_map(|item| lut_in(item, signed))
        .map(Voi::Lut);
    let vois: Vec<Voi> = luts.chain(windows_in(object).map(Voi::Window)).collect();
    let count = vois.len();
    vois.into_iter()
        .enumerate()
        .map(|(i, window)| AppliedWindow {
            source: match window {
                Voi::Lut(_) => format!("file VOI LUT {} of {count}", i + 1),
                Voi::Window(_) => format!("file {} of {count}", i + 1),
            },
            window,
        })
        .collect()
}

/// A VOI LUT Sequence item's table (LUT Descriptor: entries, 0 for 65536; first input value
/// mapped; bits per entry), where its descriptor and data agree.
fn lut_in(item: &InMemDicomObject, signed: bool) -> Option<VoiLut> {
    let descriptor_element = attribute(item, tags::LUT_DESCRIPTOR)?;
    let descriptor: Vec<i64> = descriptor_element.to_multi_int().ok()?;
    let [entries, first, bits] = descriptor[..] else {
        return None;
    };
    // The entry count and bits are always unsigned, even in an SS descriptor.
    let entries = match entries & 0xFFFF {
        0 => 65_536,
        n => n as usize,
    };
    let first_mapped = match descriptor_element.vr() {
        VR::SS => first as i16 as i32,
        _ if signed => (first & 0xFFFF) as u16 as i16 as i32,
        _ => (first & 0xFFFF) as i32,
    };
    let bits = u8::try_from(bits & 0xFFFF)
        .ok()
        .filter(|b| (1..=16).contains(b))?;
    let data: Vec<u16> = match attribute(item, tags::LUT_DATA)?.value().primitive()? {
        PrimitiveValue::U16(words) => words.to_vec(),
        // OB or an unknown VR: the words' little-endian bytes.
        PrimitiveValue::U8(bytes) => bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect(),
        other => other
            .to_multi_int::<i64>()
            .ok()?
            .into_iter()
            .map(|v| (v & 0xFFFF) as u16)
            .collect(),
    };
    let table = data.get(..entries)?;
    Some(VoiLut {
        first_mapped,
        bits,
        table: table.into(),
    })
}

/// The windows `object` holds (WindowCenter/WindowWidth pairs, with its VOI LUT function).
fn windows_in(object: &InMemDicomObject) -> impl Iterator<Item = Window> {
    let floats = |tag: Tag| -> Vec<f64> {
        attribute(object, tag)
            .and_then(|e| e.to_multi_float64().ok())
            .unwrap_or_default()
    };
    let function = attribute(object, tags::VOILUT_FUNCTION)
        .and_then(|e| e.to_str().ok())
        .map(|s| match s.trim() {
            "LINEAR_EXACT" => VoiFunction::LinearExact,
            "SIGMOID" => VoiFunction::Sigmoid,
            _ => VoiFunction::Linear,
        })
        .unwrap_or(VoiFunction::Linear);
    let (centres, widths) = (floats(tags::WINDOW_CENTER), floats(tags::WINDOW_WIDTH));
    centres
        .into_iter()
        .zip(widths)
        // A width below 1 is not a window (PS3.3 C.11.2.1.2); such a pair is passed over.
        .filter(|(c, w)| *w >= 1.0 && w.is_finite() && c.is_finite())
        .map(move |(centre, width)| Window {
            centre,
            width,
            function,
        })
}

#[cfg(test)]
mod tests {
    use super::domain_hint;

    fn hint(modality: &str, part: Option<&str>) -> Option<(&'static str, String)> {
        domain_hint(Some(modality), part).map(|h| (h.domain, h.because))
    }

    #[test]
    fn modality_and_body_part_point_to_a_domain_and_say_why() {
        let cases = [
            (
                "MR",
                Some("HEAD"),
                "brain-mri",
                "DICOM Modality MR, Body Part Examined HEAD",
            ),
            (
                "mr",
                Some("brain"),
                "brain-mri",
                "DICOM Modality MR, Body Part Examined BRAIN",
            ),
            (
                "CT",
                Some("LIVER"),
                "liver-ct",
                "DICOM Modality CT, Body Part Examined LIVER",
            ),
            (
                "DX",
                None,
                "chest-xray",
                "DICOM Modality DX, no Body Part Examined",
            ),
            (
                "CR",
                Some("CHEST"),
                "chest-xray",
                "DICOM Modality CR, Body Part Examined CHEST",
            ),
            // A body part that did not decide is not repeated.
            ("OPT", Some("EYE"), "retinal-oct", "DICOM Modality OPT"),
            (
                "SM",
                None,
                "histopathology",
                "DICOM Modality SM, no Body Part Examined",
            ),
        ];
        for (modality, part, domain, because) in cases {
            assert_eq!(hint(modality, part), Some((domain, because.to_string())));
        }
        for (modality, part) in [
            ("MR", None),
            ("MR", Some("KNEE")),
            ("CT", Some("HEAD")),
            ("DX", Some("HAND")),
            ("US", None),
        ] {
            assert_eq!(hint(modality, part), None, "{modality} {part:?}");
        }
        assert_eq!(domain_hint(None, Some("HEAD")), None);
    }
}
