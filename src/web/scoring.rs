//! A score call: files read from JavaScript one group at a time, their images scored, and each
//! result handed back as soon as it is final.

use js_sys::{Array, Float32Array, Function, Object, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::error::{WebError, WebResult};
use super::files::{Files, Place, display, file_name, shape};
use super::object;
use crate::decide::{self, Thresholds};
use crate::detect::config::Pairing;
use crate::detect::plan::{self, FileShape};
use crate::detect::{Detection, Detector, Prepared};
use crate::source::{Part, ReadOptions, Source};
use crate::window::AppliedWindow;

/// The JS callbacks of a score call (see `scorePair`).
pub struct Callbacks {
    pub on_progress: Option<Function>,
    pub on_result: Option<Function>,
}

/// What a score call is asked to do beyond the detector's settings.
pub struct Request<'a> {
    pub files: &'a [JsValue],
    pub references: Vec<Vec<u8>>,
    pub pairing: Option<Pairing>,
    pub set_size: Option<usize>,
    pub read: ReadOptions,
    pub calibration: Option<Thresholds>,
}

/// Scores the files' images in the groups the CLI would make (`detect::plan`: a volume's
/// slices as a set, a DICOM series given as single files as a set). Each file is read when its
/// group is scored and its images kept only as the model's input tiles, so a set of large
/// photos or volumes never holds all their pixels at once; each result goes to `onResult`
/// (its index counts the images of all files, in order) as soon as its group is done.
pub async fn score_all(
    detector: &Detector,
    request: Request<'_>,
    callbacks: &Callbacks,
) -> WebResult<Array> {
    let refs = prepare_references(detector, request.references, &request.read)?;
    // Every file's image count first (the groups depend on all of them): a medical file is
    // opened for it and let go, then opened again when its group is scored, so only one file
    // is ever held.
    let mut shapes = Vec::with_capacity(request.files.len());
    for (i, file) in request.files.iter().enumerate() {
        shapes.push(shape(file, &file_name(file, i), &request.read).await?);
    }
    let groups = plan::groups(
        detector,
        &shapes,
        refs.len(),
        request.pairing,
        request.set_size,
    )?;
    let total: usize = groups.iter().map(|g| g.len() + refs.len()).sum();
    let mut done = 0;
    let mut report = || {
        done += 1;
        if let Some(f) = &callbacks.on_progress {
            let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
        }
    };
    let mut files = Files::new(request.files, &shapes, request.read);
    let results = Array::new_with_length(count(&shapes) as u32);
    for group in groups {
        let mut prepared = Vec::with_capacity(group.len());
        let mut shown = Vec::with_capacity(group.len());
        for &i in &group {
            let (part, place) = files.part(i).await?;
            prepared.push(detector.prepare(&part.image));
            // The picture goes to JS memory now: a volume's slices are not all held here.
            shown.push(Shown::new(part, place).map_err(internal)?);
        }
        let batch: Vec<&Prepared> = prepared.iter().collect();
        let scored = detector.score_async(&batch, &refs, &mut report).await?;
        for ((i, d), s) in group.into_iter().zip(scored).zip(shown) {
            let result = detection_js(&d, s).map_err(internal)?;
            if let Some(t) = &request.calibration {
                decide_js(&result, &d, t)?;
            }
            let result = JsValue::from(result);
            if let Some(f) = &callbacks.on_result {
                let _ = f.call2(&JsValue::NULL, &(i as u32).into(), &result);
            }
            results.set(i as u32, result);
        }
    }
    Ok(results)
}

fn count(shapes: &[FileShape]) -> usize {
    shapes.iter().map(|s| s.images).sum()
}

/// The known-good images: each reference file's images (a reference volume gives its slices).
fn prepare_references(
    detector: &Detector,
    references: Vec<Vec<u8>>,
    read: &ReadOptions,
) -> WebResult<Vec<Prepared>> {
    let mut refs = Vec::new();
    for (i, bytes) in references.into_iter().enumerate() {
        let source = Source::open(bytes, &format!("reference #{}", i + 1), read)?;
        for k in 0..source.len() {
            refs.push(detector.prepare(&source.image(k)?.image));
        }
    }
    Ok(refs)
}

/// The verdict on a result against calibrated thresholds, its margin, and the regions of its
/// map above the pixel threshold (boxes in map pixels: the map spans the whole image).
fn decide_js(result: &Object, d: &Detection, t: &Thresholds) -> WebResult<()> {
    let (verdict, margin) = decide::verdict(d.score, t);
    let regions = decide::regions(&d.map, d.width, d.height, t.pixel)?;
    let plain = serde_wasm_bindgen::Serializer::json_compatible();
    let set = |key: &str, value: Result<JsValue, serde_wasm_bindgen::Error>| {
        let value = value.map_err(|e| WebError::new("internal", e.to_string()))?;
        js_sys::Reflect::set(result, &key.into(), &value).map_err(internal)
    };
    set("verdict", verdict.serialize(&plain))?;
    set("margin", Ok(margin.into()))?;
    set("regions", regions.serialize(&plain))?;
    Ok(())
}

fn internal(e: JsValue) -> WebError {
    WebError::new("internal", format!("{e:?}"))
}

/// An image's part of a result besides its map: where it came from, how it was read, and the
/// picture the page shows under the map.
struct Shown {
    place: Place,
    window: Option<AppliedWindow>,
    withheld: Vec<&'static str>,
    display: Option<Object>,
}

impl Shown {
    fn new(part: Part, place: Place) -> Result<Shown, JsValue> {
        // The browser cannot draw medical files (or 16-bit images) itself: it gets the picture
        // the model saw.
        let display = if part.window.is_some() || place.label.is_some() {
            let (width, height, channels, pixels) = display(&part.image);
            Some(object(&[
                ("width", width.into()),
                ("height", height.into()),
                ("channels", channels.into()),
                ("pixels", Uint8Array::from(pixels.as_slice()).into()),
            ])?)
        } else {
            None
        };
        Ok(Shown {
            place,
            window: part.window,
            withheld: part.withheld,
            display,
        })
    }
}

fn detection_js(d: &Detection, shown: Shown) -> Result<Object, JsValue> {
    let Shown {
        place,
        window,
        withheld,
        display,
    } = shown;
    let result = object(&[
        ("score", d.score.into()),
        ("width", d.width.into()),
        ("height", d.height.into()),
        ("map", Float32Array::from(d.map.as_slice()).into()),
        ("file", place.file.into()),
        ("stack", place.stack.into()),
        ("slice", place.slice.into()),
    ])?;
    let set = |key: &str, value: JsValue| js_sys::Reflect::set(&result, &key.into(), &value);
    if let Some(label) = &place.label {
        set("label", label.into())?;
    }
    if place.private {
        set("private", true.into())?;
    }
    if let Some(window) = &window {
        // As a plain object: `flatten` makes serde write the window as a map, which the
        // default serializer would turn into a JS `Map` (lost by JSON.stringify).
        let plain = serde_wasm_bindgen::Serializer::json_compatible();
        set("window", window.serialize(&plain)?)?;
    }
    if !withheld.is_empty() {
        let names: Array = withheld.iter().map(|&n| JsValue::from(n)).collect();
        set("withheld", names.into())?;
    }
    if let Some(image) = display {
        set("display", image.into())?;
    }
    Ok(result)
}
