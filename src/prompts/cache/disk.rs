//! The on-disk side of the anchor cache (native only): atomic writes and the model hash memo.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Error, Result};

/// The file, in the cache directory, that remembers each weights file's sha256.
pub const MODEL_ID_MEMO: &str = "model-ids.json";
/// Version of the memo's layout.
const VERSION: u32 = 2;

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
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
