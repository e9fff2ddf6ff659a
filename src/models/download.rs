//! Turning a `--model` argument into a local path: an existing file or directory as given, or a
//! registry model fetched into the user cache and verified against the registry's sha256 and
//! size before it is used.
//!
//! Cache layout: `$DUOCLIP_CACHE/<model name>/<file>`, or `<user cache dir>/duoclip/<model
//! name>/<file>` (e.g. `~/.cache/duoclip/...` on Linux). Cached files are re-verified on every
//! use; a file that no longer matches is deleted and fetched again. Downloads stream into a
//! `.part` file next to the target, hashed on the way, and are renamed into place only once
//! they match, so the cache never holds a partial or unverified file under its final name.
//! Fetching holds a lock on `<model dir>/.lock`: a second run waits, then finds the files in
//! place, and a `.part` left by a killed run is simply overwritten by the next download.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::models::registry::{self, Layout, ModelEntry, ModelFile, Registry};

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "DUOCLIP_CACHE";

/// What `--model` accepts besides registry names, for error messages.
pub const ACCEPTED_KINDS: &str = "a .safetensors file; a PyTorch state dict (.pt, .pth or .bin; \
     read as data, never executed); or a Hugging Face model directory holding config.json and \
     model.safetensors (or pytorch_model.bin)";

const CHUNK: usize = 1 << 20;

/// Resolves a `--model` argument: an existing path is returned as is; a registry name is
/// fetched into the cache (or found there, verified) and the path of its weights file is
/// returned, or of its directory for Hugging Face layouts. Anything else is an error listing
/// the registry names and the accepted file kinds.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_with(spec, Registry::builtin(), cache_root)
}

fn resolve_with(
    spec: &str,
    registry: &Registry,
    cache_root: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    let path = Path::new(spec);
    if !spec.is_empty() && path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(entry) = registry.find(spec) {
        return ensure_model(entry, &cache_root()?);
    }
    let looks_like_path =
        spec.contains(['/', '\\']) || registry::is_weights_path(spec) || spec.ends_with(".json");
    let lead = if looks_like_path {
        format!("no such file or directory: {spec}")
    } else {
        format!("'{spec}' is neither an existing file or directory nor a registry model name")
    };
    Err(Error::Registry(format!(
        "{lead}\n  registry models (downloaded and verified on first use): {}\n  accepted files: {ACCEPTED_KINDS}",
        registry.names().join(", ")
    )))
}

/// The cache directory: `$DUOCLIP_CACHE`, else the user cache directory + `duoclip`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("duoclip")).ok_or_else(|| {
        Error::Registry(format!(
            "this system reports no user cache directory; set {CACHE_ENV} to a writable directory"
        ))
    })
}

/// Where a registry model's files live inside `cache_root`.
pub fn model_dir(cache_root: &Path, entry: &ModelEntry) -> PathBuf {
    cache_root.join(&entry.name)
}

/// The path `resolve_model` returns for an entry: its directory for Hugging Face layouts,
/// else its weights file.
pub fn model_path(cache_root: &Path, entry: &ModelEntry) -> Result<PathBuf> {
    let dir = model_dir(cache_root, entry);
    match entry.layout {
        Layout::Hf => Ok(dir),
        Layout::OpenClip => match entry.weights_file() {
            Some(file) => Ok(dir.join(&file.path)),
            None => Err(Error::Registry(format!(
                "registry model '{}' lists no weights file",
                entry.name
            ))),
        },
    }
}

/// What a cached file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCheck {
    /// Present and matching the registry's size and sha256.
    Valid,
    /// Not there.
    Missing,
    /// There but wrong; the reason says how.
    Corrupt(String),
}

/// Checks one cached file against its registry record: size first (cheap), then sha256.
/// A file the registry has no sha256 for is an error: nothing can vouch for it.
pub fn check_cached_file(file: &ModelFile, path: &Path) -> Result<CacheCheck> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CacheCheck::Missing),
        Err(e) => return Err(Error::io(path.display(), e)),
    };
    if !meta.is_file() {
        return Err(Error::Registry(format!(
            "{} is in the way of a cached model file and is not a regular file; move it away",
            path.display()
        )));
    }
    let Some(expected) = &file.sha256 else {
        return Err(file.unverifiable());
    };
    if let Some(bytes) = file.bytes
        && meta.len() != bytes
    {
        return Ok(CacheCheck::Corrupt(format!(
            "{} bytes, expected {bytes}",
            meta.len()
        )));
    }
    let actual = hash_file(path, meta.len())?;
    Ok(match registry::check_digest(&actual, expected) {
        Ok(()) => CacheCheck::Valid,
        Err(_) => CacheCheck::Corrupt(format!("sha256 {actual}, expected {expected}")),
    })
}

