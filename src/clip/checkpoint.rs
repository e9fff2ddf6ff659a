//! Raw named tensors of a checkpoint file, read with burn-store (safetensors; PyTorch zip
//! state dicts natively — pickles are parsed by burn-store's reader, never executed).
//! Keys taken by the loader are tracked so that leftovers can be reported.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::DType;

use super::safetensors_header;
use crate::{Error, Result};

type PackTensor = burn::store::burn_pack::Tensor;

/// What duoclip reads, for error messages.
pub const SUPPORTED_FORMATS: &str = "a .safetensors file, a PyTorch .pt/.bin zip state dict \
     (OpenCLIP/OpenAI layout), or a Hugging Face CLIPModel directory (config.json + model.safetensors)";

/// Where training wrappers put a model's keys, tried in order ("" = not wrapped).
const WRAPPER_PREFIXES: [&str; 6] = [
    "",
    "state_dict.",
    "state_dict.module.",
    "module.",
    "model.",
    "model.module.",
];

pub struct Checkpoint {
    /// The file the tensors came from, for messages.
    pub name: String,
    tensors: BTreeMap<String, PackTensor>,
    taken: RefCell<BTreeSet<String>>,
}

impl Checkpoint {
    /// Reads a safetensors file from memory (the browser path).
    pub fn from_safetensors_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        check_header_bytes(&bytes).map_err(|m| bad_header(name, m))?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes));
        let tensors = store
            .get_all_tensors()
            .map_err(|e| bad_file(name, "safetensors", e))?
            .clone();
        Self::new(name, tensors)
    }

    /// Reads a `.safetensors` or PyTorch zip (`.pt`/`.bin`/`.pth`) file, chosen by content.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        use burn::store::PytorchStore;
        let name = path.display().to_string();
        let head = read_head(path)?;
        let tensors = if head.starts_with(b"PK\x03\x04") {
            super::pickle_guard::check_pytorch_zip(path)?;
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            let tensors = store
                .get_all_tensors()
                .map_err(|e| bad_file(&name, "PyTorch", e))?;
            tensors.clone()
        } else if looks_like_safetensors(&head) {
            check_header_file(path).map_err(|m| bad_header(&name, m))?;
            let mut store = SafetensorsStore::from_file(path);
            let tensors = store
                .get_all_tensors()
                .map_err(|e| bad_file(&name, "safetensors", e))?;
            tensors.clone()
        } else {
            return Err(Error::Checkpoint {
                path: name,
                message: format!("not a checkpoint this tool reads; expected {SUPPORTED_FORMATS}"),
            });
        };
        Self::new(&name, tensors)
    }

    /// Wraps tensors made in memory (random weights for benchmarks, tests).
    pub fn from_tensors(name: &str, tensors: BTreeMap<String, PackTensor>) -> Self {
        Checkpoint {
            name: name.into(),
            tensors,
            taken: RefCell::default(),
        }
    }

    fn new(name: &str, tensors: BTreeMap<String, PackTensor>) -> Result<Self> {
        if tensors.is_empty() {
            return Err(Error::Checkpoint {
                path: name.into(),
                message: "holds no tensors".into(),
            });
        }
        Ok(Checkpoint {
            name: name.into(),
            tensors: strip_wrapper_prefix(tensors),
            taken: RefCell::default(),
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Every key, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.tensors.get(key).map(|t| t.shape.to_vec())
    }

    /// Highest `i + 1` such that `format(i)` is a key: the number of repeated blocks.
    pub fn count(&self, key_of: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&key_of(i))).count()
    }

    /// The tensor at `key` as f32 (from f32, f16 or bf16), checked against `expected`.
    pub fn take(&self, key: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let tensor = self.tensors.get(key).ok_or_else(|| self.missing(key))?;
        if tensor.shape.to_vec() != expected {
            return Err(self.error(format!(
                "key `{key}` has shape {:?}, expected {expected:?} for the architecture read from \
                 the other tensors (and config.json, if any)",
                tensor.shape.to_vec()
            )));
        }
        if !matches!(
            tensor.dtype,
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(self.error(format!(
                "key `{key}` has dtype {:?}; accepted: f32, f16, bf16, f64",
                tensor.dtype
            )));
        }
        let data = burn::store::bridge::to_data(tensor)
            .map_err(|e| self.error(format!("key `{key}`: cannot read data: {e:?}")))?;
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| self.error(format!("key `{key}`: {e:?}")))?;
        check_finite(key, &values).map_err(|m| self.error(m))?;
        self.taken.borrow_mut().insert(key.into());
        Ok(values)
    }

    /// Keys present in the file that no loader step took, except known harmless extras.
    pub fn untaken(&self, ignorable: impl Fn(&str) -> bool) -> Vec<String> {
        let taken = self.taken.borrow();
        self.tensors
            .keys()
            .filter(|k| !taken.contains(*k) && !ignorable(k))
            .cloned()
            .collect()
    }

    /// A few keys of the file, to show what it holds.
    pub fn sample_keys(&self) -> String {
        let keys: Vec<&str> = self.tensors.keys().take(6).map(String::as_str).collect();
        format!("{} (of {} keys)", keys.join(", "), self.tensors.len())
    }

    pub fn error(&self, message: String) -> Error {
        Error::Checkpoint {
            path: self.name.clone(),
            message,
        }
    }

    fn missing(&self, key: &str) -> Error {
        self.error(format!(
            "missing key `{key}`; the file holds {}",
            self.sample_keys()
        ))
    }
}

