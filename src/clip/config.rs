//! Architecture numbers of a CLIP ViT, inferred from a checkpoint's shapes (see `load`).

/// The MLP non-linearity. OpenAI checkpoints use QuickGELU; OpenCLIP's LAION models exact GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (erf).
    Gelu,
    /// `x·σ(1.702·x)`.
    QuickGelu,
}

impl std::str::FromStr for Activation {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "gelu" => Ok(Activation::Gelu),
            "quick_gelu" | "quickgelu" => Ok(Activation::QuickGelu),
            other => Err(crate::Error::Option {
                option: "act".into(),
                message: format!("unknown activation `{other}`; accepted: gelu, quick_gelu"),
            }),
        }
    }
}

impl From<Activation> for crate::cpu::Activation {
    fn from(act: Activation) -> Self {
        match act {
            Activation::Gelu => crate::cpu::Activation::Gelu,
            Activation::QuickGelu => crate::cpu::Activation::QuickGelu,
        }
    }
}

/// One pre-LN transformer tower (vision or text).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TowerConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub act: Activation,
    pub eps: f64,
}

/// The image tower: a tower plus patch embedding geometry and output projection.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct VisionConfig {
    pub tower: TowerConfig,
    pub patch: usize,
    /// Side of the square input the checkpoint was trained at (grid × patch).
    pub image_size: usize,
    pub embed_dim: usize,
}

impl VisionConfig {
    /// Patches per side at the trained input size.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch
    }
}

/// The text tower: a causal tower plus vocabulary and context.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TextConfig {
    pub tower: TowerConfig,
    pub vocab_size: usize,
    pub context_length: usize,
    pub embed_dim: usize,
}

/// A whole CLIP: the text tower is optional (vision-only checkpoints and web bundles).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClipConfig {
    pub vision: VisionConfig,
    pub text: Option<TextConfig>,
}

/// User overrides for what a checkpoint does not store (OpenCLIP files hold no head count
/// nor activation) or for a different input size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArchOverrides {
    pub vision_heads: Option<usize>,
    pub text_heads: Option<usize>,
    pub act: Option<Activation>,
    /// Input side to run at; positional embeddings are interpolated bicubically.
    pub image_size: Option<usize>,
}

/// The OpenCLIP/OpenAI convention where a checkpoint stores no head count: 64-wide heads.
pub const HEAD_WIDTH: usize = 64;
/// LayerNorm epsilon of every OpenAI, OpenCLIP and Hugging Face CLIP.
pub const LAYER_NORM_EPS: f64 = 1e-5;

impl ClipConfig {
    /// OpenCLIP ViT-B-16-plus-240, AnoVL's backbone (METHOD.md §1).
    pub fn vit_b_16_plus_240() -> Self {
        let tower = |width, heads, mlp_width| TowerConfig {
            width,
            layers: 12,
            heads,
            mlp_width,
            act: Activation::Gelu,
            eps: LAYER_NORM_EPS,
        };
        ClipConfig {
            vision: VisionConfig {
                tower: tower(896, 14, 3584),
                patch: 16,
                image_size: 240,
                embed_dim: 640,
            },
            text: Some(TextConfig {
                tower: tower(640, 10, 2560),
                vocab_size: 49408,
                context_length: 77,
                embed_dim: 640,
            }),
        }
    }
}
