//! Domain-aware contrastive state prompts (METHOD.md §3) and their text embeddings.
//!
//! A prompt is a sentence form (`FORMS`) filled with a domain phrase (`Domain::phrases`), its
//! article and a state-filled object (`NORMAL_STATES` / `ABNORMAL_STATES`). Each side's text
//! anchor is the normalized mean of its prompts' embeddings; the embeddings are the same for
//! every image, so `AnchorCache` keeps them per (model, domain, object), in memory and on disk.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};

use crate::clip::{Clip, Tokenizer};
use crate::{Error, Result};

/// The text side of the detector for one (model, domain, object).
#[derive(Debug, Clone)]
pub struct TextAnchors {
    /// `[2, D]`: row 0 `t_n`, row 1 `t_a` — each the normalized mean of its side's
    /// UNnormalized prompt embeddings.
    pub states: Tensor<2>,
    /// `[2·P, D]`: every prompt's unit embedding, the normal block first (E of the TTA
    /// adapter); order inside a block: domain phrase, then form, then state innermost.
    pub prompts: Tensor<2>,
}

/// Normal states; `{}` is the object name.
pub const NORMAL_STATES: [&str; 7] = [
    "normal {}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
];

/// Abnormal states, pairwise opposite to `NORMAL_STATES`; `{}` is the object name.
pub const ABNORMAL_STATES: [&str; 7] = [
    "damaged {}",
    "abnormal {}",
    "imperfect {}",
    "blemished {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
];

/// The 22 sentence forms. Placeholders are whole words: `D` the domain phrase, `ART` its
/// article (see [`article`]), `{}` the state-filled object.
pub const FORMS: [&str; 22] = [
    "a cropped D of the {}",
    "a cropped D of a {}",
    "a close-up D of a {}",
    "a close-up D of the {}",
    "a bright D of a {}",
    "a bright D of the {}",
    "a dark D of the {}",
    "a dark D of a {}",
    "a jpeg corrupted D of a {}",
    "a jpeg corrupted D of the {}",
    "a blurry D of the {}",
    "a blurry D of a {}",
    "ART D of a {}",
    "ART D of the {}",
    "ART D of a small {}",
    "ART D of the small {}",
    "ART D of a large {}",
    "ART D of the large {}",
    "ART D of the {} for visual inspection",
    "ART D of a {} for visual inspection",
    "ART D of the {} for anomaly detection",
    "ART D of a {} for anomaly detection",
];

/// Most phrases a custom domain may have (8 phrases → 8·22·7 = 1232 prompts per side).
pub const MAX_CUSTOM_PHRASES: usize = 8;

/// What the images show; decides the domain phrases of the prompts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Industrial objects (MVTec AD objects, VisA).
    Object,
    /// Industrial textures (carpet, grid, leather, tile, wood).
    Texture,
    BrainMri,
    LiverCt,
    RetinalOct,
    ChestXray,
    Histopathology,
    /// The user's own phrases, 1 to [`MAX_CUSTOM_PHRASES`], e.g. `["ultrasound image"]`.
    Custom(Vec<String>),
}

/// The built-in domains with their names, in the order the help lists them.
const BUILT_IN: [(&str, Domain); 7] = [
    ("object", Domain::Object),
    ("texture", Domain::Texture),
    ("brain-mri", Domain::BrainMri),
    ("liver-ct", Domain::LiverCt),
    ("retinal-oct", Domain::RetinalOct),
    ("chest-xray", Domain::ChestXray),
    ("histopathology", Domain::Histopathology),
];

/// How a custom domain is written as one `--domain` value.
const CUSTOM_PREFIX: &str = "custom:";

impl Domain {
    /// Builds a custom domain from the user's phrases (trimmed), checking them.
    pub fn custom<S: AsRef<str>>(phrases: &[S]) -> Result<Domain> {
        let phrases: Vec<String> = phrases
            .iter()
            .map(|p| p.as_ref().trim().to_string())
            .collect();
        check_custom(&phrases)?;
        Ok(Domain::Custom(phrases))
    }

