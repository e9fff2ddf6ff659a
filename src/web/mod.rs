//! The browser surface (wasm-bindgen): `WebDetector` and `registry()`.
//!
//! The image tower runs on WebGPU when an adapter exists, else on the CPU device; scoring
//! always runs on the CPU device (see `detect::transfer`). Images are decoded here with the
//! same code as the CLI, so a map equals the CLI's `.npy` for the same bytes and options.
//!
//! Errors reach JavaScript as `Error`s with a stable `code`: `bad_image`, `bad_weights`,
//! `bad_option`, `no_text_tower`, `device`, `internal`. An allocation failure aborts the
//! module; `failedAllocation()` (see `memory`) then tells the worker it was one.

mod device;
mod error;
mod files;
mod memory;
mod model;
mod options;
mod scoring;
mod stored_anchors;

use std::collections::HashMap;

use burn::tensor::Device;
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::backend;
use crate::clip::{ArchOverrides, Checkpoint, Clip, HfConfig, Precision, Tokenizer};
use crate::detect::Detector;
use crate::detect::config::{DetectorConfig, Pairing};
use crate::models::bundle::AnchorSet;
use crate::prompts::{TextAnchors, read_anchors, text_anchors_async};
use device::{pick_device, warm_up};
use error::{WebError, WebResult, root_cause};
use model::{model_spec, weights_checkpoint};
use options::Options;
use scoring::{Callbacks, Request, score_all};

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// A plain JS object with these fields.
fn object(fields: &[(&str, JsValue)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &(*k).into(), v)?;
    }
    Ok(o)
}

/// What a file holds before it is scored, read as a score call with `opts` would read it:
/// `{images, labels, private, domain}` — how many images (a volume's slices, a DICOM file's
/// frames), their names within the file, whether the file names its images by series and
/// instance alone (DICOM), and the prompt domain the file suggests (`{name, because}`, from
/// DICOM's Modality and Body Part Examined) or null. Needs no model.
#[wasm_bindgen(js_name = inspectFile)]
pub async fn inspect_file(file: JsValue, opts: JsValue) -> Result<Object, JsValue> {
    let read = Options::read(&opts)?.read_options()?;
    Ok(files::inspect(&file, &read).await?)
}

/// Thresholds for verdicts from known-good images (`duoclip::decide`, the CLI's `calibrate`):
/// `scores` are their image scores and `peaks` their maps' maxima, each scored against the
/// other good images (a set without references); `falseAlarm` is α, the share of good images
/// a verdict may call anomalous (default 0.05). → `{image, band, pixel, false_alarm, bound,
/// good: {count, min, median, max, mad}}`, the `calibration` option of score calls.
#[wasm_bindgen]
pub fn calibrate(
    scores: Vec<f32>,
    peaks: Vec<f32>,
    #[wasm_bindgen(js_name = falseAlarm)] false_alarm: Option<f64>,
) -> Result<JsValue, JsValue> {
    let alpha = false_alarm.unwrap_or(crate::decide::DEFAULT_FALSE_ALARM);
    let thresholds = crate::decide::calibrate(&scores, &peaks, alpha).map_err(WebError::from)?;
    let plain = serde_wasm_bindgen::Serializer::json_compatible();
    Ok(serde::Serialize::serialize(&thresholds, &plain)?)
}

/// A model loaded in the page, ready to score images.
#[wasm_bindgen]
pub struct WebDetector {
    /// Taken out while a detector built around it scores (see `with_detector`).
    clip: Option<Clip>,
    device: Device,
    host: Device,
    device_name: &'static str,
    precision: Precision,
    device_note: String,
    bundle_sets: Vec<AnchorSet>,
    /// Precomputed (bundle) and computed anchors, on the host device.
    anchors: HashMap<AnchorSet, TextAnchors>,
    tokenizer: Option<Tokenizer>,
    /// The weights' sha256, which names their stored anchors (`stored_anchors`).
    model_id: Option<String>,
    /// Anchors computed and not yet handed to the worker: (entry name, bytes).
    computed: Vec<(String, Vec<u8>)>,
    text_tower_runs: u32,
}

