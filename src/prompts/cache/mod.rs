//! Text anchors cached per (model, domain, object): in memory and, natively, on disk; in the
//! browser the page keeps the same entries in Cache Storage ([`StoredAnchors`]).

#[cfg(not(target_arch = "wasm32"))]
mod disk;
mod entry;

use std::collections::HashMap;

use burn::tensor::Device;

use super::anchors::AnchorData;
use super::{Domain, TextAnchors};
#[cfg(not(target_arch = "wasm32"))]
use crate::Error;
use crate::Result;

/// The key of one cache entry: everything the anchors depend on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AnchorKey {
    model_id: String,
    domain: String,
    object: String,
    /// sha256 of the exact prompts and of this code's version (its text path): anchors cached
    /// by another version of the code, or for other wording, are never read.
    texts: String,
}

impl AnchorKey {
    fn new(model_id: &str, domain: &Domain, object: &str) -> Result<AnchorKey> {
        use sha2::Digest;
        let mut texts = sha2::Sha256::new();
        let prompts = super::prompts(domain, object)?;
        for text in prompts.iter().flatten().map(String::as_str) {
            // Length first, so that no two lists hash alike by moving a boundary.
            texts.update((text.len() as u64).to_le_bytes());
            texts.update(text);
        }
        texts.update(env!("CARGO_PKG_VERSION"));
        Ok(AnchorKey {
            model_id: model_id.to_string(),
            domain: domain.name(),
            object: object.to_string(),
            texts: crate::models::registry::hex(&texts.finalize()),
        })
    }

    fn parts(&self) -> [&str; 4] {
        [&self.model_id, &self.domain, &self.object, &self.texts]
    }

    /// `anchors-<sha256 of the key>`: the native file's stem and the browser entry's name.
    fn entry_name(&self) -> String {
        let mut id = Vec::new();
        for part in self.parts() {
            entry::put_str(&mut id, part);
        }
        format!(
            "anchors-{}",
            crate::models::registry::hex(&entry::sha256(&id))
        )
    }
}

/// One (model, domain, object)'s anchors as an entry of a store outside this process — the
/// browser's Cache Storage, which the wasm cannot reach itself: the entry's name hashes the
/// key (model id, domain, object, the exact prompts, this code's version) and its bytes, the
/// native cache file's format, carry the key, checked on read.
#[derive(Debug, Clone)]
pub struct StoredAnchors(AnchorKey);

impl StoredAnchors {
    /// The entry of (model, domain, object); `model_id` as in [`AnchorCache::get_or_compute`].
    pub fn new(model_id: &str, domain: &Domain, object: &str) -> Result<StoredAnchors> {
        Ok(StoredAnchors(AnchorKey::new(model_id, domain, object)?))
    }

    pub fn name(&self) -> String {
        self.0.entry_name()
    }

    /// The entry's bytes for `anchors`.
    pub fn encode(&self, anchors: &TextAnchors) -> Result<Vec<u8>> {
        Ok(entry::encode(&AnchorData::from_anchors(anchors)?, &self.0))
    }

    /// The anchors in `bytes`, on `device`; `None` when they are damaged or another key's.
    pub fn decode(&self, bytes: &[u8], device: &Device) -> Option<TextAnchors> {
        entry::decode(bytes, &self.0).map(|data| data.to_tensors(device))
    }
}

/// Text anchors per (model id, domain, object): in memory, and natively also on disk (one
/// small binary file per key under the cache directory), so a model's prompts are embedded
/// once per machine, not once per run.
///
/// Disk files are written atomically (temporary file, then rename); one that cannot be read
/// back — truncated, corrupt, another format version, another key — is recomputed and
/// replaced. A cache directory that cannot be written costs only the reuse: the failure is
/// kept in [`AnchorCache::warnings`], the anchors are still returned.
#[derive(Debug, Default)]
pub struct AnchorCache {
    dir: Option<std::path::PathBuf>,
    memory: HashMap<AnchorKey, TextAnchors>,
    warnings: Vec<String>,
    #[cfg(not(target_arch = "wasm32"))]
    model_ids: HashMap<std::path::PathBuf, ((u64, u64), String)>,
}

