//! Raw named tensors of a checkpoint file. safetensors files are read tensor by tensor from
//! their byte ranges (`safetensors_ranges`); PyTorch zip state dicts (natively) with
//! burn-store, whose pickle reader parses and never executes. Keys taken by the loader are
//! tracked so that leftovers can be reported.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::DType;

use super::safetensors_ranges::{self as st, TensorRange};
use crate::{Error, Result};

type PackTensor = burn::store::burn_pack::Tensor;

/// Reads `start..end` of a safetensors container.
pub type ReadRange = Box<dyn Fn(u64, u64) -> std::result::Result<Vec<u8>, String>>;

/// One tensor: decoded by burn-store, or a byte range of the safetensors container.
enum Entry {
    Pack(PackTensor),
    Range(TensorRange),
}

impl Entry {
    fn shape(&self) -> Vec<usize> {
        match self {
            Entry::Pack(t) => t.shape.to_vec(),
            Entry::Range(r) => r.shape.clone(),
        }
    }

    fn dtype(&self) -> DType {
        match self {
            Entry::Pack(t) => t.dtype,
            Entry::Range(r) => r.dtype,
        }
    }
}

/// What duoclip reads, for error messages.
#[cfg(not(target_arch = "wasm32"))]
pub const SUPPORTED_FORMATS: &str = "a .safetensors file, a PyTorch .pt/.bin zip state dict \
     (OpenCLIP/OpenAI layout), or a Hugging Face CLIPModel directory (config.json + model.safetensors)";
/// The browser reads no PyTorch pickles (`from_file` is native only): its message must not
/// offer them.
#[cfg(target_arch = "wasm32")]
pub const SUPPORTED_FORMATS: &str = "a .safetensors file (OpenCLIP/OpenAI or Hugging Face layout, \
     or a duoclip bundle's model.safetensors); a PyTorch .pt/.bin file must first be converted \
     into a bundle with the duoclip command-line program";

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
    tensors: BTreeMap<String, Entry>,
    /// Reads the byte ranges of `Entry::Range` tensors.
    read: Option<ReadRange>,
    taken: RefCell<BTreeSet<String>>,
}

impl Checkpoint {
    /// Reads a safetensors container of `total` bytes through `read`, tensor by tensor: only
    /// its header is read now (the browser reads from a JavaScript buffer this way).
    pub fn from_safetensors_reader(name: &str, total: u64, read: ReadRange) -> Result<Self> {
        let bad = |message: String| Error::Checkpoint {
            path: name.into(),
            message: format!("{message}. Supported: {SUPPORTED_FORMATS}"),
        };
        if total < 8 {
            return Err(bad(format!(
                "it has {total} bytes, too short for a safetensors header"
            )));
        }
        let prefix: [u8; 8] = read(0, 8)
            .map_err(&bad)?
            .try_into()
            .map_err(|_| bad("its first 8 bytes could not be read".into()))?;
        let n = st::header_len(prefix, total).map_err(&bad)?;
        let header = read(8, 8 + n).map_err(&bad)?;
        let ranges = st::parse_header(&header, total).map_err(&bad)?;
        let tensors = ranges
            .into_iter()
            .map(|(k, r)| (k, Entry::Range(r)))
            .collect();
        let mut ckpt = Self::new(name, tensors)?;
        ckpt.read = Some(read);
        Ok(ckpt)
    }

