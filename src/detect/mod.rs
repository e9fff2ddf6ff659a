//! The detector: language-guided maps, visual references, fusion and test-time adaptation.
//! Knows nothing of files or browsers.

pub mod config;
mod detector;
pub mod map;
pub mod presets;
pub mod reference;
pub mod text_score;
mod transfer;
pub mod tta;
pub mod views;

pub use detector::{Detection, Detector, Prepared, display_image};
