//! What makes `score` and `eval` resumable: an append-only `progress.jsonl` (one line per
//! scored image, written after its map) and `run.json`, the settings the maps were made with.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use duoclip::{Error, Result};
use serde_json::{Value, json};

use crate::detector_args::DetectorArgs;
use crate::model_args::ModelArgs;
use crate::output::write_json;

/// The lines of `progress.jsonl` that parse, in order. A line torn by a crash is skipped (its
/// image is scored again) and ended, so the next line appended starts on a line of its own.
pub fn progress_lines(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path.display(), e)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        append(path, "\n")?;
    }
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect())
}

/// Map path (below the maps folder) → image score, from [`progress_lines`].
pub fn read_progress(path: &Path) -> Result<HashMap<PathBuf, f32>> {
    Ok(progress_lines(path)?
        .iter()
        .filter_map(|v| {
            Some((
                PathBuf::from(v["map"].as_str()?),
                v["score"].as_f64()? as f32,
            ))
        })
        .collect())
}

/// Appends one scored image in a single write, so a crash tears at most this line.
pub fn append_progress(path: &Path, map: &Path, score: f32, image: &Path) -> Result<()> {
    let line = json!({
        "map": map.to_string_lossy(),
        "score": score,
        "image": image.display().to_string(),
    });
    append(path, &format!("{line}\n"))
}

/// Appends `lines` in one write: a crash records all of them or tears the last one.
pub fn append_lines(path: &Path, lines: &[Value]) -> Result<()> {
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    append(path, &text)
}

fn append(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(path.display(), e))
}

/// Checks that a resumed run uses the settings recorded in `path` (nothing recorded: a new
/// run): maps made with other settings must not be mixed into one result.
pub fn check_settings(path: &Path, settings: &Value) -> Result<()> {
    let before: Value = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path.display(), e)),
    };
    if &before == settings {
        return Ok(());
    }
    Err(Error::Option {
        option: "out".into(),
        message: format!(
            "{} holds maps made with other settings ({}); use a new --out folder, or delete \
             that one to start over",
            path.parent().unwrap_or(path).display(),
            differences(&before, settings)
        ),
    })
}

/// Records the settings of a run about to write its first map (kept when already there).
pub fn record_settings(path: &Path, settings: &Value) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        write_json(path, settings)
    }
}

/// Everything that shapes the maps, as the user gave it (the device does not).
pub fn run_settings(model: &ModelArgs, d: &DetectorArgs) -> Value {
    json!({
        "model": model.model,
        "image_size": model.image_size,
        "vision_heads": model.vision_heads,
        "text_heads": model.text_heads,
        "act": model.act.map(|a| format!("{a:?}")),
        "preset": d.preset,
        "domain": d.domain,
        "domain_phrases": d.domain_phrases,
        "object": d.object,
        "pairing": d.pairing,
        "references": d.references.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "views": d.views,
        "tta": d.tta,
        "adapter": d.adapter,
        "tta_keep_optimizer": d.tta_keep_optimizer,
        "lambda": d.lambda,
        "ref_layers": d.ref_layers,
        "neighbourhood": d.neighbourhood,
        "seed": d.seed,
        "window": d.window,
        "slice_axis": d.slice_axis,
        "slice_stride": d.slice_stride,
    })
}

/// `key: before → now` for each setting that changed.
fn differences(before: &Value, now: &Value) -> String {
    let keys = now.as_object().into_iter().flat_map(|o| o.keys());
    keys.filter(|k| before.get(k.as_str()) != now.get(k.as_str()))
        .map(|k| change(k, before.get(k.as_str()).unwrap_or(&Value::Null), &now[k]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One changed setting; a long list (a thousand image paths) by its lengths and first
/// difference, which would otherwise bury the message.
fn change(key: &str, before: &Value, now: &Value) -> String {
    let long = |v: &Value| v.to_string().len() > 120;
    match (before, now) {
        (Value::Array(a), Value::Array(b)) if long(before) || long(now) => {
            let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            let at = |list: &Vec<Value>| list.get(i).map_or("none".into(), Value::to_string);
            format!(
                "{key}: {} → {} items, first differing at #{}: {} → {}",
                a.len(),
                b.len(),
                i + 1,
                at(a),
                at(b)
            )
        }
        _ => format!("{key}: {before} → {now}"),
    }
}
