//! The files a score call is given (Blobs, Files or bytes), opened with the same readers as
//! the CLI (`crate::source`): a volume or a multi-frame DICOM becomes one image per slice or
//! frame. Files are read only when needed and one at a time, so a folder of volumes is never
//! all in memory.

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::error::{WebError, WebResult};
use super::object;
use crate::detect::plan::{FileShape, Stack, stacks};
use crate::image::RgbImage;
use crate::source::{Part, ReadOptions, Source, dicom, nifti};

/// What `name` a file gets in errors: its own (`File.name`), else its place in the call.
pub fn file_name(file: &JsValue, index: usize) -> String {
    Reflect::get(file, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("#{}", index + 1))
}

/// The bytes of a file: a `Uint8Array`, or a `Blob`/`File` read only now (the first `limit`
/// bytes of it where given).
pub async fn file_bytes(file: &JsValue, name: &str, limit: Option<f64>) -> WebResult<Vec<u8>> {
    if let Some(bytes) = file.dyn_ref::<Uint8Array>() {
        let end = limit.map_or(bytes.length(), |n| bytes.length().min(n as u32));
        return Ok(bytes.subarray(0, end).to_vec());
    }
    let unreadable = |why: String| {
        WebError::new(
            "bad_image",
            format!(
                "image {name}: {why}; pass a Uint8Array of the file's bytes or a Blob/File \
                 (PNG, JPEG, TIFF, WebP, BMP, DICOM, NIfTI)"
            ),
        )
    };
    let method = |key: &str| {
        Reflect::get(file, &key.into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| unreadable("it is neither bytes nor a Blob".into()))
    };
    let blob = match limit {
        Some(n) => method("slice")?
            .call2(file, &0.into(), &n.into())
            .map_err(|e| unreadable(format!("slice() failed ({e:?})")))?,
        None => file.clone(),
    };
    let promise: js_sys::Promise = method("arrayBuffer")?
        .call0(&blob)
        .and_then(|p| p.dyn_into())
        .map_err(|e| unreadable(format!("arrayBuffer() failed ({e:?})")))?;
    let buffer = JsFuture::from(promise)
        .await
        .map_err(|e| unreadable(format!("the file could not be read ({e:?})")))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// The bytes that tell a medical file from a raster image: DICOM's preamble and "DICM", a
/// NIfTI header's first field, gzip's magic number.
const HEAD: f64 = 132.0;

/// How many images `file` holds and its series, for grouping. A raster image is one image,
/// known from its first bytes without decoding it; a medical file is opened (and let go).
pub async fn shape(file: &JsValue, name: &str, options: &ReadOptions) -> WebResult<FileShape> {
    let head = file_bytes(file, name, Some(HEAD)).await?;
    if !is_medical(&head) {
        return Ok(FileShape {
            images: 1,
            series: None,
        });
    }
    Ok(open(file, name, options).await?.shape())
}

fn is_medical(head: &[u8]) -> bool {
    dicom::is_dicom(head) || nifti::is_nifti(head) || nifti::is_gzip(head)
}

pub async fn open(file: &JsValue, name: &str, options: &ReadOptions) -> WebResult<Source> {
    let bytes = file_bytes(file, name, None).await?;
    Ok(Source::open(bytes, name, options)?)
}

/// The files of a call, opened as their images are asked for; the last one stays open, since
/// a volume's slices are asked for in order (read once per group, not once per slice).
pub struct Files<'a> {
    files: &'a [JsValue],
    options: ReadOptions,
    /// Flat image index → (file, image within the file).
    places: Vec<(usize, usize)>,
    stacks: Vec<Stack>,
    open: Option<(usize, Source)>,
}

impl<'a> Files<'a> {
    pub fn new(files: &'a [JsValue], shapes: &[FileShape], options: ReadOptions) -> Self {
        let places = shapes
            .iter()
            .enumerate()
            .flat_map(|(f, s)| (0..s.images).map(move |i| (f, i)))
            .collect();
        Files {
            files,
            options,
            places,
            stacks: stacks(shapes),
            open: None,
        }
    }

    /// Image `index` of the call (files' images in order) and what names it.
    pub async fn part(&mut self, index: usize) -> WebResult<(Part, Place)> {
        let (file, within) = self.places[index];
        if !matches!(&self.open, Some((f, _)) if *f == file) {
            self.open = None; // let go of the last file before reading the next
            let name = file_name(&self.files[file], file);
            self.open = Some((file, open(&self.files[file], &name, &self.options).await?));
        }
        let (_, source) = self.open.as_ref().expect("opened above");
        let stack = self.stacks[file];
        let place = Place {
            file,
            label: source.label(within),
            private: source.is_private(),
            stack: stack.id,
            slice: stack.first + within,
        };
        Ok((source.image(within)?, place))
    }
}

/// Where an image came from: its file (index in the call) and its name within the file.
pub struct Place {
    pub file: usize,
    pub label: Option<String>,
    /// DICOM: the image is named by its label alone, never by the file's name.
    pub private: bool,
    /// The stack the image is shown in with a slice scroller (`detect::plan::Stack`'s id).
    pub stack: usize,
    /// The image's place in its stack, from 0.
    pub slice: usize,
}

/// The longest side of the image a medical result carries for display: a browser cannot
/// decode the file itself, and a full-size copy of every slice of a volume would not fit.
const DISPLAY_SIDE: u32 = 512;

/// The windowed image as the page shows it: grey (1 channel) where all pixels are grey, else
/// RGB, at most [`DISPLAY_SIDE`] on its longest side.
pub fn display(image: &RgbImage) -> (u32, u32, u32, Vec<u8>) {
    let scale = f64::from(DISPLAY_SIDE) / f64::from(image.width.max(image.height));
    let shown = if scale < 1.0 {
        let w = ((f64::from(image.width) * scale).round() as usize).max(1);
        let h = ((f64::from(image.height) * scale).round() as usize).max(1);
        crate::detect::display_image(image, w, h)
    } else {
        image.clone()
    };
    let grey = shown.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]);
    let data = if grey {
        shown.data.iter().step_by(3).copied().collect()
    } else {
        shown.data
    };
    (shown.width, shown.height, if grey { 1 } else { 3 }, data)
}

/// What a file holds, before scoring: `{images, labels, private, domain}` (`domain`:
/// `{name, because}` where the file suggests a prompt domain, else null).
pub async fn inspect(file: &JsValue, options: &ReadOptions) -> WebResult<Object> {
    let name = file_name(file, 0);
    let head = file_bytes(file, &name, Some(HEAD)).await?;
    let source = if is_medical(&head) {
        open(file, &name, options).await?
    } else {
        // A raster image is decoded to be checked: a bad one is refused when picked.
        Source::open(file_bytes(file, &name, None).await?, &name, options)?
    };
    let labels: Array = (0..source.len())
        .filter_map(|i| source.label(i))
        .map(JsValue::from)
        .collect();
    let internal = |e: JsValue| WebError::new("internal", format!("{e:?}"));
    let domain = match source.suggested_domain() {
        Some(hint) => object(&[
            ("name", hint.domain.into()),
            ("because", hint.because.into()),
        ])
        .map_err(internal)?
        .into(),
        None => JsValue::NULL,
    };
    object(&[
        ("images", source.len().into()),
        ("labels", labels.into()),
        ("private", source.is_private().into()),
        ("domain", domain),
    ])
    .map_err(internal)
}
