//! A score call: images read from JavaScript one group at a time, scored, and each result
//! handed back as soon as it is final.

use js_sys::{Array, Float32Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::error::{WebError, WebResult};
use super::object;
use crate::detect::config::Pairing;
use crate::detect::{Detection, Detector, Prepared};
use crate::image::{ImageLimits, decode};

/// The JS callbacks of a score call (see `scorePair`).
pub struct Callbacks {
    pub on_progress: Option<Function>,
    pub on_result: Option<Function>,
}

/// Scores the images in the groups their pairing implies. Each image is decoded only when its
/// group is scored and kept only as the model's input tiles, so a set of large photos never
/// holds all their full-size pixels at once; each result goes to `onResult` as soon as its
/// group is done.
pub async fn score_all(
    detector: &Detector,
    images: &[JsValue],
    references: &[Vec<u8>],
    pairing: Option<Pairing>,
    callbacks: &Callbacks,
) -> WebResult<Array> {
    let refs = references
        .iter()
        .enumerate()
        .map(|(i, bytes)| prepare(detector, bytes, format!("reference #{}", i + 1)))
        .collect::<WebResult<Vec<_>>>()?;
    let groups = detector.groups(images.len(), refs.len(), pairing)?;
    let total: usize = groups.iter().map(|g| g.len() + refs.len()).sum();
    let mut done = 0;
    let mut report = || {
        done += 1;
        if let Some(f) = &callbacks.on_progress {
            let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
        }
    };
    let results = Array::new_with_length(images.len() as u32);
    for group in groups {
        let mut prepared = Vec::with_capacity(group.len());
        for &i in &group {
            let name = format!("#{}", i + 1);
            prepared.push(prepare(
                detector,
                &image_bytes(&images[i], &name).await?,
                name,
            )?);
        }
        let batch: Vec<&Prepared> = prepared.iter().collect();
        let scored = detector.score_async(&batch, &refs, &mut report).await?;
        for (i, d) in group.into_iter().zip(scored) {
            let result = JsValue::from(
                detection_js(&d).map_err(|e| WebError::new("internal", format!("{e:?}")))?,
            );
            if let Some(f) = &callbacks.on_result {
                let _ = f.call2(&JsValue::NULL, &(i as u32).into(), &result);
            }
            results.set(i as u32, result);
        }
    }
    Ok(results)
}

/// The bytes of one image: a `Uint8Array`, or a `Blob`/`File` read only now, so that a large
/// set picked from disk is never all in memory at once (the page passes the files it was given).
async fn image_bytes(image: &JsValue, name: &str) -> WebResult<Vec<u8>> {
    if let Some(bytes) = image.dyn_ref::<Uint8Array>() {
        return Ok(bytes.to_vec());
    }
    let unreadable = |why: String| {
        WebError::new(
            "bad_image",
            format!("image {name}: {why}; pass a Uint8Array of PNG/JPEG bytes or a Blob/File"),
        )
    };
    let read = Reflect::get(image, &"arrayBuffer".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(|| unreadable("it is neither bytes nor a Blob".into()))?;
    let promise: js_sys::Promise = read
        .call0(image)
        .and_then(|p| p.dyn_into())
        .map_err(|e| unreadable(format!("arrayBuffer() failed ({e:?})")))?;
    let buffer = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| unreadable(format!("the file could not be read ({e:?})")))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Decodes image `bytes` (labelled `name` in errors) into the model's input tiles.
fn prepare(detector: &Detector, bytes: &[u8], name: String) -> WebResult<Prepared> {
    let image = decode(bytes, &name, &ImageLimits::default())?;
    Ok(detector.prepare(&image))
}

fn detection_js(d: &Detection) -> Result<Object, JsValue> {
    object(&[
        ("score", d.score.into()),
        ("width", d.width.into()),
        ("height", d.height.into()),
        ("map", Float32Array::from(d.map.as_slice()).into()),
    ])
}
