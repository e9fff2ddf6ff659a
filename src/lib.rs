//! duoclip: zero-shot image anomaly detection with CLIP — V-V attention maps, domain-aware
//! state prompts and dual-image references — running natively and in the browser.
//!
//! The backend is chosen at run time by the burn `Device` (CPU `flex`, wgpu, WebGPU).

pub mod backend;
pub mod clip;
pub mod cpu;
pub mod decide;
pub mod detect;
pub mod error;
pub mod eval;
pub mod image;
pub mod models;
pub mod overlay;
pub mod prompts;
pub mod source;
#[cfg(all(target_arch = "wasm32", feature = "browser"))]
mod web;
pub mod window;
/// `initThreadPool(n)` of the threaded browser build (feature `threads`): worker.js starts a
/// pool of `n` Web Workers on the module's shared memory before it loads a model.
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub use wasm_bindgen_rayon::init_thread_pool;

pub use error::{Error, Result};
