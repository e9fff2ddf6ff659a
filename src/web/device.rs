//! Where the image tower runs in the browser: WebGPU when an adapter exists, else the CPU
//! device; scoring always runs on the CPU device (see `detect::transfer`).

#[cfg(feature = "web")]
use std::cell::RefCell;

use burn::tensor::Device;
#[cfg(feature = "web")]
use burn::tensor::wgpu::WgpuBackend;
#[cfg(feature = "web")]
use js_sys::Reflect;

use super::error::{WebError, WebResult, root_cause};
use crate::backend;
use crate::clip::Clip;

#[cfg(feature = "web")]
thread_local! {
    /// burn's WebGPU runtime can be initialized once per page (worker): later detectors reuse it.
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// The device the image tower runs on: `(device, "webgpu" | "cpu", why the CPU under auto)`.
pub async fn pick_device(choice: &str) -> WebResult<(Device, &'static str, String)> {
    let cpu = || (backend::cpu(), "cpu", String::new());
    match choice {
        "cpu" => Ok(cpu()),
        "webgpu" => webgpu()
            .await
            .map(|d| (d, "webgpu", String::new()))
            .map_err(|why| {
                WebError::new(
                    "device",
                    format!("WebGPU is not usable here: {why}; choose device \"cpu\" or \"auto\""),
                )
            }),
        "auto" => Ok(match webgpu().await {
            Ok(d) => (d, "webgpu", String::new()),
            Err(why) => (backend::cpu(), "cpu", format!("running on the CPU: {why}")),
        }),
        other => Err(WebError::new(
            "bad_option",
            format!("device `{other}` is not accepted; use \"auto\", \"webgpu\" or \"cpu\""),
        )),
    }
}

/// The CPU build with threads (Cargo feature `threads`) has no WebGPU backend; worker.js
/// loads the WebGPU build for that device.
#[cfg(not(feature = "web"))]
async fn webgpu() -> Result<Device, String> {
    Err("this build of the detector is the CPU one with threads, without WebGPU".into())
}

/// burn's WebGPU device, initialized once per page (BROWSER.md: adapters are only requested
/// asynchronously).
#[cfg(feature = "web")]
async fn webgpu() -> Result<Device, String> {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or_default();
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap_or_default();
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let device = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| format!("no WebGPU adapter ({e:?})"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// One forward pass at load, read back, so that shader compilation happens before the first
/// image rather than during it.
pub async fn warm_up(clip: &Clip, device: &Device) -> WebResult<()> {
    let s = clip.image_size();
    let out = clip.encode_images(&[vec![0.0; 3 * s * s]], &[], device)?;
    out.vv_patch_tokens.into_data_async().await.map_err(|e| {
        let why = format!("{e:?}");
        WebError::new(
            "device",
            format!("the WebGPU warm-up pass failed: {}", root_cause(&why)),
        )
    })?;
    Ok(())
}
