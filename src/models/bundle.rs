//! Web bundles (`duoclip convert`): a folder with `manifest.json`, `model.safetensors` (the
//! image tower, optionally the text tower, OpenCLIP key names, f16 or f32) and
//! `anchors.safetensors` (text anchors precomputed per domain and object), so the browser can
//! score without downloading or running the text tower.
//!
//! The manifest records what the weights file cannot say (head counts, activation), so a
//! bundle loads the same everywhere without options.

use serde::{Deserialize, Serialize};

use crate::clip::{Activation, ArchOverrides};
use crate::{Error, Result};

/// `manifest.json`'s `format`.
pub const FORMAT: &str = "duoclip-bundle";
/// `manifest.json`'s `version` this build reads and writes.
pub const VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const ANCHORS_FILE: &str = "anchors.safetensors";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// Random test weights: maps mean nothing (the page says so).
    #[serde(default)]
    pub test_model: bool,
    pub source: Source,
    pub architecture: Architecture,
    pub weights: WeightsFile,
    pub text: TextTower,
    pub anchors: AnchorsFile,
    pub license: String,
}

/// The model the bundle was converted from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub model: String,
    /// Of the weights file the conversion read.
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub image_size: usize,
    pub vision_heads: usize,
    /// `None` when the bundle has no text tower.
    pub text_heads: Option<usize>,
    pub act: Activation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsFile {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub dtype: Dtype,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    F16,
    F32,
}

/// Whether the weights hold the text tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextTower {
    None,
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorsFile {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// Set `i` is stored as `set{i}.states` `[2, D]` and `set{i}.prompts` `[2P, D]`.
    pub sets: Vec<AnchorSet>,
}

/// One precomputed (domain, object): `domain` as `Domain::name` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorSet {
    pub domain: String,
    pub object: String,
}

impl std::str::FromStr for TextTower {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(TextTower::None),
            "full" => Ok(TextTower::Full),
            _ => Err(Error::Option {
                option: "text".into(),
                message: format!(
                    "`{s}` is not accepted; use none (precomputed anchors only) or full (the \
                     text tower too, for other domains and objects)"
                ),
            }),
        }
    }
}

impl Manifest {
    /// Reads `manifest.json` text; `name` is the file, for messages.
    pub fn parse(text: &str, name: &str) -> Result<Manifest> {
        let bad = |message: String| Error::Checkpoint {
            path: name.into(),
            message,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not JSON ({e}); expected a duoclip bundle manifest"
            ))
        })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(bad(format!(
                "not a duoclip bundle manifest (`format` is not \"{FORMAT}\"); make one with \
                 `duoclip convert`"
            )));
        }
        if value.get("version").and_then(|v| v.as_u64()) != Some(VERSION as u64) {
            return Err(bad(format!(
                "bundle version {}; this duoclip reads version {VERSION}: convert the model again",
                value.get("version").unwrap_or(&serde_json::Value::Null)
            )));
        }
        serde_json::from_value(value).map_err(|e| bad(format!("{e}")))
    }

    /// What the loader needs to know that the weights file does not store.
    pub fn overrides(&self) -> ArchOverrides {
        self.architecture.overrides()
    }
}

impl Architecture {
    pub fn overrides(&self) -> ArchOverrides {
        ArchOverrides {
            vision_heads: Some(self.vision_heads),
            text_heads: self.text_heads,
            act: Some(self.act),
            image_size: Some(self.image_size),
        }
    }
}

/// The names of set `i` in `anchors.safetensors`.
pub fn anchor_keys(i: usize) -> [String; 2] {
    [format!("set{i}.states"), format!("set{i}.prompts")]
}
