//! The browser surface (wasm-bindgen): `WebDetector` and `registry()`.
//!
//! The image tower runs on WebGPU when an adapter exists, else on the CPU device; scoring
//! always runs on the CPU device (see `detect::transfer`). Images are decoded here with the
//! same code as the CLI, so a map equals the CLI's `.npy` for the same bytes and options.
//!
//! Errors reach JavaScript as `Error`s with a stable `code`: `bad_image`, `bad_weights`,
//! `bad_option`, `no_text_tower`, `device`, `internal`. An allocation failure aborts the
//! module; `failedAllocation()` (see `memory`) then tells the worker it was one.

mod memory;

#[cfg(feature = "web")]
use std::cell::RefCell;
use std::collections::HashMap;

use burn::tensor::Device;
#[cfg(feature = "web")]
use burn::tensor::wgpu::WgpuBackend;
use js_sys::{Array, Float32Array, Function, Object, Reflect, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::bundle::{AnchorSet, Manifest, read_anchors};
use crate::clip::checkpoint::ReadRange;
use crate::clip::{ArchOverrides, Checkpoint, Clip, HfConfig, Precision, Tokenizer};
use crate::detect::config::{DetectorConfig, Pairing};
use crate::detect::presets::Choices;
use crate::detect::{Detection, Detector, Prepared};
use crate::image::{ImageLimits, decode};
use crate::prompts::{TextAnchors, choose, text_anchors_async};
use crate::registry::{Registry, is_weights_path};
use crate::{Error, backend};

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[cfg(feature = "web")]
thread_local! {
    /// burn's WebGPU runtime can be initialized once per page (worker): later detectors reuse it.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// A JS error with a stable `code`.
struct WebError {
    code: &'static str,
    message: String,
}

impl WebError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        WebError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Image { .. } => "bad_image",
            Error::Checkpoint { .. } => "bad_weights",
            Error::Option { .. } | Error::Tokenizer(_) => "bad_option",
            Error::Io { .. } | Error::Registry(_) | Error::Model(_) => "internal",
        };
        let message = match e {
            Error::Option { option, message } => format!("option {}: {message}", js_name(&option)),
            other => other.to_string(),
        };
        WebError::new(code, message)
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        let error = js_sys::Error::new(&e.message);
        let _ = Reflect::set(&error, &"code".into(), &e.code.into());
        error.into()
    }
}

/// The CLI's option names as the JS options spell them: `--ref-layers` → `refLayers`.
fn js_name(option: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in option.trim_start_matches('-').chars() {
        match c {
            '-' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

type WebResult<T> = std::result::Result<T, WebError>;

/// Every model of the built-in registry: `{name, arch, imageSize, license, notes, browser,
/// files: [{path, urls, sha256, bytes}]}`; `browser` is true when every file is a
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

fn object(fields: &[(&str, JsValue)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &(*k).into(), v)?;
    }
    Ok(o)
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
            .score_js(&[a, b], &opts, Some(Pairing::Pairs), &callbacks)
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
            .score_js(&images, &opts, Some(Pairing::Set), &callbacks)
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
        Ok(self.score_js(&[a], &opts, None, &callbacks).await?)
    }
}

/// The JS callbacks of a score call (see `scorePair`).
struct Callbacks {
    on_progress: Option<Function>,
    on_result: Option<Function>,
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
        })
    }

    async fn score_js(
        &mut self,
        images: &[JsValue],
        opts: &JsValue,
        pairing: Option<Pairing>,
        callbacks: &Callbacks,
    ) -> WebResult<Array> {
        let opts = Options::read(opts)?;
        let (domain, object) = choose(
            opts.settings.domain.as_deref().unwrap_or("object"),
            opts.settings.domain_phrases.as_deref().unwrap_or_default(),
            opts.settings.object.as_deref(),
        )?;
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
        let detector = Detector::split(
            clip,
            anchors,
            config,
            self.device.clone(),
            self.host.clone(),
        )
        .map_err(|e| WebError::new("internal", format!("the model was lost: {e}")))?;
        let result = score_all(&detector, images, &opts.references, pairing, callbacks).await;
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
        self.anchors.insert(key, anchors.clone());
        Ok(anchors)
    }
}

