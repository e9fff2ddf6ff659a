//! Text anchors: every prompt through the text tower, ensembled per side (METHOD.md §3).

use burn::tensor::{Tensor, TensorData};

use burn::tensor::Device;

use super::{Domain, TextAnchors, prompts};
use crate::backend::{read_back, read_back_async};
use crate::clip::{Clip, Tokenizer};
use crate::{Error, Result};

/// How many prompts go through the text tower at once.
const TEXT_BATCH: usize = 64;

/// Embeds every prompt of (domain, object): `t = normalize(mean of the unnormalized
/// embeddings)` per side, and the unit embedding of each prompt (METHOD.md §3).
pub fn text_anchors(
    clip: &Clip,
    tokenizer: &Tokenizer,
    domain: &Domain,
    object: &str,
) -> Result<TextAnchors> {
    let job = PromptTokens::new(clip, tokenizer, domain, object)?;
    let mut sorted = Vec::new();
    let mut width = 0;
    let mut device = None;
    for batch in job.batches() {
        let e = clip.encode_text(&batch)?;
        width = e.dims()[1];
        device.get_or_insert_with(|| e.device());
        sorted.extend(read_back(e, "text embeddings")?);
    }
    let device = device.ok_or_else(|| Error::Model("no prompts to embed".into()))?;
    let embeddings = job.unsort(&sorted, width);
    let data = AnchorData::from_embeddings(&embeddings, job.per_side, width)?;
    Ok(data.to_tensors(&device))
}

/// [`text_anchors`] for the browser: the text tower's output is read back asynchronously
/// (WebGPU allows nothing else) and the anchors are put on `host`.
pub async fn text_anchors_async(
    clip: &Clip,
    tokenizer: &Tokenizer,
    domain: &Domain,
    object: &str,
    host: &Device,
) -> Result<TextAnchors> {
    let job = PromptTokens::new(clip, tokenizer, domain, object)?;
    let mut sorted = Vec::new();
    let mut width = 0;
    for batch in job.batches() {
        let e = clip.encode_text(&batch)?;
        width = e.dims()[1];
        sorted.extend(read_back_async(e, "text embeddings").await?);
    }
    let embeddings = job.unsort(&sorted, width);
    let data = AnchorData::from_embeddings(&embeddings, job.per_side, width)?;
    Ok(data.to_tensors(host))
}

/// The token ids of every prompt of (domain, object), normal side first.
struct PromptTokens {
    tokens: Vec<Vec<u32>>,
    per_side: usize,
    /// Prompt indices, shortest first: the text tower pads a batch to its longest prompt, so
    /// batching prompts of similar length wastes the least work (METHOD's prompts run from
    /// 8 to 20 tokens).
    by_length: Vec<usize>,
}

impl PromptTokens {
    fn new(clip: &Clip, tokenizer: &Tokenizer, domain: &Domain, object: &str) -> Result<Self> {
        let [normal, abnormal] = prompts(domain, object)?;
        let context = clip.text.as_ref().map_or(77, |t| t.context_length());
        let mut tokens = Vec::with_capacity(normal.len() + abnormal.len());
        for prompt in normal.iter().chain(&abnormal) {
            let ids = tokenizer.tokenize(prompt, usize::MAX);
            if ids.len() > context {
                return Err(Error::Option {
                    option: "object".into(),
                    message: format!(
                        "the prompt `{prompt}` is {} tokens, over the model's {context}; use a \
                         shorter object name or domain phrase",
                        ids.len()
                    ),
                });
            }
            tokens.push(ids);
        }
        if tokens.is_empty() {
            return Err(Error::Model("no prompts to embed".into()));
        }
        let mut by_length: Vec<usize> = (0..tokens.len()).collect();
        by_length.sort_by_key(|&i| tokens[i].len());
        Ok(PromptTokens {
            tokens,
            per_side: normal.len(),
            by_length,
        })
    }

    /// The prompts in batches of [`TEXT_BATCH`], shortest first.
    fn batches(&self) -> impl Iterator<Item = Vec<Vec<u32>>> + '_ {
        self.by_length
            .chunks(TEXT_BATCH)
            .map(|ids| ids.iter().map(|&i| self.tokens[i].clone()).collect())
    }

    /// Embeddings `[prompts, width]` back in prompt order from the order of [`Self::batches`].
    fn unsort(&self, sorted: &[f32], width: usize) -> Vec<f32> {
        if width == 0 || sorted.len() != self.tokens.len() * width {
            return sorted.to_vec(); // a broken tower: `from_embeddings` names the mismatch
        }
        let mut out = vec![0f32; sorted.len()];
        for (row, &i) in sorted.chunks(width).zip(&self.by_length) {
            out[i * width..(i + 1) * width].copy_from_slice(row);
        }
        out
    }
}

/// Text anchors as host floats: what the caches hold.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AnchorData {
    /// `[2, width]`, row-major.
    pub(super) states: Vec<f32>,
    /// `[rows, width]`, row-major, unit rows.
    pub(super) prompts: Vec<f32>,
    pub(super) rows: usize,
    pub(super) width: usize,
}

impl AnchorData {
    /// From raw `[2·per_side, width]` embeddings, normal block first. Means and norms are
    /// taken in f64 so the result does not depend on summation order.
    pub(super) fn from_embeddings(
        raw: &[f32],
        per_side: usize,
        width: usize,
    ) -> Result<AnchorData> {
        let rows = 2 * per_side;
        if width == 0 || raw.len() != rows * width {
            return Err(Error::Model(format!(
                "text tower gave {} values for {rows} prompts of width {width}",
                raw.len()
            )));
        }
        let unit = |v: &[f64]| -> Result<Vec<f32>> {
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(Error::Model(format!(
                    "a text embedding has norm {norm}; the checkpoint's text tower looks broken"
                )));
            }
            Ok(v.iter().map(|x| (x / norm) as f32).collect())
        };
        let mut states = Vec::with_capacity(2 * width);
        for side in raw.chunks(per_side * width) {
            let mut mean = vec![0f64; width];
            for row in side.chunks(width) {
                for (m, &x) in mean.iter_mut().zip(row) {
                    *m += x as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= per_side as f64);
            states.extend(unit(&mean)?);
        }
        let mut prompts = Vec::with_capacity(raw.len());
        for row in raw.chunks(width) {
            prompts.extend(unit(&row.iter().map(|&x| x as f64).collect::<Vec<_>>())?);
        }
        Ok(AnchorData {
            states,
            prompts,
            rows,
            width,
        })
    }

    pub(super) fn to_tensors(&self, device: &Device) -> TextAnchors {
        TextAnchors {
            states: Tensor::from_data(
                TensorData::new(self.states.clone(), [2, self.width]),
                device,
            ),
            prompts: Tensor::from_data(
                TensorData::new(self.prompts.clone(), [self.rows, self.width]),
                device,
            ),
        }
    }

    pub(super) fn from_anchors(anchors: &TextAnchors) -> Result<AnchorData> {
        let [two, width] = anchors.states.dims();
        let [rows, prompt_width] = anchors.prompts.dims();
        if two != 2 || prompt_width != width || rows == 0 || rows % 2 != 0 {
            return Err(Error::Model(format!(
                "text anchors of shapes [{two}, {width}] and [{rows}, {prompt_width}]; \
                 expected [2, D] and [2·P, D]"
            )));
        }
        Ok(AnchorData {
            states: read_back(anchors.states.clone(), "text anchors")?,
            prompts: read_back(anchors.prompts.clone(), "prompt embeddings")?,
            rows,
            width,
        })
    }
}