impl AnchorCache {
    /// A cache kept in memory and, with `dir` (natively), on disk under `dir`.
    pub fn new(dir: Option<std::path::PathBuf>) -> AnchorCache {
        AnchorCache {
            dir,
            ..Default::default()
        }
    }

    /// The disk directory, if any.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Problems met while writing the disk cache (never fatal), oldest first.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Anchors of (model, domain, object) from memory, else from disk, else from `compute`
    /// (then stored in both). `model_id` names the weights, e.g. [`AnchorCache::model_id`];
    /// tensors read from disk are put on `device`.
    pub fn get_or_compute(
        &mut self,
        model_id: &str,
        domain: &Domain,
        object: &str,
        device: &Device,
        compute: impl FnOnce() -> Result<TextAnchors>,
    ) -> Result<TextAnchors> {
        let key = AnchorKey::new(model_id, domain, object)?;
        if let Some(hit) = self.memory.get(&key) {
            return Ok(on_device(hit, device));
        }
        let anchors = match self.load(&key, device) {
            Some(anchors) => anchors,
            None => {
                let anchors = compute()?;
                self.store(&key, &anchors);
                anchors
            }
        };
        self.memory.insert(key, anchors.clone());
        Ok(anchors)
    }

    #[cfg(target_arch = "wasm32")]
    fn load(&mut self, _key: &AnchorKey, _device: &Device) -> Option<TextAnchors> {
        None
    }

    #[cfg(target_arch = "wasm32")]
    fn store(&mut self, _key: &AnchorKey, _anchors: &TextAnchors) {}

    #[cfg(not(target_arch = "wasm32"))]
    fn load(&mut self, key: &AnchorKey, device: &Device) -> Option<TextAnchors> {
        let path = self.anchor_path(key)?;
        let bytes = std::fs::read(path).ok()?;
        entry::decode(&bytes, key).map(|data| data.to_tensors(device))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn store(&mut self, key: &AnchorKey, anchors: &TextAnchors) {
        let Some(path) = self.anchor_path(key) else {
            return;
        };
        let written = AnchorData::from_anchors(anchors)
            .and_then(|data| disk::write_atomic(&path, &entry::encode(&data, key)));
        if let Err(e) = written {
            self.warnings
                .push(format!("text anchor cache not written: {e}"));
        }
    }

    /// `<dir>/anchors-<sha256 of the key>.bin`; the file repeats the key, checked on read.
    #[cfg(not(target_arch = "wasm32"))]
    fn anchor_path(&self, key: &AnchorKey) -> Option<std::path::PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}.bin", key.entry_name())))
    }

    /// [`model_id`] of `path`, memoized by (canonical path, size, mtime) in memory and in
    /// `<dir>/model-ids.json`, so a large checkpoint is hashed once per machine.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn model_id(&mut self, path: &std::path::Path) -> Result<String> {
        let weights = crate::clip::weights::weights_file(path)?;
        let canonical = weights
            .canonicalize()
            .map_err(|e| Error::io(weights.display(), e))?;
        let Some(stamp) = disk::file_stamp(&canonical)? else {
            return sha256_file(&canonical);
        };
        if let Some((_, id)) = self.model_ids.get(&canonical).filter(|(s, _)| *s == stamp) {
            return Ok(id.clone());
        }
        let memo_path = self.dir.as_ref().map(|d| d.join(disk::MODEL_ID_MEMO));
        let mut memo = memo_path
            .as_deref()
            .map(disk::read_memo)
            .unwrap_or_default();
        let key = canonical.display().to_string();
        let id = match memo.get(&key) {
            Some(m) if (m.size, m.mtime_ns) == stamp && disk::is_sha256_hex(&m.sha256) => {
                m.sha256.clone()
            }
            _ => {
                let id = sha256_file(&canonical)?;
                if let Some(memo_path) = memo_path {
                    let (size, mtime_ns) = stamp;
                    let sha256 = id.clone();
                    memo.insert(
                        key,
                        disk::Memo {
                            size,
                            mtime_ns,
                            sha256,
                        },
                    );
                    if let Err(e) = disk::write_memo(&memo_path, &memo) {
                        self.warnings
                            .push(format!("model hash memo not written: {e}"));
                    }
                }
                id
            }
        };
        self.model_ids.insert(canonical, (stamp, id.clone()));
        Ok(id)
    }
}

