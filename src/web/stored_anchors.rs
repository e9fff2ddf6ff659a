//! Text anchors kept across visits. A model without a bundle's precomputed anchors (a registry
//! model, picked weights, an object the bundle lacks) runs its text tower for each new
//! (domain, object): ~20 s for a ViT-B on the wasm CPU. The wasm cannot reach Cache Storage
//! itself, so the worker asks which entry a call needs, hands it over when it has one, and
//! stores the entries computed during the call (worker.js).

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;

use super::error::WebError;
use super::options::Options;
use super::{WebDetector, object};
use crate::models::bundle::AnchorSet;
use crate::prompts::{Domain, StoredAnchors, TextAnchors};

#[wasm_bindgen]
impl WebDetector {
    /// Names the weights for stored anchors: the lowercase hex sha256 of their bytes.
    #[wasm_bindgen(js_name = setModelId)]
    pub fn set_model_id(&mut self, sha256: String) {
        self.model_id = Some(sha256);
    }

    /// Whether a score call with `opts` would run the text tower (a model with one, anchors
    /// neither in the bundle nor computed before).
    #[wasm_bindgen(js_name = needsTextTower)]
    pub fn needs_text_tower(&self, opts: JsValue) -> Result<bool, JsValue> {
        Ok(self.needed(&opts)?.is_some())
    }

    /// The stored entry a score call with `opts` would use instead of the text tower, or null
    /// when it needs none or the model has no id yet.
    #[wasm_bindgen(js_name = storedAnchorsName)]
    pub fn stored_anchors_name(&self, opts: JsValue) -> Result<Option<String>, JsValue> {
        Ok(self.entry_for(&opts)?.map(|(_, entry)| entry.name()))
    }

    /// Takes the stored entry's `bytes` for the call with `opts`; false when they are not its
    /// anchors (damaged, another key's): the worker then drops the entry.
    #[wasm_bindgen(js_name = addStoredAnchors)]
    pub fn add_stored_anchors(&mut self, opts: JsValue, bytes: Vec<u8>) -> Result<bool, JsValue> {
        let Some((set, entry)) = self.entry_for(&opts)? else {
            return Ok(false);
        };
        let Some(anchors) = entry.decode(&bytes, &self.host) else {
            return Ok(false);
        };
        self.anchors.insert(set, anchors);
        Ok(true)
    }

    /// The entries computed since the last call, `[{name, bytes}]`, for the worker to store.
    #[wasm_bindgen(js_name = takeStoredAnchors)]
    pub fn take_stored_anchors(&mut self) -> Result<Array, JsValue> {
        let list = Array::new();
        for (name, bytes) in std::mem::take(&mut self.computed) {
            let bytes = Uint8Array::from(bytes.as_slice());
            let entry: JsValue = object(&[("name", name.into()), ("bytes", bytes.into())])?.into();
            list.push(&entry);
        }
        Ok(list)
    }

    /// Text tower runs since the model was loaded (one per new domain and object).
    #[wasm_bindgen(getter, js_name = textTowerRuns)]
    pub fn text_tower_runs(&self) -> u32 {
        self.text_tower_runs
    }
}

impl WebDetector {
    /// The anchor set, domain and object of the call with `opts` when it would run the text
    /// tower: the model has one and the anchors are neither in the bundle nor computed before.
    fn needed(&self, opts: &JsValue) -> Result<Option<(AnchorSet, Domain, String)>, JsValue> {
        let (domain, object) = Options::read(opts)?.domain_and_object()?;
        let set = AnchorSet {
            domain: domain.name(),
            object: object.clone(),
        };
        let has_tower = self.clip.as_ref().is_some_and(|c| c.text.is_some());
        Ok((has_tower && !self.anchors.contains_key(&set)).then_some((set, domain, object)))
    }

    /// [`Self::needed`] with its stored entry, once the model has an id.
    fn entry_for(&self, opts: &JsValue) -> Result<Option<(AnchorSet, StoredAnchors)>, JsValue> {
        let (Some((set, domain, object)), Some(model_id)) = (self.needed(opts)?, &self.model_id)
        else {
            return Ok(None);
        };
        let entry = StoredAnchors::new(model_id, &domain, &object).map_err(WebError::from)?;
        Ok(Some((set, entry)))
    }

    /// Counts a text tower run and keeps its anchors for the worker to store (when the model
    /// has an id). An entry that cannot be encoded costs only its reuse, as natively.
    pub(super) fn keep_computed(&mut self, domain: &Domain, object: &str, anchors: &TextAnchors) {
        self.text_tower_runs += 1;
        let Some(model_id) = &self.model_id else {
            return;
        };
        let Ok(entry) = StoredAnchors::new(model_id, domain, object) else {
            return;
        };
        if let Ok(bytes) = entry.encode(anchors) {
            self.computed.push((entry.name(), bytes));
        }
    }
}