    /// The domain phrases, in prompt order (METHOD.md §3). Custom phrases come back trimmed.
    pub fn phrases(&self) -> Vec<String> {
        let fixed: &[&str] = match self {
            Domain::Object => &[
                "industrial photo",
                "industrial image",
                "manufacturing image",
            ],
            Domain::Texture => &["industrial photo", "textural photo", "surface picture"],
            Domain::BrainMri => &["brain MRI scan", "MRI image", "medical image"],
            Domain::LiverCt => &["liver CT scan", "CT image", "medical image"],
            Domain::RetinalOct => &["retinal OCT scan", "OCT image", "medical image"],
            Domain::ChestXray => &["chest X-ray", "radiograph", "medical image"],
            Domain::Histopathology => {
                &["histopathology slide", "microscopy image", "medical image"]
            }
            Domain::Custom(phrases) => {
                return phrases.iter().map(|p| p.trim().to_string()).collect();
            }
        };
        fixed.iter().map(|p| p.to_string()).collect()
    }

    /// The name `FromStr` reads back: `brain-mri`, or `custom:PHRASE,PHRASE` for custom
    /// phrases. Used in cache keys and configs.
    pub fn name(&self) -> String {
        match self {
            Domain::Custom(_) => format!("{CUSTOM_PREFIX}{}", self.phrases().join(",")),
            built_in => BUILT_IN
                .iter()
                .find(|(_, d)| d == built_in)
                .map(|(name, _)| name.to_string())
                .expect("every built-in domain has a name"),
        }
    }

    /// The object name BMAD's medical sets use; `None` for industrial and custom domains,
    /// whose object is the class folder name.
    pub fn default_object(&self) -> Option<&str> {
        match self {
            Domain::BrainMri => Some("brain"),
            Domain::LiverCt => Some("liver"),
            Domain::RetinalOct => Some("retina"),
            Domain::ChestXray => Some("chest"),
            Domain::Histopathology => Some("tissue"),
            Domain::Object | Domain::Texture | Domain::Custom(_) => None,
        }
    }

    /// Errors on custom phrases that cannot make prompts.
    fn check(&self) -> Result<()> {
        match self {
            Domain::Custom(_) => check_custom(&self.phrases()),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Domain {
    type Err = Error;

    /// A built-in name (ASCII case ignored) or `custom:PHRASE,PHRASE,...`.
    fn from_str(s: &str) -> Result<Domain> {
        let s = s.trim();
        if let Some(list) = s
            .get(..CUSTOM_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(CUSTOM_PREFIX))
            .map(|_| &s[CUSTOM_PREFIX.len()..])
        {
            return Domain::custom(&list.split(',').collect::<Vec<_>>());
        }
        BUILT_IN
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, d)| d.clone())
            .ok_or_else(|| domain_error(format!("unknown domain `{s}`")))
    }
}

fn domain_error(what: String) -> Error {
    let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
    Error::Option {
        option: "--domain".into(),
        message: format!(
            "{what}; accepted: {}, or your own 1 to {MAX_CUSTOM_PHRASES} domain phrases as \
             `custom:PHRASE,PHRASE,...` (e.g. `--domain \"custom:ultrasound image,sonogram\"`; \
             each phrase fills `a close-up PHRASE of a damaged OBJECT`)",
            names.join(", ")
        ),
    }
}

fn check_custom(phrases: &[String]) -> Result<()> {
    if phrases.is_empty() || phrases.len() > MAX_CUSTOM_PHRASES {
        return Err(domain_error(format!(
            "a custom domain has {} phrases; it needs 1 to {MAX_CUSTOM_PHRASES}",
            phrases.len()
        )));
    }
    for (i, p) in phrases.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(domain_error(format!(
                "custom domain phrase {} is empty",
                i + 1
            )));
        }
        // `name()` joins the phrases with commas and FromStr splits them there again.
        if p.contains(',') {
            return Err(domain_error(format!(
                "custom domain phrase `{p}` contains a comma, which separates phrases"
            )));
        }
    }
    Ok(())
}

/// The object name of a class folder: the name as is (underscores kept: `metal_nut`), except
/// VisA's `macaroni1` / `macaroni2`, which are both `macaroni`.
pub fn object_name(class_folder: &str) -> Result<String> {
    check_object(class_folder)?;
    Ok(match class_folder {
        "macaroni1" | "macaroni2" => "macaroni".into(),
        name => name.to_string(),
    })
}

