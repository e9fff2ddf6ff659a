//! A Hugging Face `CLIPModel` `config.json`: heads and activation come from it, and every
//! number it states is checked against the tensors' shapes.

use serde_json::Value;

use super::checkpoint::Checkpoint;
use crate::clip::config::{Activation, TextConfig, TowerConfig, VisionConfig};
use crate::{Error, Result};

pub struct HfConfig {
    path: String,
    value: Value,
}

impl HfConfig {
    pub fn parse(text: &str, path: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Checkpoint {
            path: path.into(),
            message: format!("invalid JSON: {e}"),
        })?;
        if !value.get("vision_config").is_some_and(Value::is_object) {
            return Err(Error::Checkpoint {
                path: path.into(),
                message: "no `vision_config` object: not a CLIPModel config.json".into(),
            });
        }
        Ok(HfConfig {
            path: path.into(),
            value,
        })
    }

    fn field(&self, section: &str, key: &str) -> Option<&Value> {
        self.value.get(section).and_then(|s| s.get(key))
    }

    fn number(&self, section: &str, key: &str) -> Option<usize> {
        self.field(section, key)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    }

    /// `num_attention_heads` of a section, when stated.
    pub fn heads(&self, section: &str) -> Option<usize> {
        self.number(section, "num_attention_heads")
    }

    /// `hidden_act` (transformers' default for CLIP is `quick_gelu`).
    pub fn act(&self, section: &str) -> Result<Activation> {
        match self.field(section, "hidden_act").and_then(Value::as_str) {
            None | Some("quick_gelu") => Ok(Activation::QuickGelu),
            Some("gelu") => Ok(Activation::Gelu),
            Some(other) => Err(Error::Checkpoint {
                path: self.path.clone(),
                message: format!("{section}.hidden_act = `{other}`; supported: gelu, quick_gelu"),
            }),
        }
    }

    /// Fails when a stated number contradicts what the tensors say.
    fn agree(&self, section: &str, key: &str, found: usize, ckpt: &Checkpoint) -> Result<()> {
        match self.number(section, key) {
            Some(stated) if stated != found => Err(ckpt.error(format!(
                "{} says {section}.{key} = {stated}, but the tensors give {found}; the config \
                 does not belong to these weights",
                self.path
            ))),
            _ => Ok(()),
        }
    }

    fn check_tower(
        &self,
        section: &str,
        t: &TowerConfig,
        ckpt: &Checkpoint,
    ) -> Result<TowerConfig> {
        self.agree(section, "hidden_size", t.width, ckpt)?;
        self.agree(section, "intermediate_size", t.mlp_width, ckpt)?;
        self.agree(section, "num_hidden_layers", t.layers, ckpt)?;
        let eps = self
            .field(section, "layer_norm_eps")
            .and_then(Value::as_f64);
        Ok(TowerConfig {
            eps: eps.unwrap_or(t.eps),
            ..*t
        })
    }

    pub fn check_vision(&self, c: &VisionConfig, ckpt: &Checkpoint) -> Result<VisionConfig> {
        let s = "vision_config";
        self.agree(s, "patch_size", c.patch, ckpt)?;
        self.agree(s, "image_size", c.image_size, ckpt)?;
        self.top_agree("projection_dim", c.embed_dim, ckpt)?;
        Ok(VisionConfig {
            tower: self.check_tower(s, &c.tower, ckpt)?,
            ..*c
        })
    }

    pub fn check_text(&self, c: &TextConfig, ckpt: &Checkpoint) -> Result<TextConfig> {
        let s = "text_config";
        self.agree(s, "vocab_size", c.vocab_size, ckpt)?;
        self.agree(s, "max_position_embeddings", c.context_length, ckpt)?;
        self.top_agree("projection_dim", c.embed_dim, ckpt)?;
        Ok(TextConfig {
            tower: self.check_tower(s, &c.tower, ckpt)?,
            ..*c
        })
    }

    fn top_agree(&self, key: &str, found: usize, ckpt: &Checkpoint) -> Result<()> {
        match self.value.get(key).and_then(Value::as_u64) {
            Some(stated) if stated as usize != found => Err(ckpt.error(format!(
                "{} says {key} = {stated}, but the tensors give {found}; the config does not \
                 belong to these weights",
                self.path
            ))),
            _ => Ok(()),
        }
    }
}
