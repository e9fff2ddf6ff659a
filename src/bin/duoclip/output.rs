//! Writing results: every file goes to a temporary name first and is renamed into place, so
//! a crash never leaves half a result behind.

use std::path::Path;

use duoclip::image::RgbImage;
use duoclip::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use npyz::WriterBuilder;
use serde_json::Value;

/// Writes bytes atomically (temp file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.display().to_string();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(Path::new(&tmp).display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(&name, e))
}

pub fn write_json(path: &Path, doc: &Value) -> Result<()> {
    let text = serde_json::to_string(doc).map_err(|e| Error::Model(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// A float32 `.npy` array of shape `[height, width]` (C order).
pub fn write_npy(path: &Path, map: &[f32], height: usize, width: usize) -> Result<()> {
    let mut bytes = Vec::with_capacity(128 + map.len() * 4);
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[height as u64, width as u64])
        .writer(&mut bytes)
        .begin_nd()
        .map_err(|e| Error::io(path.display(), e))?;
    writer
        .extend(map.iter().copied())
        .map_err(|e| Error::io(path.display(), e))?;
    writer.finish().map_err(|e| Error::io(path.display(), e))?;
    write_atomic(path, &bytes)
}

pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(
        encoder,
        &image.data,
        image.width,
        image.height,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error::Image {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// A progress bar with ETA for `n` items (hidden for one item or none).
pub fn progress(n: usize, unit: &str) -> ProgressBar {
    if n <= 1 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, ETA {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

/// A file name from `name`: characters other than ASCII letters, digits, `-`, `_`, `.`
/// replaced by `_`, leading dots dropped, so nothing lands outside the output folder.
pub fn safe_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match clean.trim_start_matches('.') {
        "" => "image".into(),
        s => s.into(),
    }
}

/// An error as this tool says it: options named by their flags (`ref_layers` → `--ref-layers`).
pub fn cli_message(e: &Error) -> String {
    e.render(&flag)
}

/// A library text naming options as `‹key›` (a loader's note), with this tool's flags.
pub fn cli_text(text: &str) -> String {
    duoclip::error::render_options(text, &flag)
}

fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}
