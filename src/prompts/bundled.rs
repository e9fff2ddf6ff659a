//! Text anchors precomputed in a web bundle (`anchors.safetensors`), so that the browser needs
//! no text tower for the bundle's (domain, object) sets.

use burn::tensor::{Device, Tensor, TensorData};

use super::TextAnchors;
use crate::Result;
use crate::clip::Checkpoint;
use crate::models::bundle::{AnchorSet, anchor_keys};

/// Every set of an `anchors.safetensors` (already read), in `sets` order, on `device`.
pub fn read_anchors(
    file: &Checkpoint,
    sets: &[AnchorSet],
    device: &Device,
) -> Result<Vec<TextAnchors>> {
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            let [states, prompts] = anchor_keys(i);
            let shape = |key: &str| {
                file.shape(key).ok_or_else(|| {
                    file.error(format!(
                        "missing `{key}` (anchors of domain `{}`, object `{}`)",
                        set.domain, set.object
                    ))
                })
            };
            let (s, p) = (shape(&states)?, shape(&prompts)?);
            let width = s.get(1).copied().unwrap_or(0);
            if s.len() != 2 || s[0] != 2 || p.len() != 2 || p[1] != width || p[0] % 2 != 0 {
                return Err(file.error(format!(
                    "`{states}` {s:?} and `{prompts}` {p:?}; expected [2, D] and [2·P, D]"
                )));
            }
            let tensor = |key: &str, shape: Vec<usize>| -> Result<Tensor<2>> {
                let values = file.take(key, &shape)?;
                Ok(Tensor::from_data(TensorData::new(values, shape), device))
            };
            Ok(TextAnchors {
                states: tensor(&states, s)?,
                prompts: tensor(&prompts, p)?,
            })
        })
        .collect()
}
