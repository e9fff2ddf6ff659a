//! One entry per parser of untrusted input, run on arbitrary bytes by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/`) and by the fuzz smoke test (`tests/fuzz_smoke.rs`, seed corpus +
//! regressions + seeded mutations), both of which include this file as a module. Whatever the bytes, each entry returns `Ok` or a duoclip [`Error`] —
//! never a panic, a hang, or an allocation beyond what the bytes themselves justify.
//!
//! The entries go through the same public functions the CLI and the browser call, so a crash
//! found here is a crash a user's file could cause.

// Each fuzz target calls one entry; the others are unused there.
#![allow(dead_code)]

use duoclip::clip::{ArchOverrides, Checkpoint, Clip, HfConfig, Tokenizer};
use duoclip::image::{ImageLimits, decode, to_clip_input};
use duoclip::models::bundle::Manifest;
use duoclip::models::registry::Registry;
use duoclip::source::{ReadOptions, Source};
use duoclip::{Error, Result};

/// Image sizes the image entry accepts: at most 4 megapixels (decoding then needs at most
/// 32 MB, the decoder's 16-bit RGBA worst case), so `-rss_limit_mb=2048` is a real bound.
pub const FUZZ_IMAGE_LIMITS: ImageLimits = ImageLimits {
    max_width: 4096,
    max_height: 4096,
    max_pixels: 4_000_000,
    min_side: 8,
    max_voxels: 16_000_000,
};

/// Input side the image entry preprocesses to (the tiny test models' size).
const FUZZ_INPUT_SIZE: u32 = 32;

/// Reads every tensor of a safetensors file (as the browser does, from memory), then builds
/// a CLIP from it on the CPU, as `duoclip score --model FILE` does. Returns how many values
/// were read.
pub fn safetensors_checkpoint(bytes: &[u8]) -> Result<usize> {
    let ckpt = Checkpoint::from_safetensors_bytes(bytes.to_vec(), "fuzz.safetensors")?;
    read_and_build(&ckpt)
}

/// Reads a PyTorch zip checkpoint through the file path the CLI uses: the bytes are written
/// to `scratch` first (burn-store's PyTorch reader opens files, not memory).
#[cfg(not(target_arch = "wasm32"))]
pub fn pytorch_checkpoint(bytes: &[u8], scratch: &std::path::Path) -> Result<usize> {
    std::fs::write(scratch, bytes).map_err(|e| Error::io(scratch.display(), e))?;
    let ckpt = Checkpoint::from_file(scratch)?;
    read_and_build(&ckpt)
}

/// Every tensor converted to f32 (dtype, shape and finiteness checks included), then the
/// loader's architecture inference and module building.
fn read_and_build(ckpt: &Checkpoint) -> Result<usize> {
    let mut values = 0;
    for key in ckpt.keys() {
        let shape = ckpt.shape(key).unwrap_or_default();
        values += ckpt.take(key, &shape)?.len();
    }
    // One head per tower, as `--vision-heads 1 --text-heads 1` gives: it divides any width,
    // so the tiny seed models build completely.
    let overrides = ArchOverrides {
        vision_heads: Some(1),
        text_heads: Some(1),
        ..ArchOverrides::default()
    };
    Clip::from_checkpoint(ckpt, None, &overrides, &duoclip::backend::cpu())?;
    Ok(values)
}

/// Parses a Hugging Face `config.json` and asks it what the loader asks.
pub fn hf_config(bytes: &[u8]) -> Result<()> {
    let text = utf8(bytes, "config.json")?;
    let config = HfConfig::parse(text, "config.json")?;
    for section in ["vision_config", "text_config"] {
        config.heads(section);
        config.act(section)?;
    }
    Ok(())
}

/// Tokenizes arbitrary text (lossily decoded, as a prompt typed anywhere could be) at CLIP's
/// context length. Returns the token count.
pub fn tokenize(tokenizer: &Tokenizer, bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let tokens = tokenizer.tokenize(&text, 77);
    tokens.len() + tokenizer.encode(&text).len()
}

/// Decodes an image within [`FUZZ_IMAGE_LIMITS`] and turns it into the CLIP input.
pub fn image(bytes: &[u8]) -> Result<usize> {
    let img = decode(bytes, "fuzz-image", &FUZZ_IMAGE_LIMITS)?;
    Ok(to_clip_input(&img, FUZZ_INPUT_SIZE).len())
}

/// Opens any file as `duoclip score` does (DICOM, NIfTI, TIFF and the other raster formats,
/// recognised from the bytes) within [`FUZZ_IMAGE_LIMITS`], and decodes every image it
/// holds. The `dicom`, `nifti` and `tiff` targets differ only in their seed corpus. Returns
/// the number of 8-bit samples produced.
pub fn source(bytes: &[u8]) -> Result<usize> {
    let options = ReadOptions {
        limits: FUZZ_IMAGE_LIMITS,
        ..ReadOptions::default()
    };
    let source = Source::open(bytes.to_vec(), "fuzz-file", &options)?;
    let mut samples = 0;
    for index in 0..source.len() {
        samples += source.image(index)?.image.data.len();
    }
    Ok(samples)
}

/// Parses registry text (`models/registry.toml`'s format). Returns the entry count.
pub fn registry(bytes: &[u8]) -> Result<usize> {
    let text = utf8(bytes, "registry.toml")?;
    Ok(Registry::parse(text)?.entries().len())
}

/// Parses a bundle `manifest.json`.
pub fn bundle_manifest(bytes: &[u8]) -> Result<()> {
    let text = utf8(bytes, "manifest.json")?;
    Manifest::parse(text, "manifest.json").map(|_| ())
}

/// Text files are read as UTF-8, failing as `std::fs::read_to_string` does for the CLI.
fn utf8<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        Error::io(
            name,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}