#[wasm_bindgen]
impl WebDetector {
    /// Loads weights (a bundle's `model.safetensors` or any OpenCLIP/HF `.safetensors` CLIP),
    /// with the bundle's precomputed anchors and manifest when given, on `device`: `auto`
    /// (WebGPU if an adapter exists, else CPU), `webgpu` or `cpu`.
    ///
    /// `manifest` is a bundle's `manifest.json` text, or `{"format": "duoclip-registry",
    /// "name": NAME}` for a registry model (its activation and input size come from the
    /// registry), or null (OpenCLIP defaults: 64-wide heads, GELU). `hfConfig` is the
    /// `config.json` text of a Hugging Face layout model. `precision`: `auto` (default: f16
    /// on WebGPU with `shader-f16`, else f32), `f32` or `f16`.
    pub async fn create(
        weights: js_sys::Uint8Array,
        anchors: Option<Vec<u8>>,
        manifest: Option<String>,
        device: String,
        #[wasm_bindgen(js_name = hfConfig)] hf_config: Option<String>,
        precision: Option<String>,
    ) -> Result<WebDetector, JsValue> {
        let precision = precision.as_deref().unwrap_or("auto");
        Ok(Self::load(weights, anchors, manifest, &device, hf_config, precision).await?)
    }

    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device_name.into()
    }

    /// `f16` or `f32`: the number format of the towers' linear layers.
    #[wasm_bindgen(getter)]
    pub fn precision(&self) -> String {
        self.precision.name().into()
    }

    /// Why the CPU was chosen under `auto`; empty otherwise.
    #[wasm_bindgen(getter, js_name = deviceNote)]
    pub fn device_note(&self) -> String {
        self.device_note.clone()
    }

    #[wasm_bindgen(getter, js_name = imageSize)]
    pub fn image_size(&self) -> usize {
        self.clip.as_ref().map_or(0, Clip::image_size)
    }

    #[wasm_bindgen(getter, js_name = hasTextTower)]
    pub fn has_text_tower(&self) -> bool {
        self.clip.as_ref().is_some_and(|c| c.text.is_some())
    }

    /// The (domain, object) pairs precomputed in the bundle: `[{domain, object}]`.
    #[wasm_bindgen(js_name = anchorSets)]
    pub fn anchor_sets(&self) -> Result<Array, JsValue> {
        self.bundle_sets
            .iter()
            .map(|s| {
                object(&[
                    ("domain", s.domain.as_str().into()),
                    ("object", s.object.as_str().into()),
                ])
                .map(JsValue::from)
            })
            .collect()
    }

    /// Two images that reference each other → `[Result, Result]`.
    ///
    /// Every score call takes files (`Blob`s, `File`s or `Uint8Array`s): PNG, JPEG, TIFF, WebP,
    /// BMP, DICOM or NIfTI. A file of several images (a volume's slices, a DICOM file's frames)
    /// gives one Result per image, its slices scored as a set; results are in file order. A
    /// Result is `{score, width, height, map, file}` (`file`: the index of the file it came
    /// from) and `stack`, `slice` (the images a viewer steps through together — a volume, a
    /// file's frames, a DICOM series' files in InstanceNumber order — as its first file's
    /// index, and the image's place in it), with, where they apply, `label` (the image's name
    /// within its file: `k=12`, `series=3,instance=1,frame=1`), `private: true` (DICOM: name the image by `label`
    /// alone), `window` (how wide values became grey levels), `withheld` (the identifying
    /// DICOM attributes the file holds and the result does not) and `display` (`{width,
    /// height, channels, pixels}`: the image as the model saw it, for files a browser cannot
    /// show). `opts` takes `window`, `sliceAxis`, `sliceStride` and `setSize` as the CLI does,
    /// and `calibration` (see `calibrate`): each Result then has `verdict` (`ok`, `anomalous`
    /// or `uncertain`), `margin` (score − threshold) and `regions` (`[{x, y, width, height,
    /// area, share, peak, mean}]`, the 8-connected parts of the map above the pixel threshold,
    /// in map pixels, highest peak first).
    ///
    /// Every score call takes `onProgress(done, total)`, called after each image has been
    /// through the image tower, and `onResult(index, result)`, called as soon as an image's
    /// result is final: when a later image fails (or the memory runs out) the caller still
    /// has those.
    #[wasm_bindgen(js_name = scorePair)]
    pub async fn score_pair(
        &mut self,
        a: JsValue,
        b: JsValue,
        opts: JsValue,
        on_progress: Option<Function>,
        on_result: Option<Function>,
    ) -> Result<Array, JsValue> {
        let callbacks = Callbacks {
            on_progress,
            on_result,
        };
        Ok(self
            .score_js(&[a, b], &opts, Some(Pairing::Pairs), callbacks)
            .await?)
    }

    /// Images that all reference each other (or, with `references`, each the known-good
    /// images) → one Result per image, in input order.
    #[wasm_bindgen(js_name = scoreSet)]
    pub async fn score_set(
        &mut self,
        images: Vec<JsValue>,
        opts: JsValue,
        on_progress: Option<Function>,
        on_result: Option<Function>,
    ) -> Result<Array, JsValue> {
        let callbacks = Callbacks {
            on_progress,
            on_result,
        };
        Ok(self
            .score_js(&images, &opts, Some(Pairing::Set), callbacks)
            .await?)
    }

    /// One image (text map only, or against `references`) → `[Result]`.
    #[wasm_bindgen(js_name = scoreImage)]
    pub async fn score_image(
        &mut self,
        a: JsValue,
        opts: JsValue,
        on_progress: Option<Function>,
        on_result: Option<Function>,
    ) -> Result<Array, JsValue> {
        let callbacks = Callbacks {
            on_progress,
            on_result,
        };
        Ok(self.score_js(&[a], &opts, None, callbacks).await?)
    }
}

