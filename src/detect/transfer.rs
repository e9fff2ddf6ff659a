//! Moving image-tower outputs from the compute device to the host device.
//!
//! In the browser the image tower runs on WebGPU, where tensors can only be read
//! asynchronously, while everything after it (text scores, references, maps, TTA) reads
//! small results back many times: that part runs on the CPU device. Natively both are the
//! same device and nothing moves. One transaction reads every tensor of an output at once;
//! the sync and async twins differ only in how they wait for it.

use burn::tensor::{Device, Tensor, TensorData, Transaction};

use crate::clip::VisionOutput;
use crate::{Error, Result};

/// `out` on `host`, read back synchronously (native, or the browser's CPU device).
pub(super) fn to_host(out: VisionOutput, compute: &Device, host: &Device) -> Result<VisionOutput> {
    if compute == host {
        return Ok(out);
    }
    let grid = out.grid;
    let data = reads(&out).try_execute().map_err(read_error)?;
    rebuild(data, out.taps.len(), grid, host)
}

/// `out` on `host`, read back asynchronously (WebGPU in the browser).
pub(super) async fn to_host_async(
    out: VisionOutput,
    compute: &Device,
    host: &Device,
) -> Result<VisionOutput> {
    if compute == host {
        return Ok(out);
    }
    let grid = out.grid;
    let data = reads(&out).execute_async().await.map_err(read_error)?;
    rebuild(data, out.taps.len(), grid, host)
}

/// Every tensor of `out`: image embedding, V-V tokens, then the taps in order.
fn reads(out: &VisionOutput) -> Transaction {
    out.taps.iter().fold(
        Transaction::default()
            .register(out.image_embedding.clone())
            .register(out.vv_patch_tokens.clone()),
        |t, tap| t.register(tap.clone()),
    )
}

fn rebuild(
    data: Vec<TensorData>,
    taps: usize,
    grid: [usize; 2],
    host: &Device,
) -> Result<VisionOutput> {
    if data.len() != 2 + taps {
        return Err(Error::Model(format!(
            "read back {} tensors of the image tower; expected {}",
            data.len(),
            2 + taps
        )));
    }
    let mut data = data.into_iter();
    let mut next = || data.next().expect("length checked above");
    Ok(VisionOutput {
        image_embedding: Tensor::from_data(next(), host),
        vv_patch_tokens: Tensor::from_data(next(), host),
        taps: (0..taps).map(|_| Tensor::from_data(next(), host)).collect(),
        grid,
    })
}

fn read_error(e: impl std::fmt::Debug) -> Error {
    Error::Model(format!(
        "reading the image tower's output back from the compute device: {e:?}"
    ))
}