    /// Reads a safetensors file held in memory.
    pub fn from_safetensors_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        let total = bytes.len() as u64;
        let read: ReadRange = Box::new(move |start, end| {
            bytes
                .get(start as usize..end as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("bytes {start}..{end} are past its end"))
        });
        Self::from_safetensors_reader(name, total, read)
    }

    /// Reads a `.safetensors` or PyTorch zip (`.pt`/`.bin`/`.pth`) file, chosen by content.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        use burn::store::{ModuleStore, PytorchStore};
        let name = path.display().to_string();
        let head = read_head(path)?;
        if head.starts_with(b"PK\x03\x04") {
            super::pickle_guard::check_pytorch_zip(path)?;
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            let tensors = store
                .get_all_tensors()
                .map_err(|e| bad_file(&name, "PyTorch", e))?
                .iter()
                .map(|(k, t)| (k.clone(), Entry::Pack(t.clone())))
                .collect();
            Self::new(&name, tensors)
        } else if looks_like_safetensors(&head) {
            let (total, read) = file_reader(path)?;
            Self::from_safetensors_reader(&name, total, read)
        } else {
            Err(Error::Checkpoint {
                path: name,
                message: format!("not a checkpoint this tool reads; expected {SUPPORTED_FORMATS}"),
            })
        }
    }

    /// Wraps tensors made in memory (random weights for benchmarks, tests).
    pub fn from_tensors(name: &str, tensors: BTreeMap<String, PackTensor>) -> Self {
        Checkpoint {
            name: name.into(),
            tensors: tensors
                .into_iter()
                .map(|(k, t)| (k, Entry::Pack(t)))
                .collect(),
            read: None,
            taken: RefCell::default(),
        }
    }

    fn new(name: &str, tensors: BTreeMap<String, Entry>) -> Result<Self> {
        if tensors.is_empty() {
            return Err(Error::Checkpoint {
                path: name.into(),
                message: "holds no tensors".into(),
            });
        }
        Ok(Checkpoint {
            name: name.into(),
            tensors: strip_wrapper_prefix(tensors),
            read: None,
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
        self.tensors.get(key).map(Entry::shape)
    }

    /// Highest `i + 1` such that `format(i)` is a key: the number of repeated blocks.
    pub fn count(&self, key_of: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.has(&key_of(i))).count()
    }

    /// The tensor at `key` as f32 (from f32, f16 or bf16), checked against `expected`.
    pub fn take(&self, key: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let tensor = self.tensors.get(key).ok_or_else(|| self.missing(key))?;
        if tensor.shape() != expected {
            return Err(self.error(format!(
                "key `{key}` has shape {:?}, expected {expected:?} for the architecture read from \
                 the other tensors (and config.json, if any)",
                tensor.shape()
            )));
        }
        let dtype = tensor.dtype();
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return Err(self.error(format!(
                "key `{key}` has dtype {dtype:?}; accepted: f32, f16, bf16, f64"
            )));
        }
        let values = match tensor {
            Entry::Pack(t) => self.decode_pack(key, t)?,
            Entry::Range(r) => self.decode_range(key, r)?,
        };
        check_finite(key, &values).map_err(|m| self.error(m))?;
        self.taken.borrow_mut().insert(key.into());
        Ok(values)
    }

    fn decode_pack(&self, key: &str, tensor: &PackTensor) -> Result<Vec<f32>> {
        let data = burn::store::bridge::to_data(tensor)
            .map_err(|e| self.error(format!("key `{key}`: cannot read data: {e:?}")))?;
        data.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| self.error(format!("key `{key}`: {e:?}")))
    }

    fn decode_range(&self, key: &str, range: &TensorRange) -> Result<Vec<f32>> {
        let read = self
            .read
            .as_ref()
            .ok_or_else(|| self.error(format!("key `{key}`: no source to read it from")))?;
        let bytes = read(range.start, range.end)
            .map_err(|e| self.error(format!("key `{key}`: cannot read its bytes: {e}")))?;
        st::to_f32(range.dtype, &bytes).ok_or_else(|| {
            self.error(format!(
                "key `{key}`: dtype {:?} is not a float",
                range.dtype
            ))
        })
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

#[cfg(not(target_arch = "wasm32"))]
fn bad_file(name: &str, format: &str, e: impl std::fmt::Debug) -> Error {
    Error::Checkpoint {
        path: name.into(),
        message: format!(
            "cannot read it as {format} ({e:?}); the file may be truncated or not a checkpoint. \
             Supported: {SUPPORTED_FORMATS}"
        ),
    }
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

/// A file's length and a reader of its byte ranges: the file stays on disk, not in memory.
#[cfg(not(target_arch = "wasm32"))]
fn file_reader(path: &std::path::Path) -> Result<(u64, ReadRange)> {
    use std::io::{Read, Seek, SeekFrom};
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let total = file
        .metadata()
        .map_err(|e| Error::io(path.display(), e))?
        .len();
    let file = RefCell::new(file);
    let read: ReadRange = Box::new(move |start, end| {
        let mut bytes = vec![0u8; (end - start) as usize];
        let mut f = file.borrow_mut();
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(|e| format!("reading bytes {start}..{end}: {e}"))?;
        Ok(bytes)
    });
    Ok((total, read))
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
fn strip_wrapper_prefix<T>(tensors: BTreeMap<String, T>) -> BTreeMap<String, T> {
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