/// What the `manifest` argument says: a bundle's manifest, or a registry model by name.
fn model_spec(text: &str) -> WebResult<(Option<Manifest>, ArchOverrides)> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if value.get("format").and_then(|f| f.as_str()) != Some(REGISTRY_FORMAT) {
        let manifest = Manifest::parse(text, crate::bundle::MANIFEST_FILE)?;
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

/// Scores the images in the groups their pairing implies. Each image is decoded only when its
/// group is scored and kept only as the model's input tiles, so a set of large photos never
/// holds all their full-size pixels at once; each result goes to `onResult` as soon as its
/// group is done.
async fn score_all(
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

/// The innermost cause of a wgpu error's text ("... Caused by: Destroyed: Device was
/// destroyed. Backtrace: ..."): what a user can act on, without the chain and backtrace.
fn root_cause(message: &str) -> &str {
    let chain = message.split("Backtrace:").next().unwrap_or(message);
    chain.rsplit("Caused by:").next().unwrap_or(chain).trim()
}

fn detection_js(d: &Detection) -> Result<Object, JsValue> {
    object(&[
        ("score", d.score.into()),
        ("width", d.width.into()),
        ("height", d.height.into()),
        ("map", Float32Array::from(d.map.as_slice()).into()),
    ])
}

/// The device the image tower runs on: `(device, "webgpu" | "cpu", why the CPU under auto)`.
async fn pick_device(choice: &str) -> WebResult<(Device, &'static str, String)> {
    let cpu = || (backend::cpu(), "cpu", String::new());
    match choice {
        "cpu" => Ok(cpu()),
        "webgpu" => webgpu()
            .await
            .map(|d| (d, "webgpu", String::new()))
            .map_err(|why| {
                WebError::new(
                    "device",
                    format!("WebGPU is not usable here: {why}; choose device \"cpu\" or \"auto\""),
                )
            }),
        "auto" => Ok(match webgpu().await {
            Ok(d) => (d, "webgpu", String::new()),
            Err(why) => (backend::cpu(), "cpu", format!("running on the CPU: {why}")),
        }),
        other => Err(WebError::new(
            "bad_option",
            format!("device `{other}` is not accepted; use \"auto\", \"webgpu\" or \"cpu\""),
        )),
    }
}

/// The CPU build with threads (Cargo feature `threads`) has no WebGPU backend; worker.js
/// loads the WebGPU build for that device.
#[cfg(not(feature = "web"))]
async fn webgpu() -> Result<Device, String> {
    Err("this build of the detector is the CPU one with threads, without WebGPU".into())
}

/// burn's WebGPU device, initialized once per page (BROWSER.md: adapters are only requested
/// asynchronously).
#[cfg(feature = "web")]
async fn webgpu() -> Result<Device, String> {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or_default();
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap_or_default();
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let device = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| format!("no WebGPU adapter ({e:?})"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// One forward pass at load, read back, so that shader compilation happens before the first
/// image rather than during it.
async fn warm_up(clip: &Clip, device: &Device) -> WebResult<()> {
    let s = clip.image_size();
    let out = clip.encode_images(&[vec![0.0; 3 * s * s]], &[], device)?;
    out.vv_patch_tokens.into_data_async().await.map_err(|e| {
        let why = format!("{e:?}");
        WebError::new(
            "device",
            format!("the WebGPU warm-up pass failed: {}", root_cause(&why)),
        )
    })?;
    Ok(())
}

/// The `opts` of a score call, as `duoclip score`'s options in camelCase.
struct Options {
    settings: Settings,
    references: Vec<Vec<u8>>,
}

/// Every key of `opts`: the fields of [`Settings`] and `references`.
const OPTION_KEYS: [&str; 13] = [
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
}

impl Options {
    fn read(opts: &JsValue) -> WebResult<Options> {
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
        let references = match refs.is_undefined() || refs.is_null() {
            true => Vec::new(),
            false => {
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
                    .collect::<WebResult<_>>()?
            }
        };
        let settings: Settings =
            serde_wasm_bindgen::from_value(copy.into()).map_err(|e| bad(format!("opts: {e}")))?;
        Ok(Options {
            settings,
            references,
        })
    }

    fn choices(&self) -> WebResult<Choices> {
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

/// The weights read tensor by tensor out of the JavaScript buffer: copying the whole file into
/// wasm memory would keep its size there for good (wasm memory never shrinks), next to the
/// f32 weights built from it.
fn weights_checkpoint(weights: js_sys::Uint8Array) -> crate::Result<Checkpoint> {
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
