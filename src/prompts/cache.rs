//! Text anchors cached per (model, domain, object): in memory and, natively, on disk.

use std::collections::HashMap;

use burn::tensor::Device;

#[cfg(not(target_arch = "wasm32"))]
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

    #[cfg(not(target_arch = "wasm32"))]
    fn parts(&self) -> [&str; 4] {
        [&self.model_id, &self.domain, &self.object, &self.texts]
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
        disk::decode(&bytes, key).map(|data| data.to_tensors(device))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn store(&mut self, key: &AnchorKey, anchors: &TextAnchors) {
        let Some(path) = self.anchor_path(key) else {
            return;
        };
        let written = AnchorData::from_anchors(anchors)
            .and_then(|data| disk::write_atomic(&path, &disk::encode(&data, key)));
        if let Err(e) = written {
            self.warnings
                .push(format!("text anchor cache not written: {e}"));
        }
    }

    /// `<dir>/anchors-<sha256 of the key>.bin`; the file repeats the key, checked on read.
    #[cfg(not(target_arch = "wasm32"))]
    fn anchor_path(&self, key: &AnchorKey) -> Option<std::path::PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut id = Vec::new();
        for part in key.parts() {
            disk::put_str(&mut id, part);
        }
        Some(dir.join(format!(
            "anchors-{}.bin",
            crate::models::registry::hex(&disk::sha256(&id))
        )))
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

/// The on-disk forms: anchor files and the model hash memo.
#[cfg(not(target_arch = "wasm32"))]
mod disk {
    use std::collections::BTreeMap;
    use std::path::Path;

    use sha2::Digest;

    use super::{AnchorData, AnchorKey};
    use crate::{Error, Result};

    /// Anchor file layout (all integers u32 little-endian, floats f32 little-endian):
    /// `MAGIC`, `VERSION`, model id, domain name, object, texts (each length + UTF-8), `[2, width]`
    /// then the states, `[rows, width]` then the prompt rows, and last the sha256 of
    /// everything before it.
    const MAGIC: &[u8; 16] = b"duoclip-anchors\0";
    const VERSION: u32 = 2;
    pub const MODEL_ID_MEMO: &str = "model-ids.json";

    pub fn sha256(bytes: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(bytes).into()
    }

    pub fn is_sha256_hex(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn put_matrix(out: &mut Vec<u8>, rows: usize, width: usize, values: &[f32]) {
        out.extend((rows as u32).to_le_bytes());
        out.extend((width as u32).to_le_bytes());
        values.iter().for_each(|v| out.extend(v.to_le_bytes()));
    }

    pub fn encode(data: &AnchorData, key: &AnchorKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 4 * (data.states.len() + data.prompts.len()));
        out.extend(MAGIC);
        out.extend(VERSION.to_le_bytes());
        for part in key.parts() {
            put_str(&mut out, part);
        }
        put_matrix(&mut out, 2, data.width, &data.states);
        put_matrix(&mut out, data.rows, data.width, &data.prompts);
        let digest = sha256(&out);
        out.extend(digest);
        out
    }

    /// Reads bytes in order; every read fails softly at the end of the input.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = self.0.split_at_checked(n)?;
            self.0 = rest;
            Some(head)
        }
        fn u32(&mut self) -> Option<usize> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
        }
        fn str(&mut self) -> Option<&'a str> {
            let n = self.u32()?;
            std::str::from_utf8(self.take(n)?).ok()
        }
        fn matrix(&mut self) -> Option<(usize, usize, Vec<f32>)> {
            let (rows, width) = (self.u32()?, self.u32()?);
            let bytes = self.take(rows.checked_mul(width)?.checked_mul(4)?)?;
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            Some((rows, width, values))
        }
    }

    /// The anchors of `key` in `bytes`, or `None` for anything unexpected.
    pub fn decode(bytes: &[u8], key: &AnchorKey) -> Option<AnchorData> {
        let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if sha256(body) != digest {
            return None;
        }
        let mut r = Reader(body);
        if r.take(MAGIC.len())? != MAGIC || r.u32()? != VERSION as usize {
            return None;
        }
        for part in key.parts() {
            if r.str()? != part {
                return None;
            }
        }
        let (two, width, states) = r.matrix()?;
        let (rows, prompt_width, prompts) = r.matrix()?;
        let shapes_ok = two == 2 && width > 0 && prompt_width == width && rows > 0 && rows % 2 == 0;
        let finite = states.iter().chain(&prompts).all(|v| v.is_finite());
        (shapes_ok && finite && r.0.is_empty()).then_some(AnchorData {
            states,
            prompts,
            rows,
            width,
        })
    }

    /// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so a
    /// reader sees the old file or the new one, never half of one.
    pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
        let tmp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = std::fs::write(&tmp, bytes)
            .map_err(|e| Error::io(tmp.display(), e))
            .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// (size in bytes, modification time in ns since the Unix epoch); `None` where the file
    /// system keeps no modification time, so nothing can be memoized safely.
    pub fn file_stamp(path: &Path) -> Result<Option<(u64, u64)>> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path.display(), e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        Ok(mtime.map(|m| (meta.len(), m)))
    }

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Memo {
        pub size: u64,
        pub mtime_ns: u64,
        pub sha256: String,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct MemoFile {
        version: u32,
        /// Canonical path of a weights file → its stamp and hash.
        files: BTreeMap<String, Memo>,
    }

    /// The memo, or an empty one when the file is missing, unreadable or of another version.
    pub fn read_memo(path: &Path) -> BTreeMap<String, Memo> {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<MemoFile>(&b).ok())
            .filter(|m| m.version == VERSION)
            .map(|m| m.files)
            .unwrap_or_default()
    }

    pub fn write_memo(path: &Path, files: &BTreeMap<String, Memo>) -> Result<()> {
        let memo = MemoFile {
            version: VERSION,
            files: files.clone(),
        };
        let json = serde_json::to_vec_pretty(&memo).map_err(|e| Error::Model(e.to_string()))?;
        write_atomic(path, &json)
    }
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

    #[cfg(not(target_arch = "wasm32"))]
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
        let bytes = disk::encode(&data, &key);
        assert_eq!(disk::decode(&bytes, &key), Some(data));
        let other = AnchorKey {
            object: "nut".into(),
            ..key.clone()
        };
        assert_eq!(disk::decode(&bytes, &other), None);
        for cut in [0, 1, 31, 40, bytes.len() - 1] {
            assert_eq!(disk::decode(&bytes[..cut], &key), None, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert_eq!(disk::decode(&flipped, &key), None);
    }
}