fn check_object(object: &str) -> Result<()> {
    if object.trim().is_empty() {
        return Err(Error::Option {
            option: "--object".into(),
            message: "the object name is empty; name what the images show, e.g. \
                      `--object metal_nut` (MVTec/VisA: the class folder name)"
                .into(),
        });
    }
    Ok(())
}

/// `"an"` before a phrase that starts with a vowel sound, else `"a"`.
///
/// ASSUMPTION (METHOD.md §3 says only "before a vowel sound"): decided by the first word.
/// - A word of capitals (an initialism, `MRI`, `OCT`, `CT`) or a single letter before a hyphen
///   (`X-ray`) is read letter by letter: `an` when the first letter's name starts with a vowel
///   sound (A E F H I L M N O R S X), so "an MRI image", "a CT image", "an X-ray";
///   except acronyms read as words (`SPECT`, `STEM`, `LASER`, `LIDAR`, `RADAR`, `SONAR`, `NASA`).
/// - A number: `an` for 8…, 11 and 18 ("an 8-bit image").
/// - Otherwise a vowel letter gives `an`, except words sounding "you"/"w" (`uni…`, `use…`,
///   `usu…`, `uti…`, `uro…`, `ure…`, `eu…`, `ewe…`, `one…`, `once…`), and a silent h gives `an`
///   (`hour…`, `honest…`, `honor…`, `honour…`, `heir…`).
pub fn article(phrase: &str) -> &'static str {
    const LETTER_NAMES_WITH_VOWEL_SOUND: &str = "AEFHILMNORSX";
    const ACRONYMS_READ_AS_WORDS: [&str; 7] =
        ["SPECT", "STEM", "LASER", "LIDAR", "RADAR", "SONAR", "NASA"];
    const CONSONANT_SOUND: [&str; 10] = [
        "uni", "use", "usu", "uti", "uro", "ure", "eu", "ewe", "one", "once",
    ];
    const SILENT_H: [&str; 5] = ["hour", "honest", "honor", "honour", "heir"];

    let word = phrase.split_whitespace().next().unwrap_or("");
    let head: String = word
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let Some(first) = head.chars().next() else {
        return "a";
    };
    let an = |yes: bool| if yes { "an" } else { "a" };
    if first.is_ascii_digit() {
        let number: String = head.chars().take_while(char::is_ascii_digit).collect();
        return an(number.starts_with('8') || number == "11" || number == "18");
    }
    let single_letter = head.len() == 1;
    let initialism = head.len() >= 2
        && first.is_ascii_uppercase()
        && head
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if (single_letter || initialism) && !ACRONYMS_READ_AS_WORDS.contains(&head.as_str()) {
        return an(LETTER_NAMES_WITH_VOWEL_SOUND.contains(first.to_ascii_uppercase()));
    }
    let lower = word.to_lowercase();
    if SILENT_H.iter().any(|w| lower.starts_with(w)) {
        return "an";
    }
    an("aeiou".contains(first.to_ascii_lowercase())
        && !CONSONANT_SOUND.iter().any(|w| lower.starts_with(w)))
}

