//! Choosing the burn device at run time (the model code has no backend parameter), and
//! reading tensors back from it.

use burn::tensor::{Device, ExecutionError, Tensor, TensorData};

use crate::{Error, Result};

/// The pure-Rust CPU device; always available.
pub fn cpu() -> Device {
    Device::flex()
}

/// A native GPU through wgpu (Vulkan/Metal/DX12); fails with a message when no adapter exists.
/// burn registers the default wgpu device once per process (a second `init` fails with
/// "Service already initialized"), so the first device is kept and handed out again.
#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
pub fn gpu() -> Result<Device> {
    static GPU: std::sync::Mutex<Option<Device>> = std::sync::Mutex::new(None);
    let mut kept = GPU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(device) = kept.as_ref() {
        return Ok(device.clone());
    }
    let device = Device::wgpu_options()
        .init()
        .map_err(|e| Error::Model(format!("no usable GPU adapter through wgpu: {e:?}")))?;
    *kept = Some(device.clone());
    Ok(device)
}

/// `cpu` or `gpu`, as given to `--device`.
pub fn by_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(cpu()),
        #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
        "gpu" => gpu(),
        #[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
        "gpu" => Err(Error::Option {
            option: "device".into(),
            message: "this build has no GPU support; rebuild with `--features gpu`".into(),
        }),
        other => Err(Error::Option {
            option: "device".into(),
            message: format!("unknown device `{other}`; accepted: cpu, gpu"),
        }),
    }
}

/// The values of `t` on the host, as f32: the one read-back from any device (`what` names
/// them in the error).
pub fn read_back<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    floats(t.try_into_data(), what)
}

/// [`read_back`] that awaits the device (WebGPU allows nothing else).
pub async fn read_back_async<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    floats(t.into_data_async().await, what)
}

fn floats(data: std::result::Result<TensorData, ExecutionError>, what: &str) -> Result<Vec<f32>> {
    let failed = |e: &dyn std::fmt::Debug| Error::Model(format!("reading {what} back: {e:?}"));
    data.map_err(|e| failed(&e))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| failed(&e))
}
