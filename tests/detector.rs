//! The detector's invariants (METHOD.md §5) on the tiny OpenCLIP model: exact zeros for an
//! identical pair, the pasted patch found, reference order irrelevant, the fusion rule.

use crate::common;

use burn::tensor::Device;
use common::*;
use duoclip::clip::{ArchOverrides, Clip, Tokenizer};
use duoclip::detect::config::DetectorConfig;
use duoclip::detect::{Detection, Detector, Prepared};
use duoclip::image::{ImageLimits, RgbImage, decode};
use duoclip::prompts::{Domain, text_anchors};

fn tiny() -> Clip {
    let overrides = ArchOverrides {
        text_heads: Some(2),
        ..Default::default()
    };
    load(
        "openclip_tiny/model.safetensors",
        overrides,
        &Device::flex(),
    )
}

fn detector(config: DetectorConfig) -> Detector {
    let clip = tiny();
    let anchors = text_anchors(&clip, &Tokenizer::new(), &Domain::Object, "metal_nut").unwrap();
    Detector::new(clip, anchors, config, Device::flex()).unwrap()
}

fn product(lambda: f32) -> DetectorConfig {
    DetectorConfig {
        lambda,
        ..DetectorConfig::product(2)
    }
}

fn image() -> RgbImage {
    let path = fixture("openclip_tiny/image.png");
    decode(
        &std::fs::read(&path).unwrap(),
        "image.png",
        &ImageLimits::default(),
    )
    .unwrap()
}

/// The image with a bright 8×8 block pasted over patch cell (row, col) of the 4×4 grid.
fn pasted(row: u32, col: u32) -> RgbImage {
    let mut img = image();
    for y in row * 8..row * 8 + 8 {
        for x in col * 8..col * 8 + 8 {
            let i = ((y * img.width + x) * 3) as usize;
            img.data[i..i + 3].copy_from_slice(&[255, 255, 40]);
        }
    }
    img
}

fn score(d: &Detector, images: &[RgbImage], refs: &[RgbImage]) -> Vec<Detection> {
    let prepared: Vec<Prepared> = images.iter().map(|i| d.prepare(i)).collect();
    let refs: Vec<Prepared> = refs.iter().map(|i| d.prepare(i)).collect();
    d.score(&prepared.iter().collect::<Vec<_>>(), &refs)
        .unwrap()
}

#[test]
fn identical_pair_has_a_visual_map_of_exactly_zero() {
    let d = detector(product(1.0));
    for det in score(&d, &[image(), image()], &[]) {
        assert!(
            det.map.iter().all(|&v| v == 0.0),
            "max {}",
            det.map.iter().cloned().fold(0.0, f32::max)
        );
    }
}

/// The 3×3 box filter spreads a patch's score over its neighbours (METHOD.md §4), so on the
/// 4×4 grid of the tiny model the peak lies within one cell of the pasted one; the exact
/// patch-level peak is tested on the visual scores themselves in tests/reference.rs.
#[test]
fn a_pasted_patch_is_where_the_visual_map_peaks() {
    let d = detector(product(1.0));
    let dets = score(&d, &[image(), pasted(1, 2)], &[]);
    let m = &dets[1].map;
    let argmax = (0..m.len()).max_by(|&a, &b| m[a].total_cmp(&m[b])).unwrap();
    let (cell_y, cell_x) = (argmax / 32 / 8, argmax % 32 / 8);
    assert!(
        cell_y.abs_diff(1) <= 1 && cell_x.abs_diff(2) <= 1,
        "peak in cell ({cell_y}, {cell_x})"
    );
    let far = m[31 * 32]; // bottom-left corner: no filter window reaches the pasted cell
    assert!(
        m[argmax] > 10.0 * far.max(1e-6),
        "peak {} vs far {far}",
        m[argmax]
    );
}

#[test]
fn reference_order_does_not_change_results() {
    let d = detector(product(0.5));
    let refs = [image(), pasted(0, 0), pasted(3, 3)];
    let a = score(&d, &[pasted(1, 2)], &refs);
    let b = score(
        &d,
        &[pasted(1, 2)],
        &[refs[2].clone(), refs[0].clone(), refs[1].clone()],
    );
    assert_eq!(a[0].map, b[0].map);
    assert_eq!(a[0].score, b[0].score);
}

#[test]
fn product_map_follows_the_fusion_rule() {
    let images = [image(), pasted(2, 1)];
    let text = score(&detector(product(0.0)), &images, &[]);
    let visual = score(&detector(product(1.0)), &images, &[]);
    let fused = score(&detector(product(0.3)), &images, &[]);
    for i in 0..2 {
        let want: Vec<f32> = text[i]
            .map
            .iter()
            .zip(&visual[i].map)
            .map(|(t, v)| 0.7 * t + 0.3 * v)
            .collect();
        assert_close("fused map", &fused[i].map, &want, 1e-6);
        let peak = fused[i]
            .map
            .iter()
            .cloned()
            .fold(f32::NEG_INFINITY, f32::max);
        let p_image = text[i].score
            - 0.5
                * text[i]
                    .map
                    .iter()
                    .cloned()
                    .fold(f32::NEG_INFINITY, f32::max);
        assert!((fused[i].score - (p_image + 0.5 * peak)).abs() < 1e-6);
    }
}

#[test]
fn the_text_map_of_product_mode_is_the_faithful_map() {
    let images = [image(), pasted(2, 1)];
    let faithful = score(&detector(DetectorConfig::anovl()), &images, &[]);
    let text = score(&detector(product(0.0)), &images, &[]);
    for i in 0..2 {
        assert_eq!(faithful[i].map, text[i].map);
    }
}

#[test]
fn bad_settings_are_named() {
    let clip = tiny();
    let anchors = text_anchors(&clip, &Tokenizer::new(), &Domain::Object, "screw").unwrap();
    let err = Detector::new(
        clip,
        anchors,
        DetectorConfig {
            views: 5,
            ..DetectorConfig::anovl()
        },
        Device::flex(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("`views`"), "{err}");
    let d = detector(DetectorConfig::product(2));
    assert!(
        d.groups(3, 0, Some(duoclip::detect::config::Pairing::Pairs))
            .unwrap_err()
            .to_string()
            .contains("`pairing`")
    );
    assert!(
        d.groups(1, 0, Some(duoclip::detect::config::Pairing::Pairs))
            .is_err()
    );
    assert_eq!(d.groups(1, 0, None).unwrap(), vec![vec![0]]);
    assert_eq!(d.groups(4, 0, None).unwrap(), vec![vec![0, 1], vec![2, 3]]);
}
