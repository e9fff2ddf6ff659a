//! The medical readers (src/source/) against the PyPI references of
//! tools/gen_medical_fixtures.py (nibabel, pydicom): the values after the modality stage
//! exactly, after the window within 1e-6 relative; `duoclip score` on whole volumes; and bad
//! files ending in a message that names the file and the fault.

use crate::common;

use std::path::Path;

use common::*;
use duoclip::source::{ReadOptions, Source};
use duoclip::{Error, Result};
use serde_json::Value;

fn open(bytes: &[u8], name: &str) -> Result<Source> {
    Source::open(bytes, name, &ReadOptions::default())
}

fn open_fixture(name: &str) -> Source {
    let bytes = std::fs::read(fixture("medical").join(name)).expect("fixture");
    open(&bytes, name).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn medical_reference() -> Value {
    let text = std::fs::read_to_string(fixture("medical/reference.json")).expect("reference");
    serde_json::from_str(&text).expect("valid JSON")
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Every image of `name` against the reference: labels, stored values (exact for integer
/// data, else within 1e-12 relative: nibabel's float path may round differently in the last
/// bit), windowed values (≤ 1e-6 relative, 1e-12 absolute near zero) and the 8-bit image.
fn check_against_reference(name: &str, integer: bool) {
    let reference = &medical_reference()[name];
    let source = open_fixture(name);
    let labels: Vec<String> = (0..source.len())
        .map(|i| source.label(i).expect("labelled"))
        .collect();
    let want: Vec<&str> = reference["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels, want, "{name}: kept slices");
    for i in 0..source.len() {
        let plane = source.stored(i).expect("medical images have stored values");
        let stored = numbers(&reference["stored"][i]);
        if integer {
            assert_eq!(plane.values, stored, "{name} image {i}: stored values");
        } else {
            assert_eq!(plane.values.len(), stored.len());
            for (a, b) in plane.values.iter().zip(&stored) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs(),
                    "{name} image {i}: {a} vs {b}"
                );
            }
        }
        let part = source.image(i).expect("decodes");
        let window = part.window.expect("windowed").window;
        for (k, (&v, want)) in plane
            .values
            .iter()
            .zip(numbers(&reference["windowed"][i]))
            .enumerate()
        {
            let got = window.apply(v);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-6),
                "{name} image {i} value {k}: windowed {got}, reference {want}"
            );
            let grey = part.image.data[3 * k];
            assert_eq!(grey, (got * 255.0).round() as u8);
        }
    }
}

#[test]
fn nifti1_oblique_ct_matches_nibabel() {
    check_against_reference("ct_oblique.nii.gz", true);
}

#[test]
fn nifti2_float_volume_matches_nibabel() {
    check_against_reference("mr_nifti2.nii", false);
}

fn refused(bytes: &[u8], name: &str) -> String {
    match open(bytes, name) {
        Err(Error::Image { path, message }) => {
            assert_eq!(path, name);
            message
        }
        Err(other) => panic!("{name}: expected an image error, got {other:?}"),
        Ok(source) => panic!("{name}: opened, {} images", source.len()),
    }
}

/// The uncompressed NIfTI-1 CT, to corrupt field by field.
fn plain_ct() -> Vec<u8> {
    let gz = std::fs::read(fixture("medical/ct_oblique.nii.gz")).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut bytes).unwrap();
    bytes
}

#[test]
fn bad_nifti_headers_are_named_before_any_allocation() {
    let ct = plain_ct();
    let set_i16 = |at: usize, v: i16| {
        let mut b = ct.clone();
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        b
    };
    let msg = refused(&set_i16(42, -16), "negative.nii");
    assert!(msg.contains("negative") && msg.contains("dim[1]"), "{msg}");
    let mut zero = ct.clone();
    zero[80..84].copy_from_slice(&0f32.to_le_bytes());
    let msg = refused(&zero, "flat.nii");
    assert!(
        msg.contains("voxel size") && msg.contains("pixdim[1]"),
        "{msg}"
    );
    // 30000 × 30000 × 1000 int16 on a 6 kB file.
    let mut bomb = set_i16(42, 30_000);
    bomb[44..46].copy_from_slice(&30_000i16.to_le_bytes());
    bomb[46..48].copy_from_slice(&1_000i16.to_le_bytes());
    let msg = refused(&bomb, "bomb.nii");
    assert!(
        msg.contains("30000×30000×1000") && msg.contains("limit"),
        "{msg}"
    );
    let msg = refused(&ct[..ct.len() - 100], "cut.nii");
    assert!(msg.contains("truncated"), "{msg}");
    let msg = refused(&ct[..200], "header.nii");
    assert!(msg.contains("truncated"), "{msg}");
    let gz = std::fs::read(fixture("medical/ct_oblique.nii.gz")).unwrap();
    let msg = refused(&gz[..gz.len() / 2], "cut.nii.gz");
    assert!(msg.contains("truncated"), "{msg}");
    let mut series = set_i16(40, 4);
    series[48..50].copy_from_slice(&3i16.to_le_bytes());
    let msg = refused(&series, "series.nii");
    assert!(msg.contains("dim[4]") || msg.contains("axis 4"), "{msg}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_volume_is_scored_slice_by_slice_as_one_set() {
    let out = temp_dir("volume");
    let volume = fixture("medical/ct_oblique.nii.gz");
    let (ok, err) = run_with_tiny_model(
        "score",
        &["--domain", "liver-ct", "--out", s(&out), s(&volume)],
    );
    assert!(ok, "{err}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let images = doc["images"].as_array().unwrap();
    let reference = &medical_reference()["ct_oblique.nii.gz"];
    assert_eq!(images.len(), reference["slices"].as_array().unwrap().len());
    for (image, label) in images.iter().zip(reference["labels"].as_array().unwrap()) {
        let file = image["file"].as_str().unwrap();
        assert!(
            file.ends_with(&format!("ct_oblique.nii.gz#{}", label.as_str().unwrap())),
            "{file}"
        );
        assert_eq!(image["window"]["source"], "percentile 0.5-99.5");
        let map = image["map"].as_str().unwrap();
        assert!(out.join(map).is_file() && !map.contains('#'), "{map}");
    }
    // Six slices, an even count: scored as one set all the same (the progress file says
    // which images were scored together only through their maps, so compare with pairs).
    let pairs = temp_dir("volume-pairs");
    let (ok, err) = run_with_tiny_model(
        "score",
        &[
            "--domain",
            "liver-ct",
            "--pairing",
            "pairs",
            "--out",
            s(&pairs),
            s(&volume),
        ],
    );
    assert!(ok, "{err}");
    let scores = |dir: &Path| -> Vec<f64> {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("scores.json")).unwrap())
                .unwrap();
        doc["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["score"].as_f64().unwrap())
            .collect()
    };
    assert_ne!(scores(&out), scores(&pairs), "a set, not pairs");
    let (ok, err) = run_with_tiny_model(
        "score",
        &[
            "--domain",
            "liver-ct",
            "--slice-axis",
            "up",
            "--out",
            s(&temp_dir("axis")),
            s(&volume),
        ],
    );
    assert!(
        !ok && err.contains("--slice-axis") && err.contains("sagittal"),
        "{err}"
    );
}
