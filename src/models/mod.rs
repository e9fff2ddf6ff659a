//! Which weights exist and how to get them: the registry, verified downloads, web bundles.

pub mod bundle;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod download;
pub mod registry;
mod schema;
