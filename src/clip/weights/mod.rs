//! Checkpoints ↔ CLIP modules: safetensors (read by byte ranges) and PyTorch zips (behind a
//! pickle guard), OpenCLIP/OpenAI and Hugging Face layouts, export and random checkpoints.

pub mod checkpoint;
pub mod export;
pub mod hf_config;
pub mod load;
#[cfg(not(target_arch = "wasm32"))]
pub mod pickle_guard;
pub mod random;
pub mod safetensors_ranges;

pub use checkpoint::Checkpoint;
pub use hf_config::HfConfig;
pub use load::Layout;

#[cfg(not(target_arch = "wasm32"))]
use crate::{Error, Result};

/// The checkpoint at `path`: a weights file, or a Hugging Face directory (with its config).
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<(Checkpoint, Option<HfConfig>)> {
    if path.is_dir() {
        open_hf_dir(path)
    } else {
        Ok((Checkpoint::from_file(path)?, None))
    }
}

/// `config.json` + `model.safetensors` (or `pytorch_model.bin`) of a Hugging Face directory.
#[cfg(not(target_arch = "wasm32"))]
fn open_hf_dir(dir: &std::path::Path) -> Result<(Checkpoint, Option<HfConfig>)> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| Error::io(config_path.display(), e))?;
    let hf = HfConfig::parse(&text, &config_path.display().to_string())?;
    let weights = weights_file(dir)?;
    Ok((Checkpoint::from_file(&weights)?, Some(hf)))
}

/// The file whose bytes are the model: `path` itself, or a Hugging Face directory's
/// `model.safetensors` (else `pytorch_model.bin`).
#[cfg(not(target_arch = "wasm32"))]
pub fn weights_file(path: &std::path::Path) -> Result<std::path::PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Checkpoint {
            path: path.display().to_string(),
            message: "a Hugging Face directory needs model.safetensors or pytorch_model.bin".into(),
        })
}