/// The same anchors on `device` (a no-op when they are there already).
fn on_device(anchors: &TextAnchors, device: &Device) -> TextAnchors {
    if anchors.states.device() == *device {
        anchors.clone()
    } else {
        TextAnchors {
            states: anchors.states.clone().to_device(device),
            prompts: anchors.prompts.clone().to_device(device),
        }
    }
}

/// The identity of a model for caches: the lowercase hex sha256 of its weights file (for a
/// Hugging Face directory, of its `model.safetensors` or else `pytorch_model.bin`). Reads the
/// whole file; [`AnchorCache::model_id`] remembers the result.
#[cfg(not(target_arch = "wasm32"))]
pub fn model_id(path: &std::path::Path) -> Result<String> {
    sha256_file(&crate::clip::weights::weights_file(path)?)
}

#[cfg(not(target_arch = "wasm32"))]
fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let io = |e| Error::io(path.display(), e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::models::registry::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Object and texture prompts differ in their domain phrases only: the keys must too, and
    /// stay the same for the same prompts.
    #[test]
    fn the_key_covers_the_exact_prompts() {
        let object = AnchorKey::new("m", &Domain::Object, "grid").unwrap();
        assert_eq!(
            object,
            AnchorKey::new("m", &Domain::Object, "grid").unwrap()
        );
        let texture = AnchorKey::new("m", &Domain::Texture, "grid").unwrap();
        assert_ne!(object.texts, texture.texts);
        let other_object = AnchorKey::new("m", &Domain::Object, "tile").unwrap();
        assert_ne!(object.texts, other_object.texts);
        assert_eq!(object.texts.len(), 64);
    }

    /// The browser's entry for (model, domain, object) is the native cache file, by name and
    /// by bytes, and gives back the anchors it was made from; another object's entry refuses
    /// them.
    #[test]
    fn a_stored_entry_is_the_native_file() {
        let device = crate::backend::cpu();
        let raw: Vec<f32> = (0..4 * 3).map(|i| (i as f32 * 0.37).cos() + 0.2).collect();
        let anchors = AnchorData::from_embeddings(&raw, 2, 3)
            .unwrap()
            .to_tensors(&device);
        let stored = StoredAnchors::new("m", &Domain::Object, "screw").unwrap();
        let key = AnchorKey::new("m", &Domain::Object, "screw").unwrap();
        assert_eq!(stored.name(), key.entry_name());
        assert!(stored.name().starts_with("anchors-") && stored.name().len() == 8 + 64);
        let bytes = stored.encode(&anchors).unwrap();
        let native = AnchorData::from_anchors(&anchors).unwrap();
        assert_eq!(bytes, entry::encode(&native, &key));
        let back = stored.decode(&bytes, &device).unwrap();
        assert_eq!(AnchorData::from_anchors(&back).unwrap(), native);
        let other = StoredAnchors::new("m", &Domain::Object, "nut").unwrap();
        assert!(other.decode(&bytes, &device).is_none());
    }

    #[test]
    fn anchor_file_round_trips_and_rejects_damage() {
        let raw: Vec<f32> = (0..4 * 3).map(|i| (i as f32 * 0.37).sin() + 0.1).collect();
        let data = AnchorData::from_embeddings(&raw, 2, 3).unwrap();
        let key = AnchorKey {
            model_id: "m".into(),
            domain: "object".into(),
            object: "screw".into(),
            texts: "t".into(),
        };
        let bytes = entry::encode(&data, &key);
        assert_eq!(entry::decode(&bytes, &key), Some(data));
        let other = AnchorKey {
            object: "nut".into(),
            ..key.clone()
        };
        assert_eq!(entry::decode(&bytes, &other), None);
        for cut in [0, 1, 31, 40, bytes.len() - 1] {
            assert_eq!(entry::decode(&bytes[..cut], &key), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert_eq!(entry::decode(&flipped, &key), None);
    }
}
