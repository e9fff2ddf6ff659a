//! The detector: language-guided maps, visual references, fusion and test-time adaptation.
//! Knows nothing of files or browsers.

pub mod config;
pub mod tta;