impl WebDetector {
    async fn load(
        weights: js_sys::Uint8Array,
        anchors: Option<Vec<u8>>,
        manifest: Option<String>,
        device: &str,
        hf_config: Option<String>,
        precision: &str,
    ) -> WebResult<WebDetector> {
        let (manifest, overrides) = match manifest {
            Some(text) => model_spec(&text)?,
            None => (None, ArchOverrides::default()),
        };
        let hf = hf_config
            .map(|text| HfConfig::parse(&text, "config.json"))
            .transpose()?;
        let host = backend::cpu();
        let (device, device_name, device_note) = pick_device(device).await?;
        let precision = Precision::resolve(precision, &device)?;
        let ckpt = weights_checkpoint(weights)?;
        let clip = Clip::from_checkpoint(&ckpt, hf.as_ref(), &overrides, &device)?
            .with_precision(precision);
        drop(ckpt);
        let (bundle_sets, precomputed) = match (anchors, &manifest) {
            (Some(bytes), Some(m)) => {
                let file = Checkpoint::from_safetensors_bytes(bytes, &m.anchors.file)?;
                let sets = m.anchors.sets.clone();
                let tensors = read_anchors(&file, &sets, &host)?;
                (sets, tensors)
            }
            (Some(_), None) => {
                return Err(WebError::new(
                    "bad_option",
                    "anchors were given without the bundle's manifest.json, which names the \
                     domain and object of each set; pass both or neither",
                ));
            }
            (None, _) => (Vec::new(), Vec::new()),
        };
        let anchors = bundle_sets.iter().cloned().zip(precomputed).collect();
        if device != host {
            warm_up(&clip, &device).await?;
        }
        Ok(WebDetector {
            clip: Some(clip),
            device,
            host,
            device_name,
            precision,
            device_note,
            bundle_sets,
            anchors,
            tokenizer: None,
            model_id: None,
            computed: Vec::new(),
            text_tower_runs: 0,
        })
    }

    async fn score_js(
        &mut self,
        images: &[JsValue],
        opts: &JsValue,
        pairing: Option<Pairing>,
        callbacks: Callbacks,
    ) -> WebResult<Array> {
        let mut opts = Options::read(opts)?;
        let read = opts.read_options()?;
        let (domain, object) = opts.domain_and_object()?;
        let anchors = self.anchors_for(&domain, &object).await?;
        let mut choices = opts.choices()?;
        choices.pairing = pairing;
        let clip = self
            .clip
            .take()
            .ok_or_else(|| WebError::new("internal", "the detector is busy with another call"))?;
        let config = DetectorConfig::choose(clip.vision.blocks.len(), &choices);
        if let Err(e) = Detector::check(&config, &clip, &self.device, &self.host) {
            self.clip = Some(clip);
            return Err(e.into());
        }
        let detector = Detector::on_devices(
            clip,
            anchors,
            config,
            self.device.clone(),
            self.host.clone(),
        )
        .map_err(|e| WebError::new("internal", format!("the model was lost: {e}")))?;
        let request = Request {
            files: images,
            references: std::mem::take(&mut opts.references),
            pairing,
            set_size: opts.set_size(),
            read,
            calibration: opts.calibration(),
        };
        let result = score_all(&detector, request, &callbacks).await;
        self.clip = Some(detector.into_clip());
        result.map_err(|e| self.device_failure(e))
    }

    /// On WebGPU, a failure that is not the input's fault is the device's: a lost or reset
    /// device surfaces as a failed read-back ("internal"). Reporting it as `device` makes the
    /// worker rerun on the CPU; a real bug would fail there the same way and be reported then.
    fn device_failure(&self, e: WebError) -> WebError {
        if self.device_name != "webgpu" || e.code != "internal" {
            return e;
        }
        WebError::new(
            "device",
            format!("the device stopped working: {}", root_cause(&e.message)),
        )
    }

    /// Anchors of (domain, object): precomputed in the bundle, computed before, or computed now
    /// with the text tower.
    async fn anchors_for(
        &mut self,
        domain: &crate::prompts::Domain,
        object: &str,
    ) -> WebResult<TextAnchors> {
        let key = AnchorSet {
            domain: domain.name(),
            object: object.into(),
        };
        if let Some(hit) = self.anchors.get(&key) {
            return Ok(hit.clone());
        }
        let clip = self
            .clip
            .as_ref()
            .ok_or_else(|| WebError::new("internal", "the detector is busy with another call"))?;
        if clip.text.is_none() {
            let have: Vec<String> = self
                .bundle_sets
                .iter()
                .map(|s| format!("{}/{}", s.domain, s.object))
                .collect();
            return Err(WebError::new(
                "no_text_tower",
                format!(
                    "domain `{}` with object `{object}` is not precomputed in this bundle \
                     (it has: {}) and the model has no text tower to embed new prompts; choose \
                     one of those or load a bundle converted with --text full",
                    key.domain,
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        }
        let tokenizer = self.tokenizer.get_or_insert_with(Tokenizer::new);
        let anchors = text_anchors_async(clip, tokenizer, domain, object, &self.host).await?;
        self.keep_computed(domain, object, &anchors);
        self.anchors.insert(key, anchors.clone());
        Ok(anchors)
    }
}
