//! The schema of `models/registry.toml` and its validation.
//!
//! Shared word for word by `build.rs` (which includes this file by path and fails the build on a
//! bad registry) and by the crate (which parses the same embedded text at run time), so the two
//! can never disagree about what a valid entry is. Hence std + serde + toml only, and errors as
//! plain `String`s: `crate::error` does not exist inside a build script.

use serde::Deserialize;

/// Who trained the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// LAION-trained OpenCLIP weights.
    OpenClip,
    /// OpenAI's CLIP weights (whatever layout they are stored in).
    OpenAi,
    /// A model known only as a Hugging Face `transformers` repository.
    Hf,
}

/// The tensor-name layout of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// OpenCLIP / OpenAI names: `visual.transformer.resblocks.N.attn.in_proj_weight`.
    OpenClip,
    /// Hugging Face `CLIPModel` names plus a `config.json`:
    /// `vision_model.encoder.layers.N.self_attn.q_proj.weight`.
    Hf,
}

/// The activation inside the transformer MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Exact GELU (OpenCLIP models trained by LAION, unless named `-quickgelu`).
    Gelu,
    /// `x * sigmoid(1.702 x)`, used by every OpenAI CLIP model.
    QuickGelu,
}

impl Family {
    /// Every family with its spelling in `registry.toml`.
    pub const ALL: [(Family, &'static str); 3] = [
        (Family::OpenClip, "openclip"),
        (Family::OpenAi, "openai"),
        (Family::Hf, "hf"),
    ];

    /// The spelling in `registry.toml`.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }
}

impl Layout {
    /// Every layout with its spelling in `registry.toml`.
    pub const ALL: [(Layout, &'static str); 2] =
        [(Layout::OpenClip, "openclip"), (Layout::Hf, "hf")];

    /// The spelling in `registry.toml`.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }
}

impl Activation {
    /// Every activation with its spelling in `registry.toml`.
    pub const ALL: [(Activation, &'static str); 2] = [
        (Activation::Gelu, "gelu"),
        (Activation::QuickGelu, "quick_gelu"),
    ];

    /// The spelling in `registry.toml`.
    pub fn as_str(self) -> &'static str {
        spelling(&Self::ALL, self)
    }
}

fn spelling<T: PartialEq + Copy>(all: &[(T, &'static str)], value: T) -> &'static str {
    all.iter()
        .find(|(v, _)| *v == value)
        .map(|(_, s)| *s)
        .unwrap_or("?")
}

/// One file of a registry model, fetched into `<cache>/<model name>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// File name (or relative path) inside the model's directory.
    pub path: String,
    /// https sources, tried in order; each serves exactly the same bytes.
    pub urls: Vec<String>,
    /// 64 lowercase hex digits. `None` only where no trustworthy value could be found, and then
    /// the file is never downloaded or trusted automatically (the entry's notes say why).
    pub sha256: Option<String>,
    /// Exact size in bytes, where known.
    pub bytes: Option<u64>,
    /// Where `bytes` is unknown: the size the host's page shows, so that a user is told what a
    /// download will cost before it starts. Shown only, never checked.
    pub approx_bytes: Option<u64>,
}

/// One model of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// What users type: `--model NAME`.
    pub name: String,
    /// Who trained the weights.
    pub family: Family,
    /// Tensor-name layout of the checkpoint.
    pub layout: Layout,
    /// OpenCLIP architecture name, e.g. `ViT-B-16-plus-240`.
    pub arch: String,
    /// Input resolution of the vision tower in pixels.
    pub image_size: u32,
    /// MLP activation.
    pub act: Activation,
    /// The files that make up the model: one weights file, plus `config.json` for [`Layout::Hf`].
    pub files: Vec<ModelFile>,
    /// Licence of the weights.
    pub license: String,
    /// Provenance of the values and anything else a user should know.
    pub notes: String,
}

/// File name endings of weights files (as opposed to configs).
pub const WEIGHTS_EXTENSIONS: [&str; 4] = [".safetensors", ".pt", ".pth", ".bin"];

/// Whether `path` names a weights file rather than a config.
pub fn is_weights_path(path: &str) -> bool {
    WEIGHTS_EXTENSIONS.iter().any(|ext| path.ends_with(ext))
}

impl ModelEntry {
    /// The file holding the weights (validation guarantees exactly one).
    pub fn weights_file(&self) -> Option<&ModelFile> {
        self.files.iter().find(|f| is_weights_path(&f.path))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Option<String>,
    family: Option<String>,
    layout: Option<String>,
    arch: Option<String>,
    image_size: Option<i64>,
    act: Option<String>,
    license: Option<String>,
    notes: Option<String>,
    files: Option<Vec<RawFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: Option<String>,
    urls: Option<Vec<String>>,
    sha256: Option<String>,
    bytes: Option<i64>,
    approx_bytes: Option<i64>,
}

/// Parses and validates the text of a registry. On failure the message lists every problem,
/// one per line, each naming the entry, file and field at fault.
pub fn parse(text: &str) -> Result<Vec<ModelEntry>, String> {
    let raw: RawRegistry =
        toml::from_str(text).map_err(|e| format!("not valid registry TOML: {e}"))?;
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    for (index, model) in raw.model.into_iter().enumerate() {
        if let Some(entry) = validate_model(index, model, &mut problems) {
            entries.push(entry);
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        if entries[..i]
            .iter()
            .any(|earlier| earlier.name == entry.name)
        {
            problems.push(format!(
                "entry '{}', field `name`: the name is used by more than one entry",
                entry.name
            ));
        }
    }
    if entries.is_empty() && problems.is_empty() {
        problems.push("no [[model]] entries".to_string());
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems.join("\n"))
    }
}

/// Checks one `[[model]]` entry field by field, in the order the messages should read, and
/// gives the entry only when none of its checks added a problem.
fn validate_model(index: usize, raw: RawModel, problems: &mut Vec<String>) -> Option<ModelEntry> {
    let before = problems.len();
    let label = match &raw.name {
        Some(name) => format!("entry '{name}' ([[model]] #{})", index + 1),
        None => format!("entry [[model]] #{}", index + 1),
    };
    let mut problem = |field: &str, message: String| {
        problems.push(format!("{label}, field `{field}`: {message}"))
    };

    let name = check_name(raw.name, &mut problem);
    let family = pick(&Family::ALL, raw.family.as_deref(), "family", &mut problem);
    let layout = pick(&Layout::ALL, raw.layout.as_deref(), "layout", &mut problem);
    let act = pick(&Activation::ALL, raw.act.as_deref(), "act", &mut problem);
    let arch = required_text(raw.arch, "arch", &mut problem);
    let license = required_text(raw.license, "license", &mut problem);
    let notes = raw.notes.unwrap_or_default();
    let image_size = check_image_size(raw.image_size, &mut problem);
    let files = check_files(raw.files.unwrap_or_default(), &notes, &mut problem);
    check_one_weights_file(&files, &mut problem);
    check_layout_files(layout, &files, &mut problem);

    if problems.len() > before {
        return None;
    }
    Some(ModelEntry {
        name,
        family: family?,
        layout: layout?,
        arch,
        image_size,
        act: act?,
        files,
        license,
        notes,
    })
}

/// The name is what users type after `--model` and the folder of the model in the cache.
fn check_name(name: Option<String>, problem: &mut impl FnMut(&str, String)) -> String {
    let name = name.unwrap_or_default();
    if name.is_empty() {
        problem("name", "missing or empty".into());
    } else if !valid_name(&name) {
        problem(
            "name",
            format!(
                "\"{name}\" must start with a letter or digit and use only lowercase letters, digits, '-', '.', '_'"
            ),
        );
    }
    name
}

/// A text field that must say something (blank counts as missing).
fn required_text(
    value: Option<String>,
    field: &str,
    problem: &mut impl FnMut(&str, String),
) -> String {
    let value = value.unwrap_or_default();
    if value.trim().is_empty() {
        problem(field, "missing or empty".into());
    }
    value
}

/// The input resolution; 0 stands in when it is wrong, and the problem already drops the entry.
fn check_image_size(size: Option<i64>, problem: &mut impl FnMut(&str, String)) -> u32 {
    match size {
        Some(size) if (1..=8192).contains(&size) => size as u32,
        Some(size) => {
            problem(
                "image_size",
                format!("{size} is not a size in pixels (1..=8192)"),
            );
            0
        }
        None => {
            problem("image_size", "missing".into());
            0
        }
    }
}

/// Every `[[model.files]]` entry, each checked on its own and against the ones before it.
fn check_files(
    raw_files: Vec<RawFile>,
    notes: &str,
    problem: &mut impl FnMut(&str, String),
) -> Vec<ModelFile> {
    if raw_files.is_empty() {
        problem(
            "files",
            "at least one [[model.files]] entry is needed".into(),
        );
    }
    let mut files = Vec::new();
    for (index, raw) in raw_files.into_iter().enumerate() {
        let file = check_file(index, raw, notes, &files, problem);
        files.push(file);
    }
    files
}

/// One file, its problems named `files[N] 'path'.field` so the user finds the line at fault.
/// `earlier` are the entry's files before it: a path may appear only once.
fn check_file(
    index: usize,
    raw: RawFile,
    notes: &str,
    earlier: &[ModelFile],
    entry_problem: &mut impl FnMut(&str, String),
) -> ModelFile {
    let label = match &raw.path {
        Some(path) => format!("files[{index}] '{path}'"),
        None => format!("files[{index}]"),
    };
    let mut problem =
        |field: &str, message: String| entry_problem(&format!("{label}.{field}"), message);
    let path = raw.path.unwrap_or_default();
    if let Err(why) = check_relative_path(&path) {
        problem("path", why);
    }
    let urls = check_urls(raw.urls.unwrap_or_default(), &mut problem);
    check_sha256(raw.sha256.as_deref(), notes, &mut problem);
    let bytes = check_bytes(raw.bytes, notes, &mut problem);
    let approx_bytes = check_approx_bytes(raw.approx_bytes, bytes, &mut problem);
    if earlier.iter().any(|f| f.path == path) {
        problem("path", "appears twice in this entry".into());
    }
    ModelFile {
        path,
        urls,
        sha256: raw.sha256,
        bytes,
        approx_bytes,
    }
}

/// Downloads need somewhere to come from, and only over https.
fn check_urls(urls: Vec<String>, problem: &mut impl FnMut(&str, String)) -> Vec<String> {
    if urls.is_empty() {
        problem("urls", "at least one https URL is needed".into());
    }
    for url in &urls {
        if let Err(why) = check_url(url) {
            problem("urls", format!("\"{url}\" {why}"));
        }
    }
    urls
}

/// A file without a digest is never trusted automatically, so leaving it out must be a
/// decision the notes explain, not an oversight.
fn check_sha256(sha256: Option<&str>, notes: &str, problem: &mut impl FnMut(&str, String)) {
    match sha256 {
        Some(hex) if !is_sha256_hex(hex) => {
            problem("sha256", format!("\"{hex}\" must be exactly 64 lowercase hex digits"))
        }
        None if !notes.contains("sha256 unknown") => problem(
            "sha256",
            "missing; if it truly cannot be found, the entry's notes must say \"sha256 unknown\" and why".into(),
        ),
        _ => {}
    }
}

/// The size, checked before the digest on download; like the digest, leaving it out must be
/// explained in the notes.
fn check_bytes(
    bytes: Option<i64>,
    notes: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<u64> {
    match bytes {
        Some(n) if n > 0 => Some(n as u64),
        Some(n) => {
            problem("bytes", format!("{n} must be greater than 0"));
            None
        }
        None => {
            if !notes.contains("bytes unknown") {
                problem(
                    "bytes",
                    "missing; if it truly cannot be found, the entry's notes must say \"bytes unknown\" and why".into(),
                );
            }
            None
        }
    }
}

/// An estimate stands in for an unknown size only: next to an exact one it could only disagree.
fn check_approx_bytes(
    approx: Option<i64>,
    bytes: Option<u64>,
    problem: &mut impl FnMut(&str, String),
) -> Option<u64> {
    match (approx, bytes) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            problem(
                "approx_bytes",
                "only for a file whose exact `bytes` are unknown; remove it".into(),
            );
            None
        }
        (Some(n), None) if n <= 0 => {
            problem("approx_bytes", format!("{n} must be greater than 0"));
            None
        }
        (Some(n), None) => Some(n as u64),
    }
}

/// [`ModelEntry::weights_file`] relies on there being exactly one.
fn check_one_weights_file(files: &[ModelFile], problem: &mut impl FnMut(&str, String)) {
    let weights = files.iter().filter(|f| is_weights_path(&f.path)).count();
    if !files.is_empty() && weights != 1 {
        problem(
            "files",
            format!(
                "needs exactly one weights file (ending in {}), found {weights}",
                WEIGHTS_EXTENSIONS.join(", ")
            ),
        );
    }
}

/// The files must be what the layout's loader opens: HF needs its config.json, OpenCLIP
/// reads one weights file and nothing else.
fn check_layout_files(
    layout: Option<Layout>,
    files: &[ModelFile],
    problem: &mut impl FnMut(&str, String),
) {
    if layout == Some(Layout::Hf) && !files.iter().any(|f| f.path == "config.json") {
        problem(
            "files",
            "layout \"hf\" needs a config.json file next to the weights".into(),
        );
    }
    if layout == Some(Layout::OpenClip) && files.len() > 1 {
        problem(
            "files",
            "layout \"openclip\" is a single weights file".into(),
        );
    }
}

/// The variant `value` spells; a message lists every accepted spelling, so the fix is at hand.
fn pick<T: Copy>(
    all: &[(T, &'static str)],
    value: Option<&str>,
    field: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<T> {
    let accepted = all
        .iter()
        .map(|(_, s)| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match value {
        None => {
            problem(field, format!("missing; one of {accepted}"));
            None
        }
        Some(v) => match all.iter().find(|(_, s)| *s == v) {
            Some((t, _)) => Some(*t),
            None => {
                problem(field, format!("\"{v}\" is not one of {accepted}"));
                None
            }
        },
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
}

/// Whether `hex` is a sha256 digest as the registry spells it.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path ends up joined onto the cache directory, so it must stay inside it.
fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("missing or empty".into());
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return Err(format!(
            "\"{path}\" must be a relative path with '/' separators"
        ));
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "\"{path}\" must not contain empty, '.' or '..' components"
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), &'static str> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("is not an https:// URL");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || !rest.contains('/') {
        return Err("has no host or no path");
    }
    Ok(())
}
