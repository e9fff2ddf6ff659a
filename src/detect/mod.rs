//! The detector (METHOD.md §3–§6): language-guided maps, visual references, their fusion and
//! test-time adaptation. Knows nothing of files, browsers or command-line flags.

pub mod config;
mod detector;
pub mod fusion;
pub mod map;
pub mod plan;
pub mod presets;
pub mod reference;
pub mod text_score;
mod transfer;
pub mod tta;
pub mod views;

pub use detector::{Detection, Detector, Prepared, display_image};
