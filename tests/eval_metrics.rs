//! Every metric against scikit-learn and the MVTec AD reference AUPRO (tools/mvtec_aupro.py)
//! on generated maps with ties, an all-normal class, single-pixel regions and regions that
//! touch only at a corner (tools/gen_eval_fixtures.py).

use crate::common;

use common::fixture;
use duoclip::eval::{ClassAccumulator, ClassMetrics, Grid};
use serde_json::Value;

/// Tolerance against the Python references.
const TOL: f64 = 1e-6;

fn npy<T: npyz::Deserialize>(case: &str, name: &str) -> (Vec<u64>, Vec<T>) {
    let path = fixture("eval/metrics").join(case).join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = file.shape().to_vec();
    (shape, file.into_vec().unwrap())
}

fn evaluate(case: &str, fpr_limit: f64) -> ClassMetrics {
    let (shape, maps) = npy::<f32>(case, "maps.npy");
    let (_, masks) = npy::<u8>(case, "masks.npy");
    let (_, scores) = npy::<f32>(case, "scores.npy");
    let (_, labels) = npy::<u8>(case, "labels.npy");
    let (h, w) = (shape[1] as usize, shape[2] as usize);
    let mut acc = ClassAccumulator::new(true);
    for i in 0..shape[0] as usize {
        let mask: Vec<bool> = masks[i * h * w..][..h * w].iter().map(|m| *m > 0).collect();
        let grid = Grid {
            map: &maps[i * h * w..][..h * w],
            mask: &mask,
            width: w,
            height: h,
        };
        acc.add(scores[i], labels[i] > 0, Some(grid)).unwrap();
    }
    acc.finish(fpr_limit)
}

fn check(case: &str, what: &str, got: Option<f64>, want: &Value) {
    match (got, want.as_f64()) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            eprintln!("{case} {what}: |Δ| = {:e}", (g - w).abs());
            assert!(
                (g - w).abs() <= TOL,
                "{case} {what}: {g} vs reference {w} (|Δ| = {:e})",
                (g - w).abs()
            )
        }
        (g, _) => panic!("{case} {what}: got {g:?}, reference {want}"),
    }
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("eval/metrics.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_metric_matches_sklearn_and_the_mvtec_reference() {
    let cases = cases();
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let want = &case["expected"];
        let m = evaluate(name, 0.3);
        let p = m.pixel.clone().unwrap();
        check(name, "image_auroc", m.image.auroc, &want["image_auroc"]);
        check(name, "image_ap", m.image.ap, &want["image_ap"]);
        check(name, "image_f1max", m.image.f1max, &want["image_f1max"]);
        check(name, "pixel_auroc", p.binary.auroc, &want["pixel_auroc"]);
        check(name, "pixel_ap", p.binary.ap, &want["pixel_ap"]);
        check(name, "pixel_f1max", p.binary.f1max, &want["pixel_f1max"]);
        check(name, "aupro", p.aupro, &want["aupro"]);
        check(name, "aupro_fast", p.aupro_fast, &want["aupro_fast"]);
    }
}

#[test]
fn the_fpr_limit_is_an_option_for_both_variants() {
    for name in ["ties", "continuous"] {
        let case = cases().into_iter().find(|c| c["name"] == name).unwrap();
        for limit in ["0.1", "1.0"] {
            let p = evaluate(name, limit.parse().unwrap()).pixel.unwrap();
            let want = &case["expected"];
            check(name, "aupro", p.aupro, &want[format!("aupro@{limit}")]);
            check(
                name,
                "aupro_fast",
                p.aupro_fast,
                &want[format!("aupro_fast@{limit}")],
            );
        }
    }
}

/// Diagonal lines and corner-touching blocks are one region under 8-connectivity; the
/// reference value with 4-connectivity differs, so these cases do tell them apart.
#[test]
fn regions_are_8_connected() {
    for case in cases().iter().filter(|c| c["name"] != "all_normal") {
        let name = case["name"].as_str().unwrap();
        let p = evaluate(name, 0.3).pixel.unwrap();
        let four = case["expected"]["aupro_4connected"].as_f64().unwrap();
        let eight = case["expected"]["aupro"].as_f64().unwrap();
        assert!(
            (four - eight).abs() > 1e-3,
            "{name}: the fixture must separate 4 from 8"
        );
        assert!(
            (p.aupro.unwrap() - four).abs() > 1e-3,
            "{name}: AUPRO is 4-connected"
        );
        // 8 images: two diagonal-line masks (1 line + 1 block-with-corner = 2 regions each),
        // two single-pixel masks (3 regions each), one blob mask (2 regions).
        assert_eq!(p.regions, 2 * 2 + 2 * 3 + 2, "{name}");
    }
}

#[test]
fn an_all_normal_class_has_no_defined_metric_and_says_so() {
    let m = evaluate("all_normal", 0.3);
    assert_eq!(m.image.auroc, None);
    let p = m.pixel.unwrap();
    assert_eq!((p.aupro, p.aupro_fast, p.binary.auroc), (None, None, None));
    assert_eq!(p.regions, 0);
    assert_eq!(m.anomalous_images, 0);
}
