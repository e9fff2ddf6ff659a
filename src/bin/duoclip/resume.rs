//! What makes `eval` resumable: an append-only `progress.jsonl` (one line per scored image,
//! written after its map) and `run.json`, the settings the maps were made with.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use duoclip::{Error, Result};
use serde_json::{Value, json};

use crate::output::write_json;

/// Map path (below the maps folder) → image score, from the lines of `progress.jsonl` that
/// parse; a line torn by a crash is ignored (its image is scored again) and ended, so the
/// next line appended starts on a line of its own.
pub fn read_progress(path: &Path) -> Result<HashMap<PathBuf, f32>> {
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

fn append(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(path.display(), e))
}

/// Records the settings of a new run, or checks that a resumed one uses the same: maps made
/// with other settings must not be mixed into one result.
pub fn check_settings(path: &Path, settings: &Value) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let before: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if &before != settings {
                return Err(Error::Option {
                    option: "--out".into(),
                    message: format!(
                        "{} holds maps made with other settings ({}); use a new --out folder, \
                         or delete that one to start over",
                        path.parent().unwrap_or(path).display(),
                        differences(&before, settings)
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_json(path, settings),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// `key: before → now` for each setting that changed.
fn differences(before: &Value, now: &Value) -> String {
    let keys = now.as_object().into_iter().flat_map(|o| o.keys());
    keys.filter(|k| before.get(k.as_str()) != now.get(k.as_str()))
        .map(|k| {
            format!(
                "{k}: {} → {}",
                before.get(k.as_str()).unwrap_or(&Value::Null),
                now[k.as_str()]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
