//! The `opts` of a score call, read from JavaScript into the detector's choices.

use js_sys::{Array, Object, Reflect, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::error::{WebError, WebResult};
use crate::decide::Thresholds;
use crate::detect::presets::Choices;
use crate::prompts::{Domain, choose};
use crate::source::{ReadOptions, SliceAxis};
use crate::window::WindowChoice;

/// The `opts` of a score call, as `duoclip score`'s options in camelCase.
pub struct Options {
    settings: Settings,
    pub references: Vec<Vec<u8>>,
}

/// Every key of `opts`: the fields of [`Settings`] and `references`.
const OPTION_KEYS: [&str; 18] = [
    "preset",
    "domain",
    "domainPhrases",
    "object",
    "views",
    "tta",
    "adapter",
    "ttaKeepOptimizer",
    "lambda",
    "refLayers",
    "neighbourhood",
    "seed",
    "window",
    "sliceAxis",
    "sliceStride",
    "setSize",
    "calibration",
    "references",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Settings {
    preset: Option<String>,
    domain: Option<String>,
    domain_phrases: Option<Vec<String>>,
    object: Option<String>,
    views: Option<usize>,
    tta: Option<String>,
    adapter: Option<String>,
    tta_keep_optimizer: Option<bool>,
    lambda: Option<f32>,
    ref_layers: Option<Vec<usize>>,
    neighbourhood: Option<usize>,
    seed: Option<u64>,
    window: Option<String>,
    slice_axis: Option<String>,
    slice_stride: Option<usize>,
    set_size: Option<usize>,
    calibration: Option<Thresholds>,
}

impl Options {
    pub fn read(opts: &JsValue) -> WebResult<Options> {
        if opts.is_undefined() || opts.is_null() {
            return Ok(Options {
                settings: Settings::default(),
                references: Vec::new(),
            });
        }
        let bad = |m: String| WebError::new("bad_option", m);
        if !opts.is_object() || Array::is_array(opts) {
            return Err(bad(
                "opts must be an object such as {preset: \"product\"}".into()
            ));
        }
        // serde-wasm-bindgen reads only the fields it knows, so unknown keys are found here.
        for key in Object::keys(opts.unchecked_ref::<Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !OPTION_KEYS.contains(&key.as_str()) {
                return Err(bad(format!(
                    "option {key} is not known; accepted: {}",
                    OPTION_KEYS.join(", ")
                )));
            }
        }
        // Copied so that `references` (Uint8Arrays, which serde cannot read) can be taken out.
        let copy = Object::assign(&Object::new(), opts.unchecked_ref());
        let refs = Reflect::get(&copy, &"references".into()).unwrap_or_default();
        let _ = Reflect::delete_property(&copy, &"references".into());
        let references = image_list(refs)?;
        let settings: Settings =
            serde_wasm_bindgen::from_value(copy.into()).map_err(|e| bad(format!("opts: {e}")))?;
        Ok(Options {
            settings,
            references,
        })
    }

    /// The prompts' domain and object, chosen as `duoclip score` chooses them.
    pub fn domain_and_object(&self) -> WebResult<(Domain, String)> {
        let s = &self.settings;
        let domain = s.domain.as_deref().unwrap_or("object");
        let phrases = s.domain_phrases.as_deref().unwrap_or_default();
        Ok(choose(domain, phrases, s.object.as_deref())?)
    }

    pub fn choices(&self) -> WebResult<Choices> {
        let s = &self.settings;
        Ok(Choices {
            preset: s.preset.as_deref().map(str::parse).transpose()?,
            views: s.views,
            pairing: None,
            lambda: s.lambda,
            ref_layers: s.ref_layers.clone(),
            neighbourhood: s.neighbourhood,
            tta: s.tta.as_deref().map(str::parse).transpose()?,
            adapter: s.adapter.as_deref().map(str::parse).transpose()?,
            keep_optimizer: s.tta_keep_optimizer.unwrap_or(false),
            seed: s.seed,
        })
    }
}

impl Options {
    /// How files are read, as `duoclip score`'s `--window`, `--slice-axis`, `--slice-stride`.
    pub fn read_options(&self) -> WebResult<ReadOptions> {
        let s = &self.settings;
        let stride = s.slice_stride.unwrap_or(1);
        if stride == 0 {
            return Err(WebError::new(
                "bad_option",
                "option sliceStride: 0 keeps no slice; give 1 (every slice) or more",
            ));
        }
        Ok(ReadOptions {
            window: WindowChoice::parse(s.window.as_deref().unwrap_or("auto"))?,
            axis: SliceAxis::parse(s.slice_axis.as_deref().unwrap_or("axial"))?,
            stride,
            ..ReadOptions::default()
        })
    }

    /// `setSize`: a set (and a volume's slices) scored in consecutive sets of this many.
    pub fn set_size(&self) -> Option<usize> {
        self.settings.set_size
    }

    /// `calibration`: thresholds from `calibrate` (the CLI's calibration file's `thresholds`),
    /// which give each result a verdict and regions.
    pub fn calibration(&self) -> Option<Thresholds> {
        self.settings.calibration.clone()
    }
}

/// The `references` option: `undefined`/`null`, or an array of `Uint8Array`s of image bytes
/// (which serde cannot read).
fn image_list(refs: JsValue) -> WebResult<Vec<Vec<u8>>> {
    if refs.is_undefined() || refs.is_null() {
        return Ok(Vec::new());
    }
    let bad = |m: String| WebError::new("bad_option", m);
    let refs: Array = refs.dyn_into().map_err(|_| {
        bad("option references: expected an array of Uint8Array (image bytes)".into())
    })?;
    refs.iter()
        .enumerate()
        .map(|(i, r)| {
            r.dyn_into::<Uint8Array>().map(|a| a.to_vec()).map_err(|_| {
                bad(format!(
                    "option references: item {} is not a Uint8Array of image bytes",
                    i + 1
                ))
            })
        })
        .collect()
}
