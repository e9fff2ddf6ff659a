//! The causal text tower, pooled at the end-of-text token (= open_clip `encode_text`).

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Int, Tensor, TensorData};

use super::block::ResidualBlock;
use crate::{Error, Result};

#[derive(Module, Debug)]
pub struct TextTransformer {
    /// `[vocab, width]`.
    pub token_embedding: Param<Tensor<2>>,
    /// `[context, width]`.
    pub positional_embedding: Param<Tensor<2>>,
    pub blocks: Vec<ResidualBlock>,
    pub ln_final: LayerNorm,
    /// `[width, embed_dim]`.
    pub text_projection: Param<Tensor<2>>,
}

impl TextTransformer {
    /// The longest token sequence the model takes.
    pub fn context_length(&self) -> usize {
        self.positional_embedding.dims()[0]
    }

    /// Embeds unpadded token sequences (as the tokenizer gives them) → `[batch, embed]`.
    /// The causal mask makes every position after a sequence's last token irrelevant to it,
    /// so the batch is padded only to its longest sequence, not to the full context.
    pub fn forward(&self, tokens: &[Vec<u32>]) -> Result<Tensor<2>> {
        let len = self.check_tokens(tokens)?;
        let device = self.token_embedding.device();
        let batch = tokens.len();
        let ids: Vec<i64> = tokens
            .iter()
            .flat_map(|t| (0..len).map(|i| t.get(i).copied().unwrap_or(0) as i64))
            .collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [batch * len]), &device);
        let width = self.token_embedding.dims()[1];
        let pos = self
            .positional_embedding
            .val()
            .narrow(0, 0, len)
            .unsqueeze_dim(0);
        let mut x = self
            .token_embedding
            .val()
            .select(0, ids)
            .reshape([batch, len, width])
            + pos;
        for block in &self.blocks {
            x = block.forward(x, true);
        }
        let x = self.ln_final.forward(x).reshape([batch * len, width]);
        let rows: Vec<i64> = tokens
            .iter()
            .enumerate()
            .map(|(b, t)| (b * len + eot_position(t)) as i64)
            .collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [batch]), &device);
        Ok(x.select(0, rows).matmul(self.text_projection.val()))
    }

    fn check_tokens(&self, tokens: &[Vec<u32>]) -> Result<usize> {
        let vocab = self.token_embedding.dims()[0];
        let context = self.context_length();
        for (i, t) in tokens.iter().enumerate() {
            if t.is_empty() || t.len() > context {
                return Err(Error::Tokenizer(format!(
                    "text {i} has {} tokens; the model takes 1..={context}",
                    t.len()
                )));
            }
            if let Some(bad) = t.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::Tokenizer(format!(
                    "text {i} has token id {bad}, outside this model's vocabulary of {vocab}"
                )));
            }
        }
        tokens
            .iter()
            .map(Vec::len)
            .max()
            .ok_or_else(|| Error::Tokenizer("no text given: pass at least one prompt".into()))
    }
}

/// CLIP pools at `argmax(ids)`: the first end-of-text token, the largest id.
fn eot_position(tokens: &[u32]) -> usize {
    let max = tokens.iter().copied().max().unwrap_or(0);
    tokens.iter().position(|&t| t == max).unwrap_or(0)
}
