//! Domain-aware contrastive state prompts (METHOD.md §3) and their text embeddings.

use burn::tensor::Tensor;

/// The text side of the detector for one (model, domain, object).
#[derive(Debug, Clone)]
pub struct TextAnchors {
    /// `[2, D]`: row 0 `t_n`, row 1 `t_a` — each the normalized mean of its side's
    /// UNnormalized prompt embeddings.
    pub states: Tensor<2>,
    /// `[2·P, D]`: every prompt's unit embedding, the normal block first (E of the TTA
    /// adapter); order inside a block: domain phrase, then form, then state innermost.
    pub prompts: Tensor<2>,
}