/// Replaces whole-word placeholders; substituted text is not scanned again, so a phrase or
/// object that happens to contain `D`, `ART` or `{}` stays as given.
fn fill(template: &str, with: &[(&str, &str)]) -> String {
    template
        .split(' ')
        .map(|w| with.iter().find(|(k, _)| *k == w).map_or(w, |(_, v)| *v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The normal and the abnormal prompts: per side, for each domain phrase (outermost), each of
/// the 22 forms, each of the 7 states (innermost) — 462 per side for a built-in domain.
pub fn prompts(domain: &Domain, object: &str) -> Result<[Vec<String>; 2]> {
    domain.check()?;
    check_object(object)?;
    let side = |states: &[&str; 7]| -> Vec<String> {
        let mut out = Vec::with_capacity(domain.phrases().len() * FORMS.len() * states.len());
        for phrase in domain.phrases() {
            let art = article(&phrase);
            for form in FORMS {
                for state in states {
                    let thing = fill(state, &[("{}", object)]);
                    out.push(fill(form, &[("ART", art), ("D", &phrase), ("{}", &thing)]));
                }
            }
        }
        out
    };
    Ok([side(&NORMAL_STATES), side(&ABNORMAL_STATES)])
}

/// How many prompts go through the text tower at once.
const TEXT_BATCH: usize = 64;

/// Embeds every prompt of (domain, object): `t = normalize(mean of the unnormalized
/// embeddings)` per side, and the unit embedding of each prompt (METHOD.md §3).
pub fn text_anchors(
    clip: &Clip,
    tokenizer: &Tokenizer,
    domain: &Domain,
    object: &str,
) -> Result<TextAnchors> {
    let [normal, abnormal] = prompts(domain, object)?;
    let context = clip.text.as_ref().map_or(77, |t| t.context_length());
    let mut tokens = Vec::with_capacity(normal.len() + abnormal.len());
    for prompt in normal.iter().chain(&abnormal) {
        let ids = tokenizer.tokenize(prompt, usize::MAX);
        if ids.len() > context {
            return Err(Error::Option {
                option: "--object/--domain".into(),
                message: format!(
                    "the prompt `{prompt}` is {} tokens, over the model's {context}; use a \
                     shorter object name or domain phrase",
                    ids.len()
                ),
            });
        }
        tokens.push(ids);
    }
    let mut embeddings = Vec::new();
    let mut width = 0;
    let mut device = None;
    for batch in tokens.chunks(TEXT_BATCH) {
        let e = clip.encode_text(batch)?;
        width = e.dims()[1];
        device.get_or_insert_with(|| e.device());
        embeddings.extend(host_values(e)?);
    }
    let device = device.ok_or_else(|| Error::Model("no prompts to embed".into()))?;
    let data = AnchorData::from_embeddings(&embeddings, normal.len(), width)?;
    Ok(data.to_tensors(&device))
}

fn host_values(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Model(format!("reading text embeddings back: {e:?}")))
}

/// Text anchors as host floats: what the caches hold.
#[derive(Debug, Clone, PartialEq)]
struct AnchorData {
    /// `[2, width]`, row-major.
    states: Vec<f32>,
    /// `[rows, width]`, row-major, unit rows.
    prompts: Vec<f32>,
    rows: usize,
    width: usize,
}

impl AnchorData {
    /// From raw `[2·per_side, width]` embeddings, normal block first. Means and norms are
    /// taken in f64 so the result does not depend on summation order.
    fn from_embeddings(raw: &[f32], per_side: usize, width: usize) -> Result<AnchorData> {
        let rows = 2 * per_side;
        if width == 0 || raw.len() != rows * width {
            return Err(Error::Model(format!(
                "text tower gave {} values for {rows} prompts of width {width}",
                raw.len()
            )));
        }
        let unit = |v: &[f64]| -> Result<Vec<f32>> {
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(Error::Model(format!(
                    "a text embedding has norm {norm}; the checkpoint's text tower looks broken"
                )));
            }
            Ok(v.iter().map(|x| (x / norm) as f32).collect())
        };
        let mut states = Vec::with_capacity(2 * width);
        for side in raw.chunks(per_side * width) {
            let mut mean = vec![0f64; width];
            for row in side.chunks(width) {
                for (m, &x) in mean.iter_mut().zip(row) {
                    *m += x as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= per_side as f64);
            states.extend(unit(&mean)?);
        }
        let mut prompts = Vec::with_capacity(raw.len());
        for row in raw.chunks(width) {
            prompts.extend(unit(&row.iter().map(|&x| x as f64).collect::<Vec<_>>())?);
        }
        Ok(AnchorData {
            states,
            prompts,
            rows,
            width,
        })
    }

    fn to_tensors(&self, device: &Device) -> TextAnchors {
        TextAnchors {
            states: Tensor::from_data(
                TensorData::new(self.states.clone(), [2, self.width]),
                device,
            ),
            prompts: Tensor::from_data(
                TensorData::new(self.prompts.clone(), [self.rows, self.width]),
                device,
            ),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn from_anchors(anchors: &TextAnchors) -> Result<AnchorData> {
        let [two, width] = anchors.states.dims();
        let [rows, prompt_width] = anchors.prompts.dims();
        if two != 2 || prompt_width != width || rows == 0 || rows % 2 != 0 {
            return Err(Error::Model(format!(
                "text anchors of shapes [{two}, {width}] and [{rows}, {prompt_width}]; \
                 expected [2, D] and [2·P, D]"
            )));
        }
        Ok(AnchorData {
            states: host_values(anchors.states.clone())?,
            prompts: host_values(anchors.prompts.clone())?,
            rows,
            width,
        })
    }
}

/// The key of one cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AnchorKey {
    model_id: String,
    domain: String,
    object: String,
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
        let key = AnchorKey {
            model_id: model_id.to_string(),
            domain: domain.name(),
            object: object.to_string(),
        };
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
        for part in [&key.model_id, &key.domain, &key.object] {
            disk::put_str(&mut id, part);
        }
        Some(dir.join(format!("anchors-{}.bin", disk::hex(&disk::sha256(&id)))))
    }

    /// [`model_id`] of `path`, memoized by (canonical path, size, mtime) in memory and in
    /// `<dir>/model-ids.json`, so a large checkpoint is hashed once per machine.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn model_id(&mut self, path: &std::path::Path) -> Result<String> {
        let weights = weights_file(path)?;
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
    sha256_file(&weights_file(path)?)
}

/// The file whose bytes are the model: `path` itself, or a directory's weights file.
#[cfg(not(target_arch = "wasm32"))]
fn weights_file(path: &std::path::Path) -> Result<std::path::PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Checkpoint {
            path: path.display().to_string(),
            message: "a model directory needs model.safetensors or pytorch_model.bin".into(),
        })
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
    Ok(disk::hex(&hasher.finalize()))
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
    /// `MAGIC`, `VERSION`, model id, domain name, object (each length + UTF-8), `[2, width]`
    /// then the states, `[rows, width]` then the prompt rows, and last the sha256 of
    /// everything before it.
    const MAGIC: &[u8; 16] = b"duoclip-anchors\0";
    const VERSION: u32 = 1;
    pub const MODEL_ID_MEMO: &str = "model-ids.json";

    pub fn sha256(bytes: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(bytes).into()
    }

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        for part in [&key.model_id, &key.domain, &key.object] {
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
        if (r.str()?, r.str()?, r.str()?)
            != (
                key.model_id.as_str(),
                key.domain.as_str(),
                key.object.as_str(),
            )
        {
            return None;
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

    #[test]
    fn built_in_domains_make_462_prompts_per_side() {
        for (name, domain) in BUILT_IN {
            let [n, a] = prompts(&domain, "metal_nut").unwrap();
            assert_eq!((n.len(), a.len()), (462, 462), "{name}");
            assert_eq!(domain.phrases().len(), 3);
            assert_eq!(name.parse::<Domain>().unwrap(), domain);
            assert_eq!(domain.name(), name);
        }
    }

    #[test]
    fn prompt_order_is_phrase_then_form_then_state() {
        let [n, a] = prompts(&Domain::Object, "metal_nut").unwrap();
        assert_eq!(
            &n[..8],
            [
                "a cropped industrial photo of the normal metal_nut",
                "a cropped industrial photo of the flawless metal_nut",
                "a cropped industrial photo of the perfect metal_nut",
                "a cropped industrial photo of the unblemished metal_nut",
                "a cropped industrial photo of the metal_nut without flaw",
                "a cropped industrial photo of the metal_nut without defect",
                "a cropped industrial photo of the metal_nut without damage",
                "a cropped industrial photo of a normal metal_nut",
            ]
        );
        assert_eq!(
            &n[n.len() - 2..],
            [
                "a manufacturing image of a metal_nut without defect for anomaly detection",
                "a manufacturing image of a metal_nut without damage for anomaly detection",
            ]
        );
        assert_eq!(a[0], "a cropped industrial photo of the damaged metal_nut");
        assert_eq!(
            a[461],
            "a manufacturing image of a metal_nut with damage for anomaly detection"
        );
        // Second phrase starts at 22·7; form 13 ("ART D of a {}") is index 12.
        assert_eq!(
            a[154],
            "a cropped industrial image of the damaged metal_nut"
        );
        assert_eq!(a[12 * 7], "an industrial photo of a damaged metal_nut");
        assert!(n.iter().chain(&a).all(|p| !p.ends_with('.')));
    }

    #[test]
    fn article_follows_the_sound() {
        let cases = [
            ("industrial photo", "an"),
            ("industrial image", "an"),
            ("manufacturing image", "a"),
            ("textural photo", "a"),
            ("surface picture", "a"),
            ("brain MRI scan", "a"),
            ("MRI image", "an"),
            ("medical image", "a"),
            ("CT image", "a"),
            ("OCT image", "an"),
            ("retinal OCT scan", "a"),
            ("chest X-ray", "a"),
            ("X-ray image", "an"),
            ("radiograph", "a"),
            ("histopathology slide", "a"),
            ("microscopy image", "a"),
            ("ultrasound image", "an"),
            ("unit photo", "a"),
            ("USB camera photo", "a"),
            ("SEM image", "an"),
            ("SPECT image", "a"),
            ("hour-long exposure", "an"),
            ("8-bit image", "an"),
            ("3D scan", "a"),
            ("euclidean render", "a"),
            ("", "a"),
        ];
        for (phrase, want) in cases {
            assert_eq!(article(phrase), want, "{phrase}");
        }
        let [n, _] = prompts(&Domain::BrainMri, "brain").unwrap();
        assert!(n.contains(&"an MRI image of the small perfect brain".to_string()));
        assert!(n.contains(&"a brain MRI scan of a brain without flaw".to_string()));
    }

    #[test]
    fn object_names_come_from_class_folders() {
        assert_eq!(object_name("metal_nut").unwrap(), "metal_nut");
        assert_eq!(object_name("macaroni1").unwrap(), "macaroni");
        assert_eq!(object_name("macaroni2").unwrap(), "macaroni");
        assert_eq!(object_name("pcb1").unwrap(), "pcb1");
        for bad in ["", "  ", "\t"] {
            let e = object_name(bad).unwrap_err().to_string();
            assert!(e.contains("--object"), "{e}");
        }
        assert!(prompts(&Domain::Object, " ").is_err());
    }

    #[test]
    fn medical_domains_have_default_objects() {
        let objects: Vec<_> = BUILT_IN.iter().map(|(_, d)| d.default_object()).collect();
        assert_eq!(
            objects,
            [
                None,
                None,
                Some("brain"),
                Some("liver"),
                Some("retina"),
                Some("chest"),
                Some("tissue")
            ]
        );
    }

    #[test]
    fn custom_domains_are_checked() {
        let d: Domain = "custom: ultrasound image , sonogram".parse().unwrap();
        assert_eq!(
            d,
            Domain::Custom(vec!["ultrasound image".into(), "sonogram".into()])
        );
        assert_eq!(d.name(), "custom:ultrasound image,sonogram");
        assert_eq!(d.name().parse::<Domain>().unwrap(), d);
        let [n, a] = prompts(&d, "kidney").unwrap();
        assert_eq!((n.len(), a.len()), (2 * 22 * 7, 2 * 22 * 7));
        assert_eq!(n[12 * 7], "an ultrasound image of a normal kidney");
        assert_eq!(Domain::custom(&["a"; 8]).unwrap().phrases().len(), 8);
        for bad in ["custom:", "custom:x,,y", "custom:a,b,c,d,e,f,g,h,i"] {
            let e = bad.parse::<Domain>().unwrap_err().to_string();
            assert!(
                e.contains("--domain") && e.contains("custom:"),
                "{bad}: {e}"
            );
        }
        assert!(Domain::custom::<&str>(&[]).is_err());
        assert!(prompts(&Domain::Custom(vec!["ok".into(), " ".into()]), "x").is_err());
        assert!(prompts(&Domain::Custom(vec!["a,b".into()]), "x").is_err());
        let e = "xray".parse::<Domain>().unwrap_err().to_string();
        for name in [
            "object",
            "texture",
            "brain-mri",
            "liver-ct",
            "retinal-oct",
            "chest-xray",
        ] {
            assert!(e.contains(name), "{e}");
        }
        assert!(e.contains("histopathology") && e.contains("custom:"), "{e}");
    }

    #[test]
    fn placeholders_inside_substituted_text_are_kept() {
        let d = Domain::custom(&["ART D photo"]).unwrap();
        let [n, _] = prompts(&d, "{}").unwrap();
        assert_eq!(n[0], "a cropped ART D photo of the normal {}");
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
