//! The browser's detector split (image tower on a compute device, scoring on the CPU), run
//! natively: the async path the browser takes gives the maps of the sync path, and a split
//! detector gives the maps of the CPU alone. Natively the compute device is wgpu (lavapipe
//! where there is no GPU), the same burn backend as WebGPU in the browser.

use crate::common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use burn::tensor::Device;
use common::*;
use duoclip::clip::{Clip, Tokenizer};
use duoclip::detect::config::{DetectorConfig, TtaMode};
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::image::{ImageLimits, RgbImage, decode};
use duoclip::prompts::{Domain, TextAnchors, text_anchors, text_anchors_async};

/// Drives a future on this thread (what the browser's event loop does for wasm-bindgen).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

fn images() -> Vec<RgbImage> {
    ["image.png", "image_big.png"]
        .iter()
        .map(|f| {
            let path = fixture(&format!("openclip_signal/{f}"));
            decode(&std::fs::read(&path).unwrap(), f, &ImageLimits::default()).unwrap()
        })
        .collect()
}

fn anchors(clip: &Clip) -> TextAnchors {
    text_anchors(clip, &Tokenizer::new(), &Domain::Object, "bottle").unwrap()
}

/// Sync and async scores of the pair, and how often `score_async` reported an image.
fn both_ways(d: &Detector) -> (Vec<Detection>, Vec<Detection>, usize) {
    let prepared: Vec<Prepared> = images().iter().map(|i| d.prepare(i)).collect();
    let batch: Vec<&Prepared> = prepared.iter().collect();
    let sync = d.score(&batch, &[]).unwrap();
    let mut reported = 0;
    let not_sync = block_on(d.score_async(&batch, &[], &mut || reported += 1)).unwrap();
    (sync, not_sync, reported)
}

fn assert_same(what: &str, got: &[Detection], want: &[Detection], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.height, g.width), (w.height, w.width), "{what}");
        assert_close(what, &g.map, &w.map, tol);
        assert!(
            (g.score - w.score).abs() <= tol,
            "{what}: score {} vs {}",
            g.score,
            w.score
        );
    }
}

#[test]
fn async_scoring_equals_sync_scoring_on_one_device() {
    let clip = signal_openclip(&Device::flex());
    let anchors = anchors(&clip);
    let config = DetectorConfig {
        views: 22,
        ..DetectorConfig::product(2)
    };
    let d = Detector::new(clip, anchors, config, Device::flex()).unwrap();
    let (sync, not_sync, reported) = both_ways(&d);
    assert_same("async vs sync", &not_sync, &sync, 0.0);
    assert_eq!(reported, 2);
}

#[cfg(feature = "gpu")]
#[test]
fn a_split_detector_scores_like_the_cpu_alone() {
    let Some(gpu) = gpu_device("split devices") else {
        return;
    };
    let cpu = Device::flex();
    let config = DetectorConfig {
        views: 22,
        ..DetectorConfig::product(2)
    };
    let cpu_clip = signal_openclip(&cpu);
    let cpu_anchors = anchors(&cpu_clip);
    let alone = Detector::new(cpu_clip, cpu_anchors.clone(), config.clone(), cpu.clone()).unwrap();
    let (want, _, _) = both_ways(&alone);

    let gpu_clip = signal_openclip(&gpu);
    // The browser embeds prompts on the compute device and keeps the anchors on the host.
    let gpu_anchors = block_on(text_anchors_async(
        &gpu_clip,
        &Tokenizer::new(),
        &Domain::Object,
        "bottle",
        &cpu,
    ))
    .unwrap();
    assert_close(
        "anchors",
        &values(gpu_anchors.states.clone()),
        &values(cpu_anchors.states),
        TOL,
    );
    let synth = DetectorConfig {
        tta: duoclip::detect::config::TtaConfig {
            mode: TtaMode::Synth,
            ..config.tta.clone()
        },
        ..config.clone()
    };
    let refused = Detector::check(&synth, &gpu_clip, &gpu, &cpu)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("tta synth") && refused.contains("cpu"),
        "{refused}"
    );

    let split = Detector::on_devices(gpu_clip, gpu_anchors, config, gpu, cpu).unwrap();
    let (sync, not_sync, reported) = both_ways(&split);
    assert_same("split sync vs cpu", &sync, &want, TOL);
    assert_same("split async vs cpu", &not_sync, &want, TOL);
    assert_eq!(reported, 2);
}
