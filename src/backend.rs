//! Choosing the burn device at run time (the model code has no backend parameter).

use burn::tensor::Device;

use crate::{Error, Result};

/// The pure-Rust CPU device; always available.
pub fn cpu() -> Device {
    Device::flex()
}

/// A native GPU through wgpu (Vulkan/Metal/DX12); fails with a message when no adapter exists.
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub fn gpu() -> Result<Device> {
    Device::wgpu_options()
        .init()
        .map_err(|e| Error::Model(format!("no usable GPU adapter through wgpu: {e:?}")))
}

/// `cpu` or `gpu`, as given to `--device`.
pub fn by_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(cpu()),
        #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
        "gpu" => gpu(),
        #[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
        "gpu" => Err(Error::Option {
            option: "--device".into(),
            message: "this build has no GPU support; rebuild with `--features gpu`".into(),
        }),
        other => Err(Error::Option {
            option: "--device".into(),
            message: format!("unknown device `{other}`; accepted: cpu, gpu"),
        }),
    }
}