fn bad_file(name: &str, format: &str, e: impl std::fmt::Debug) -> Error {
    Error::Checkpoint {
        path: name.into(),
        message: format!(
            "cannot read it as {format} ({e:?}); the file may be truncated or not a checkpoint. \
             Supported: {SUPPORTED_FORMATS}"
        ),
    }
}

fn bad_header(name: &str, message: String) -> Error {
    Error::Checkpoint {
        path: name.into(),
        message: format!("not a valid safetensors file: {message}"),
    }
}

fn check_header_bytes(bytes: &[u8]) -> std::result::Result<(), String> {
    let len = safetensors_header::header_len(bytes, bytes.len() as u64)?;
    let data = (bytes.len() - 8 - len) as u64;
    safetensors_header::check(&bytes[8..8 + len], data)
}

/// Reads only the header (at most [`safetensors_header::MAX_HEADER_BYTES`]) of the file.
#[cfg(not(target_arch = "wasm32"))]
fn check_header_file(path: &std::path::Path) -> std::result::Result<(), String> {
    use std::io::Read;
    let read = || -> std::io::Result<(u64, Vec<u8>, std::fs::File)> {
        let mut file = std::fs::File::open(path)?;
        let mut first8 = vec![0u8; 8];
        file.read_exact(&mut first8)?;
        Ok((file.metadata()?.len(), first8, file))
    };
    let (file_len, first8, mut file) = read().map_err(|e| e.to_string())?;
    let len = safetensors_header::header_len(&first8, file_len)?;
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    safetensors_header::check(&header, file_len - 8 - len as u64)
}

/// A NaN or infinite weight poisons every output it touches: a damaged or badly exported
/// file is named at load rather than showing up later as NaN anomaly maps.
fn check_finite(key: &str, values: &[f32]) -> std::result::Result<(), String> {
    let Some(at) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let count = values.iter().filter(|v| !v.is_finite()).count();
    Err(format!(
        "key `{key}` holds {count} non-finite value(s) ({} at flat index {at}); the weights \
         are damaged or were exported from a diverged training run. Re-download or re-export \
         the checkpoint",
        values[at]
    ))
}

/// A safetensors file starts with a little-endian u64 header length followed by `{`.
#[cfg(not(target_arch = "wasm32"))]
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{'
}

#[cfg(not(target_arch = "wasm32"))]
fn read_head(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| Error::io(path.display(), e))?;
    Ok(head)
}

/// Keeps only the model's own tensors when a training wrapper nests them, e.g. open_clip's
/// `{"state_dict": {"module.visual…": …}, "optimizer": …}` checkpoints: the first prefix
/// under which a CLIP tower key exists wins, and is removed.
fn strip_wrapper_prefix(tensors: BTreeMap<String, PackTensor>) -> BTreeMap<String, PackTensor> {
    const MARKERS: [&str; 2] = [
        "visual.class_embedding",
        "vision_model.embeddings.class_embedding",
    ];
    let Some(prefix) = WRAPPER_PREFIXES
        .into_iter()
        .find(|p| {
            MARKERS
                .iter()
                .any(|m| tensors.contains_key(&format!("{p}{m}")))
        })
        .filter(|p| !p.is_empty())
    else {
        return tensors;
    };
    tensors
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn map(keys: &[&str]) -> BTreeMap<String, PackTensor> {
        keys.iter()
            .map(|k| {
                let t = burn::store::bridge::from_data(
                    TensorData::new(vec![1.0f32], [1]),
                    k.to_string(),
                    None,
                );
                (k.to_string(), t)
            })
            .collect()
    }

    #[test]
    fn open_clip_training_checkpoints_are_unwrapped() {
        let wrapped = map(&[
            "state_dict.module.visual.class_embedding",
            "state_dict.module.visual.proj",
            "optimizer.state.0.exp_avg",
        ]);
        let keys: Vec<String> = strip_wrapper_prefix(wrapped).into_keys().collect();
        assert_eq!(keys, ["visual.class_embedding", "visual.proj"]);
    }

    #[test]
    fn plain_checkpoints_are_kept_whole() {
        let plain = map(&["visual.class_embedding", "model.extra"]);
        let keys: Vec<String> = strip_wrapper_prefix(plain).into_keys().collect();
        assert_eq!(keys, ["model.extra", "visual.class_embedding"]);
    }
}
