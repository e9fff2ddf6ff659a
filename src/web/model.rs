//! What the page loads: the built-in registry as JavaScript sees it, a bundle's manifest or a
//! registry model by name, and weights read from a JavaScript buffer.

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::error::{WebError, WebResult};
use super::object;
use crate::clip::weights::checkpoint::ReadRange;
use crate::clip::{ArchOverrides, Checkpoint};
use crate::models::bundle::Manifest;
use crate::models::registry::{Registry, is_weights_path};

/// The version of this build (Cargo.toml's), written into the page's exports so that a result
/// says which code made it.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

/// Every model of the built-in registry: `{name, arch, imageSize, license, notes, browser,
/// files: [{path, urls, sha256, bytes, approxBytes}]}`; `browser` is true when every file is a
/// `.safetensors` or `.json` (the browser reads no PyTorch pickles).
#[wasm_bindgen]
pub fn registry() -> Result<Array, JsValue> {
    let models = Array::new();
    for entry in Registry::builtin().entries() {
        let files = Array::new();
        for f in &entry.files {
            files.push(&JsValue::from(object(&[
                ("path", f.path.as_str().into()),
                (
                    "urls",
                    f.urls.iter().map(JsValue::from).collect::<Array>().into(),
                ),
                (
                    "sha256",
                    f.sha256.as_deref().map_or(JsValue::NULL, JsValue::from),
                ),
                (
                    "bytes",
                    f.bytes.map_or(JsValue::NULL, |b| (b as f64).into()),
                ),
                (
                    "approxBytes",
                    f.approx_bytes.map_or(JsValue::NULL, |b| (b as f64).into()),
                ),
            ])?));
        }
        let browser = entry
            .files
            .iter()
            .all(|f| f.path.ends_with(".json") || f.path.ends_with(".safetensors"))
            && entry.files.iter().any(|f| is_weights_path(&f.path));
        models.push(&JsValue::from(object(&[
            ("name", entry.name.as_str().into()),
            ("arch", entry.arch.as_str().into()),
            ("imageSize", entry.image_size.into()),
            ("license", entry.license.as_str().into()),
            ("notes", entry.notes.as_str().into()),
            ("browser", browser.into()),
            ("files", files.into()),
        ])?));
    }
    Ok(models)
}

/// What the `manifest` argument says: a bundle's manifest, or a registry model by name.
pub fn model_spec(text: &str) -> WebResult<(Option<Manifest>, ArchOverrides)> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if value.get("format").and_then(|f| f.as_str()) != Some(REGISTRY_FORMAT) {
        let manifest = Manifest::parse(text, crate::models::bundle::MANIFEST_FILE)?;
        let overrides = manifest.overrides();
        return Ok((Some(manifest), overrides));
    }
    let name = value
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let entry = Registry::builtin().find(name).ok_or_else(|| {
        WebError::new(
            "bad_option",
            format!(
                "manifest: no registry model `{name}`; expected {{\"format\": \
                 \"{REGISTRY_FORMAT}\", \"name\": NAME}} with NAME one of {}",
                Registry::builtin().names().join(", ")
            ),
        )
    })?;
    let overrides = ArchOverrides {
        act: Some(entry.act.into()),
        image_size: Some(entry.image_size as usize),
        ..ArchOverrides::default()
    };
    Ok((None, overrides))
}

/// `manifest`'s format for a registry model.
const REGISTRY_FORMAT: &str = "duoclip-registry";

/// The weights read tensor by tensor out of the JavaScript buffer: copying the whole file into
/// wasm memory would keep its size there for good (wasm memory never shrinks), next to the
/// f32 weights built from it.
pub fn weights_checkpoint(weights: js_sys::Uint8Array) -> crate::Result<Checkpoint> {
    let total = u64::from(weights.length());
    let read: ReadRange = Box::new(move |start, end| {
        let (start, end) = (u32::try_from(start), u32::try_from(end));
        match (start, end) {
            (Ok(s), Ok(e)) if s <= e && e <= weights.length() => {
                Ok(weights.subarray(s, e).to_vec())
            }
            _ => Err(format!("bytes {start:?}..{end:?} are outside the buffer")),
        }
    });
    Checkpoint::from_safetensors_reader("the weights file", total, read)
}
