//! Calibration, verdicts and regions against numpy and scipy (tools/gen_decide_fixture.py):
//! thresholds are order statistics of the inputs, so they match exactly; medians, MADs,
//! bands and region means are float64 arithmetic there, f32 here.

use crate::common;

use common::{floats, reference};
use duoclip::decide::{Region, Thresholds, Verdict, calibrate, regions, verdict};
use serde_json::Value;

/// Relative tolerance of the values that are arithmetic, not order statistics.
const REL: f64 = 1e-6;

fn close(what: &str, got: f32, want: &Value) {
    let want = want.as_f64().unwrap();
    assert!(
        (got as f64 - want).abs() <= REL * want.abs().max(1e-6),
        "{what}: {got} vs numpy {want}"
    );
}

fn exact(what: &str, got: f32, want: &Value) {
    assert_eq!(got, want.as_f64().unwrap() as f32, "{what}");
}

#[test]
fn calibration_matches_numpy() {
    for case in reference("decide")["calibrations"].as_array().unwrap() {
        let (scores, peaks) = (floats(&case["scores"]), floats(&case["peaks"]));
        let alpha = case["false_alarm"].as_f64().unwrap();
        let t = calibrate(&scores, &peaks, alpha).unwrap();
        let at = format!("N = {}, α = {alpha}", scores.len());
        exact(&format!("{at}: image"), t.image, &case["image"]);
        exact(&format!("{at}: pixel"), t.pixel, &case["pixel"]);
        // serde_json's default float parsing may miss the last bit of an f64.
        let bound = case["bound"].as_f64().unwrap();
        assert!(
            (t.bound - bound).abs() < 1e-15,
            "{at}: bound {} vs {bound}",
            t.bound
        );
        close(&format!("{at}: band"), t.band, &case["band"]);
        let good = &case["good"];
        assert_eq!(t.good.count as u64, good["count"].as_u64().unwrap());
        exact(&format!("{at}: min"), t.good.min, &good["min"]);
        exact(&format!("{at}: max"), t.good.max, &good["max"]);
        close(&format!("{at}: median"), t.good.median, &good["median"]);
        close(&format!("{at}: mad"), t.good.mad, &good["mad"]);
        check_verdicts(&t, case, &at);
    }
}

fn check_verdicts(t: &Thresholds, case: &Value, at: &str) {
    let want: Vec<Verdict> = serde_json::from_value(case["verdicts"].clone()).unwrap();
    for (score, want) in floats(&case["tests"]).into_iter().zip(want) {
        let (got, margin) = verdict(score, t);
        assert_eq!(got, want, "{at}: verdict on {score}");
        assert_eq!(margin, score - t.image);
    }
}

#[test]
fn regions_match_scipy_labelling() {
    for case in reference("decide")["maps"].as_array().unwrap() {
        let (w, h) = (
            case["width"].as_u64().unwrap(),
            case["height"].as_u64().unwrap(),
        );
        let threshold = case["threshold"].as_f64().unwrap() as f32;
        let got = regions(&floats(&case["map"]), w as usize, h as usize, threshold).unwrap();
        let want: Vec<Region> = serde_json::from_value(case["regions"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{w}×{h}: region count");
        for (i, (g, r)) in got.iter().zip(&want).enumerate() {
            let at = format!("{w}×{h} region {i}");
            let bbox = |r: &Region| (r.x, r.y, r.width, r.height, r.area);
            assert_eq!(bbox(g), bbox(r), "{at}: box and area");
            assert_eq!(g.peak, r.peak, "{at}: peak");
            let want = &case["regions"][i];
            close(&format!("{at}: mean"), g.mean, &want["mean"]);
            close(&format!("{at}: share"), g.share, &want["share"]);
        }
    }
}