/// Makes sure every file of `entry` is in `cache_root`, verified, downloading what is missing
/// or corrupt; returns [`model_path`]. When downloads fail, the error says which URLs to fetch
/// by hand, where to put each file and which sha256 it must have.
pub fn ensure_model(entry: &ModelEntry, cache_root: &Path) -> Result<PathBuf> {
    // Refuse before touching the network or the cache if anything is unverifiable.
    if let Some(file) = entry.files.iter().find(|f| f.sha256.is_none()) {
        return Err(match file.unverifiable() {
            Error::Registry(message) => {
                Error::Registry(format!("model '{}': {message}", entry.name))
            }
            other => other,
        });
    }
    let dir = model_dir(cache_root, entry);
    // Checked before any lock, so a complete cache works even where it is read-only.
    if all_valid(entry, &dir)? {
        return model_path(cache_root, entry);
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let _lock = lock_model_dir(&dir)?;
    let mut failed: Vec<(&ModelFile, PathBuf, Vec<String>)> = Vec::new();
    for file in &entry.files {
        let target = dir.join(&file.path);
        match check_cached_file(file, &target)? {
            CacheCheck::Valid => continue,
            CacheCheck::Missing => {}
            CacheCheck::Corrupt(reason) => {
                eprintln!(
                    "duoclip: discarding corrupt cached {} ({reason})",
                    target.display()
                );
                fs::remove_file(&target).map_err(|e| Error::io(target.display(), e))?;
            }
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
        if let Err(reasons) = download_file(file, &target) {
            failed.push((file, target, reasons));
        }
    }
    if failed.is_empty() {
        model_path(cache_root, entry)
    } else {
        Err(Error::Registry(manual_download_message(
            entry, cache_root, &failed,
        )))
    }
}

fn all_valid(entry: &ModelEntry, dir: &Path) -> Result<bool> {
    for file in &entry.files {
        if check_cached_file(file, &dir.join(&file.path))? != CacheCheck::Valid {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An exclusive lock on `<dir>/.lock`, released when the returned file closes — also when
/// the process is killed, so a crash never leaves the cache locked.
fn lock_model_dir(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(path.display(), e))?;
    match lock.try_lock() {
        Ok(()) => return Ok(lock),
        Err(fs::TryLockError::WouldBlock) => eprintln!(
            "duoclip: waiting for another duoclip to finish downloading into {}",
            dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => return Err(Error::io(path.display(), e)),
    }
    lock.lock().map_err(|e| Error::io(path.display(), e))?;
    Ok(lock)
}

fn manual_download_message(
    entry: &ModelEntry,
    cache_root: &Path,
    failed: &[(&ModelFile, PathBuf, Vec<String>)],
) -> String {
    let mut text = format!(
        "could not download model '{}' (offline, or the sources are unreachable).\n\
         Fetch these files by hand and put each at exactly this path; each must have exactly this sha256:\n",
        entry.name
    );
    for (file, target, _) in failed {
        text.push_str(&format!("  {}\n", target.display()));
        text.push_str(&format!(
            "    sha256 {}",
            file.sha256.as_deref().unwrap_or("(unknown)")
        ));
        match file.bytes {
            Some(bytes) => text.push_str(&format!(", {bytes} bytes\n")),
            None => text.push('\n'),
        }
        for url in &file.urls {
            text.push_str(&format!("    from {url}\n"));
        }
    }
    text.push_str(&format!(
        "Then run the command again; the files are verified before use. Or pass a local file or directory\n\
         instead of the model name. (The cache is {}; set {CACHE_ENV} to move it.)\nWhat went wrong:",
        cache_root.display()
    ));
    for (_, _, reasons) in failed {
        for reason in reasons {
            text.push_str(&format!("\n  {reason}"));
        }
    }
    text
}

/// Tries each URL of `file` in turn; on failure returns one reason per URL.
fn download_file(file: &ModelFile, target: &Path) -> std::result::Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    for url in &file.urls {
        match download_url(url, file, target) {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(format!("{url}: {reason}")),
        }
    }
    Err(reasons)
}

fn download_url(url: &str, file: &ModelFile, target: &Path) -> std::result::Result<(), String> {
    let expected_sha = file.sha256.as_deref().ok_or("no sha256 recorded")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("duoclip/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let offered = response.body().content_length();
    if let (Some(expected), Some(offered)) = (file.bytes, offered)
        && expected != offered
    {
        return Err(format!(
            "the server offers {offered} bytes, the registry expects {expected}"
        ));
    }

    // One fixed name (the model directory's lock keeps runs apart): a part left by a killed
    // run is overwritten, never left to pile up.
    let part = target.with_file_name(format!(
        "{}.part",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download")
    ));
    let bar = progress_bar(
        file.bytes.or(offered),
        &format!("downloading {}", file.path),
    );
    let streamed = stream_to_file(
        &mut response.body_mut().as_reader(),
        &part,
        file.bytes,
        &bar,
    );
    bar.finish_and_clear();
    let outcome = streamed.and_then(|(length, actual_sha)| {
        if let Some(expected) = file.bytes
            && length != expected
        {
            return Err(format!("received {length} bytes, the registry expects {expected}"));
        }
        registry::check_digest(&actual_sha, expected_sha).map_err(|_| {
            format!("sha256 mismatch: expected {expected_sha}, got {actual_sha}; the download was discarded")
        })?;
        fs::rename(&part, target).map_err(|e| format!("cannot move {} into place: {e}", part.display()))
    });
    if outcome.is_err() {
        let _ = fs::remove_file(&part);
    }
    outcome
}

/// Copies `reader` into a new file at `part`, hashing on the way; returns (length, sha256 hex).
fn stream_to_file(
    reader: &mut impl Read,
    part: &Path,
    limit: Option<u64>,
    bar: &ProgressBar,
) -> std::result::Result<(u64, String), String> {
    let mut out =
        File::create(part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut length = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("transfer broke off after {length} bytes: {e}")),
        };
        length += n as u64;
        if let Some(limit) = limit
            && length > limit
        {
            return Err(format!(
                "the server sent more than the {limit} bytes the registry expects"
            ));
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        bar.inc(n as u64);
    }
    out.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    Ok((length, registry::hex(&hasher.finalize())))
}

fn hash_file(path: &Path, length: u64) -> Result<String> {
    let mut input = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Small files hash faster than a bar can draw.
    let bar = if length >= 64 << 20 {
        progress_bar(Some(length), &format!("verifying {name}"))
    } else {
        ProgressBar::hidden()
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path.display(), e)),
        };
        hasher.update(&buffer[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(registry::hex(&hasher.finalize()))
}

/// A byte-counting bar on stderr (indicatif draws nothing when stderr is not a terminal).
fn progress_bar(total: Option<u64>, message: &str) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {msg} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::models::registry::{Activation, Family, sha256_hex};

    /// Nothing listens on the discard port, so connecting fails at once.
    const DEAD_URL: &str = "http://127.0.0.1:9/duoclip-test/weights.safetensors";

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "duoclip-download-test-{tag}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn file_for(path: &str, content: &[u8], urls: &[&str]) -> ModelFile {
        ModelFile {
            path: path.into(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            sha256: Some(sha256_hex(content)),
            bytes: Some(content.len() as u64),
            approx_bytes: None,
        }
    }

    fn entry_with(name: &str, layout: Layout, files: Vec<ModelFile>) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            family: Family::OpenClip,
            layout,
            arch: "ViT-T".into(),
            image_size: 32,
            act: Activation::Gelu,
            files,
            license: "MIT".into(),
            notes: String::new(),
        }
    }

    /// Model `tiny`: one file, `w.safetensors` holding `weights`, fetched from `url`.
    fn weights_from(url: &str) -> ModelEntry {
        entry_with(
            "tiny",
            Layout::OpenClip,
            vec![file_for("w.safetensors", b"weights", &[url])],
        )
    }

    /// Serves `body` to `requests` HTTP requests on a loopback port; returns the base URL.
    fn serve(body: Vec<u8>, requests: usize) -> String {
        let length = body.len();
        serve_cut(body, length, requests)
    }

    /// Like [`serve`], but announcing `length` bytes, so a shorter `body` is a transfer that
    /// broke off.
    fn serve_cut(body: Vec<u8>, length: usize, requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&body).unwrap();
            }
        });
        url
    }

    #[test]
    fn cache_check_tells_valid_missing_and_corrupt_apart() {
        let dir = TempDir::new("check");
        let file = file_for("w.safetensors", b"weights", &[DEAD_URL]);
        let path = dir.0.join("w.safetensors");
        assert_eq!(
            check_cached_file(&file, &path).unwrap(),
            CacheCheck::Missing
        );
        fs::write(&path, b"weights").unwrap();
        assert_eq!(check_cached_file(&file, &path).unwrap(), CacheCheck::Valid);
        fs::write(&path, b"weighty").unwrap();
        match check_cached_file(&file, &path).unwrap() {
            CacheCheck::Corrupt(reason) => {
                assert!(reason.contains(&sha256_hex(b"weights")), "{reason}")
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
        fs::write(&path, b"short").unwrap();
        match check_cached_file(&file, &path).unwrap() {
            CacheCheck::Corrupt(reason) => {
                assert!(reason.contains("5 bytes, expected 7"), "{reason}")
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
        let unverifiable = ModelFile {
            sha256: None,
            ..file
        };
        assert!(
            check_cached_file(&unverifiable, &path)
                .unwrap_err()
                .to_string()
                .contains("no sha256")
        );
    }

    #[test]
    fn valid_cache_is_used_without_network() {
        let root = TempDir::new("valid");
        let entry = entry_with(
            "tiny",
            Layout::OpenClip,
            vec![file_for("w.safetensors", b"weights", &[DEAD_URL])],
        );
        let target = model_dir(&root.0, &entry).join("w.safetensors");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, b"weights").unwrap();
        assert_eq!(ensure_model(&entry, &root.0).unwrap(), target);
    }

    #[test]
    fn offline_error_names_urls_paths_and_hashes() {
        let root = TempDir::new("offline");
        let second = "http://127.0.0.1:9/mirror/weights.safetensors";
        let entry = entry_with(
            "tiny-hf",
            Layout::Hf,
            vec![
                file_for("config.json", b"{}", &[DEAD_URL]),
                file_for("model.safetensors", b"weights", &[DEAD_URL, second]),
            ],
        );
        let message = ensure_model(&entry, &root.0).unwrap_err().to_string();
        let dir = model_dir(&root.0, &entry);
        for expected in [
            DEAD_URL.to_string(),
            second.to_string(),
            dir.join("config.json").display().to_string(),
            dir.join("model.safetensors").display().to_string(),
            sha256_hex(b"{}"),
            sha256_hex(b"weights"),
            "7 bytes".to_string(),
            "tiny-hf".to_string(),
        ] {
            assert!(
                message.contains(&expected),
                "{expected} missing from:\n{message}"
            );
        }
        assert_only_lock_left(&dir);
    }

    #[test]
    fn corrupt_cache_entry_is_deleted_and_refetched() {
        let root = TempDir::new("refetch");
        let base = serve(b"weights".to_vec(), 1);
        let url = format!("{base}/w.safetensors");
        let entry = entry_with(
            "tiny",
            Layout::OpenClip,
            vec![file_for("w.safetensors", b"weights", &[DEAD_URL, &url])],
        );
        let target = model_dir(&root.0, &entry).join("w.safetensors");
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, b"garbage").unwrap();
        assert_eq!(ensure_model(&entry, &root.0).unwrap(), target);
        assert_eq!(fs::read(&target).unwrap(), b"weights");
    }

    #[test]
    fn download_with_wrong_bytes_is_discarded() {
        let root = TempDir::new("mismatch");
        let base = serve(b"wrongly".to_vec(), 1);
        let url = format!("{base}/w.safetensors");
        let entry = weights_from(&url);
        let message = ensure_model(&entry, &root.0).unwrap_err().to_string();
        assert!(message.contains("sha256 mismatch"), "{message}");
        assert!(message.contains(&sha256_hex(b"wrongly")), "{message}");
        assert_only_lock_left(&model_dir(&root.0, &entry));
    }

    /// No partial files are left behind, only the (empty) lock file.
    fn assert_only_lock_left(dir: &Path) {
        let leftovers: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name != ".lock")
            .collect();
        assert!(
            leftovers.is_empty(),
            "{leftovers:?} left in {}",
            dir.display()
        );
    }

    #[test]
    fn a_transfer_cut_short_is_discarded_and_named() {
        let root = TempDir::new("cut");
        let base = serve_cut(b"wei".to_vec(), 7, 1);
        let url = format!("{base}/w.safetensors");
        let entry = weights_from(&url);
        let message = ensure_model(&entry, &root.0).unwrap_err().to_string();
        assert!(message.contains(&url), "{message}");
        assert!(message.contains(&sha256_hex(b"weights")), "{message}");
        assert_only_lock_left(&model_dir(&root.0, &entry));
    }

    #[test]
    fn a_part_left_by_a_killed_download_is_overwritten() {
        let root = TempDir::new("stale-part");
        let base = serve(b"weights".to_vec(), 1);
        let url = format!("{base}/w.safetensors");
        let entry = weights_from(&url);
        let dir = model_dir(&root.0, &entry);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("w.safetensors.part"),
            b"half a download from a killed run",
        )
        .unwrap();
        assert_eq!(
            ensure_model(&entry, &root.0).unwrap(),
            dir.join("w.safetensors")
        );
        assert_eq!(fs::read(dir.join("w.safetensors")).unwrap(), b"weights");
        assert!(!dir.join("w.safetensors.part").exists());
    }

    #[test]
    fn a_second_run_waits_for_the_download_and_uses_its_file() {
        let root = TempDir::new("wait");
        // Only an unreachable URL: the waiting run must not download at all.
        let entry = weights_from(DEAD_URL);
        let dir = model_dir(&root.0, &entry);
        fs::create_dir_all(&dir).unwrap();
        let first = lock_model_dir(&dir).unwrap();
        let cache = root.0.clone();
        let waiting = std::thread::spawn(move || ensure_model(&entry, &cache));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiting.is_finished(), "the second run did not wait");
        fs::write(dir.join("w.safetensors"), b"weights").unwrap();
        drop(first);
        assert_eq!(waiting.join().unwrap().unwrap(), dir.join("w.safetensors"));
    }

    #[test]
    fn hf_layout_resolves_to_its_directory() {
        let root = TempDir::new("hf");
        let base = serve(b"{}".to_vec(), 1);
        let config_url = format!("{base}/config.json");
        let entry = entry_with(
            "tiny-hf",
            Layout::Hf,
            vec![
                file_for("config.json", b"{}", &[&config_url]),
                file_for("model.safetensors", b"weights", &[DEAD_URL]),
            ],
        );
        let dir = model_dir(&root.0, &entry);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("model.safetensors"), b"weights").unwrap();
        assert_eq!(ensure_model(&entry, &root.0).unwrap(), dir);
        assert_eq!(fs::read(dir.join("config.json")).unwrap(), b"{}");
    }

    #[test]
    fn unverifiable_entry_is_refused_before_any_download() {
        let root = TempDir::new("nohash");
        let mut file = file_for("w.safetensors", b"weights", &[DEAD_URL]);
        file.sha256 = None;
        let entry = entry_with("tiny", Layout::OpenClip, vec![file]);
        let message = ensure_model(&entry, &root.0).unwrap_err().to_string();
        assert!(
            message.contains("no sha256") && message.contains(DEAD_URL),
            "{message}"
        );
        assert!(!model_dir(&root.0, &entry).exists());
    }

    #[test]
    fn resolve_returns_existing_paths_and_explains_unknown_specs() {
        let dir = TempDir::new("resolve");
        let registry = Registry::builtin();
        let no_cache = || -> Result<PathBuf> { panic!("the cache must not be consulted") };
        let spec = dir.0.display().to_string();
        assert_eq!(resolve_with(&spec, registry, no_cache).unwrap(), dir.0);

        for spec in ["vit-huge", "missing/model.safetensors"] {
            let message = resolve_with(spec, registry, no_cache)
                .unwrap_err()
                .to_string();
            assert!(message.contains(spec), "{message}");
            for name in registry.names() {
                assert!(message.contains(name), "{name} missing from {message}");
            }
            for kind in [".safetensors", ".pt", ".bin", "config.json"] {
                assert!(message.contains(kind), "{kind} missing from {message}");
            }
        }
        assert!(
            resolve_with("missing/model.safetensors", registry, no_cache)
                .unwrap_err()
                .to_string()
                .contains("no such file or directory")
        );
    }
}
