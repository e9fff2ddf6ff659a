//! The medical readers (src/source/) against the PyPI references of
//! tools/gen_medical_fixtures.py (nibabel, pydicom): the values after the modality stage
//! exactly, after the window within 1e-6 relative; `duoclip score` on whole volumes; and bad
//! files ending in a message that names the file and the fault.

use crate::common;

use std::path::Path;

use common::*;
use duoclip::source::{ReadOptions, Source};
use duoclip::window::{Voi, WindowChoice};
use duoclip::{Error, Result};
use serde_json::Value;

fn open(bytes: &[u8], name: &str) -> Result<Source> {
    Source::open(bytes.to_vec(), name, &ReadOptions::default())
}

/// `bytes` opened with `choice` as `--window`.
fn open_with(bytes: Vec<u8>, name: &str, choice: WindowChoice) -> Result<Source> {
    let options = ReadOptions {
        window: choice,
        ..ReadOptions::default()
    };
    Source::open(bytes, name, &options)
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
        let (plane, _) = source
            .stored(i)
            .expect("decodes")
            .expect("medical images have stored values");
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
        let window = window.as_window().expect("a window");
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

/// The output folder of `score --domain liver-ct` on the oblique CT volume.
fn score_ct_volume(name: &str) -> std::path::PathBuf {
    let out = temp_dir(name);
    let volume = fixture("medical/ct_oblique.nii.gz");
    let (ok, err) = run_with_tiny_model(
        "score",
        &["--domain", "liver-ct", "--out", s(&out), s(&volume)],
    );
    assert!(ok, "{err}");
    out
}

#[test]
fn a_volume_is_scored_slice_by_slice_as_one_set() {
    let out = score_ct_volume("volume");
    let volume = fixture("medical/ct_oblique.nii.gz");
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

/// A DICOM fixture against pydicom: labels, values after the modality LUT (within
/// `tolerance` stored levels: 0 but for lossy JPEG, whose decoders may round differently),
/// values after the VOI window or LUT and MONOCHROME1 inversion (1e-6 relative; lossy JPEG
/// within `tolerance` levels of the window's ramp), the 8-bit image, and the withheld
/// attributes.
fn check_dicom(name: &str, tolerance: f64) {
    check_dicom_with(name, tolerance, WindowChoice::Auto, "windowed");
}

/// [`check_dicom`] through `choice`, against the reference's `windowed` values under `key`.
fn check_dicom_with(name: &str, tolerance: f64, choice: WindowChoice, key: &str) {
    let reference = &medical_reference()[name];
    let bytes = std::fs::read(fixture("medical").join(name)).expect("fixture");
    let source = open_with(bytes, name, choice).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let labels: Vec<Value> = (0..source.len())
        .map(|i| Value::from(source.label(i).unwrap()))
        .collect();
    assert_eq!(&Value::from(labels), &reference["labels"], "{name}");
    for i in 0..source.len() {
        let (plane, window) = source.stored(i).expect("decodes").expect("stored values");
        let stored = numbers(&reference["stored"][i]);
        assert_eq!(plane.values.len(), stored.len(), "{name} frame {i}");
        for (a, b) in plane.values.iter().zip(&stored) {
            assert!((a - b).abs() <= tolerance, "{name} frame {i}: {a} vs {b}");
        }
        let part = source.image(i).expect("decodes");
        assert!(part.withheld.contains(&"PatientName") && part.withheld.contains(&"PatientID"));
        let Some(window) = window else {
            // 8-bit colour: shown as stored.
            let bytes: Vec<u8> = stored.iter().map(|&v| v as u8).collect();
            assert_eq!(part.image.data, bytes, "{name}");
            assert!(reference[key][i].is_null());
            continue;
        };
        match (&window.window, reference["window"].as_object()) {
            (Voi::Lut(lut), Some(file)) if choice == WindowChoice::Auto => {
                let want = &file["lut"];
                assert_eq!(lut.table.len() as u64, want["entries"].as_u64().unwrap());
                assert_eq!(
                    i64::from(lut.first_mapped),
                    want["first_mapped"].as_i64().unwrap()
                );
                assert_eq!(u64::from(lut.bits), want["bits"].as_u64().unwrap());
                assert!(
                    window.source.starts_with("file VOI LUT 1 of "),
                    "{}",
                    window.source
                );
            }
            (Voi::Window(w), Some(file)) if choice == WindowChoice::Auto => {
                assert_eq!(w.centre, file["centre"].as_f64().unwrap(), "{name}");
                assert_eq!(w.width, file["width"].as_f64().unwrap(), "{name}");
                assert!(window.source.starts_with("file 1 of "), "{}", window.source);
            }
            (_, None) | (_, Some(_)) => {}
        }
        let slope = window.window.as_window().map_or(0.0, |w| 1.0 / w.width);
        for (k, (&v, want)) in plane
            .values
            .iter()
            .zip(numbers(&reference[key][i]))
            .enumerate()
        {
            let shown = window.window.apply(v);
            let got = if plane.inverted { 1.0 - shown } else { shown };
            let allowed = (1e-6 * want.abs()).max(1e-12) + tolerance * slope;
            assert!(
                (got - want).abs() <= allowed,
                "{name} frame {i} value {k}: windowed {got}, pydicom {want}"
            );
            let level = (shown * 255.0).round() as u8;
            let grey = if plane.inverted { 255 - level } else { level };
            assert_eq!(part.image.data[3 * k], grey, "{name} frame {i} value {k}");
        }
    }
}

#[test]
fn dicom_ct_with_rescale_and_two_windows_matches_pydicom() {
    check_dicom("ct_explicit.dcm", 0.0);
    // The same CT in explicit VR big endian: its lengths are walked big end first too.
    check_dicom("ct_big_endian.dcm", 0.0);
    // The second window by index, and a CT preset.
    let bytes = std::fs::read(fixture("medical/ct_explicit.dcm")).unwrap();
    for (choice, centre, source) in [
        ("file:2", -600.0, "file 2 of 2"),
        ("lung", -600.0, "preset lung"),
    ] {
        let part = open_with(
            bytes.clone(),
            "ct.dcm",
            WindowChoice::parse(choice).unwrap(),
        )
        .unwrap()
        .image(0)
        .unwrap();
        let window = part.window.unwrap();
        assert_eq!(
            (
                window.window.as_window().unwrap().centre,
                window.source.as_str()
            ),
            (centre, source)
        );
    }
    let Err(Error::Image { message, .. }) =
        open_with(bytes.clone(), "ct.dcm", WindowChoice::File(3))
    else {
        panic!("a third window accepted");
    };
    assert!(message.contains("2 window(s)"), "{message}");
}

/// Every transfer syntax with a fixture. JPEG lossless process 14 SV1 (12 bits stored, the
/// usual X-ray syntax) and process 14 with predictor 7 (signed 16-bit CT, two frames) are
/// libjpeg-turbo's streams, decoded for the reference by libjpeg (pylibjpeg): exact.
#[test]
fn dicom_transfer_syntaxes_and_photometrics_match_pydicom() {
    check_dicom("mr_implicit.dcm", 0.0);
    check_dicom("cr_mono1_deflated.dcm", 0.0);
    check_dicom("multiframe_rle.dcm", 0.0);
    check_dicom("rgb_explicit.dcm", 0.0);
    check_dicom("jpeg_baseline.dcm", 2.0);
    check_dicom("jpeg_lossless_sv1.dcm", 0.0);
    check_dicom("jpeg_lossless_p14.dcm", 0.0);
}

#[test]
fn bad_dicom_files_are_named_with_what_to_do() {
    let read = |name: &str| std::fs::read(fixture("medical").join(name)).unwrap();
    let msg = refused(&read("bad_j2k.dcm"), "bad_j2k.dcm");
    assert!(
        msg.contains("1.2.840.10008.1.2.4.90")
            && msg.contains("JPEG 2000")
            && msg.contains("gdcmconv"),
        "{msg}"
    );
    let msg = refused(&read("bad_bomb.dcm"), "bad_bomb.dcm");
    assert!(
        msg.contains("65535×65535") && msg.contains("limit"),
        "{msg}"
    );
    // Implicit VR: the dictionary's VR (Rows is US) bounds the length the same way.
    let mut implicit = read("mr_implicit.dcm");
    let rows = implicit
        .windows(8)
        .position(|w| w == [0x28, 0, 0x10, 0, 2, 0, 0, 0])
        .expect("Rows with a 2-byte value");
    implicit[rows + 4] = 3;
    let msg = refused(&implicit, "rows.dcm");
    assert!(
        msg.contains("(0028,0010)") && msg.contains("VR US declares 3 bytes"),
        "{msg}"
    );
    let ct = read("ct_explicit.dcm");
    for cut in [ct.len() / 2, ct.len() - 7, 140] {
        let name = format!("cut-{cut}.dcm");
        match open(&ct[..cut], &name) {
            Err(Error::Image { path, .. }) => assert_eq!(path, name),
            Err(other) => panic!("{name}: {other:?}"),
            // Cut inside the pixel data: the frame fails when decoded, still by name.
            Ok(source) => match source.image(0) {
                Err(Error::Image { path, .. }) => assert_eq!(path, name),
                other => panic!("{name}: {:?}", other.map(|p| p.image.width)),
            },
        }
    }
}

/// Inputs the fuzzer found that made dicom-rs reserve 1–4 GB (it allocates a value's declared
/// length before reading it): each is refused by the length walk (`source::dicom_lengths`),
/// naming the element and what is wrong.
#[test]
fn fuzzed_dicom_files_are_refused_before_any_large_reservation() {
    let cases: [(&str, &[&str]); 9] = [
        // VR bytes that are no VR: dicom-rs reads UN, its 4-byte length from the value (1.2 GB).
        (
            "unknown-vr-length",
            &["(0010,0020)", "BD B0", "no DICOM VR"],
        ),
        // Two sequences deep, an element no walk had looked at (1.2 GB).
        (
            "nested-sequence-length",
            &["(0028,1056)", "43 30", "no DICOM VR"],
        ),
        // A deflated data set that breaks off: dicom-rs parsed what did inflate (4.3 GB).
        ("deflated-length", &["inflate"]),
        // A UL of 2 bytes: dicom-rs reads 4, then the next header 2 bytes late (1.3 GB).
        (
            "short-binary-value",
            &["(0028,0002)", "VR UL declares 2 bytes"],
        ),
        // A deflated file whose meta group length reaches past group 2: dicom-rs inflates from
        // where that length ends (2.3 GB in what it inflated).
        ("meta-group-length", &[]),
        // An OV of 46 bytes (dicom-rs reads 48) inside an item.
        (
            "short-ov-value",
            &["(0028,9145)", "VR OV declares 46 bytes"],
        ),
        // A Pixel Representation whose 2 bytes begin an item tag: dicom-rs reads the number,
        // then the next element's VR bytes "00 00" as UN with a 4-byte length (1.4 GB).
        (
            "item-tag-in-a-value",
            &["(E000,0030)", "00 00", "no DICOM VR"],
        ),
        // A big-endian data set, once left unwalked (3 GB).
        ("big-endian-length", &["B5 B5", "no DICOM VR"]),
        // An item header outside any sequence: dicom-rs skips it as a UN value; after it, a
        // 3.7 GB length.
        (
            "item-outside-a-sequence",
            &["(5153,0000)", "D8 00", "no DICOM VR"],
        ),
    ];
    for (name, needles) in cases {
        let bytes = std::fs::read(fixture(&format!("fuzz/dicom/crash-{name}"))).unwrap();
        let msg = refused(&bytes, &format!("{name}.dcm"));
        for needle in needles {
            assert!(msg.contains(needle), "{name}: {msg}");
        }
    }
}

/// The PHI test: scoring DICOM files writes none of the patient's identifying strings into
/// any output file or file name, and says which attributes were withheld.
#[test]
fn no_patient_identifier_reaches_any_output() {
    let out = temp_dir("phi");
    let files: Vec<std::path::PathBuf> = [
        "ct_explicit.dcm",
        "mr_implicit.dcm",
        "cr_mono1_deflated.dcm",
        "multiframe_rle.dcm",
    ]
    .iter()
    .map(|n| fixture("medical").join(n))
    .collect();
    let mut args = vec!["--domain", "chest-xray", "--out", s(&out)];
    args.extend(files.iter().map(|p| s(p)));
    let (ok, err) = run_with_tiny_model("score", &args);
    assert!(ok, "{err}");
    let phi = medical_reference()["phi"].clone();
    let secrets: Vec<String> = phi
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut searched = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_lowercase();
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        for secret in &secrets {
            // PatientName is stored as `Family^Given`; its parts are searched too.
            for part in std::iter::once(secret.as_str()).chain(secret.split('^')) {
                let part = part.to_lowercase();
                assert!(!text.contains(&part), "{} holds {part}", path.display());
                assert!(
                    !name.contains(&part),
                    "{} is named with {part}",
                    path.display()
                );
            }
        }
        searched += 1;
    }
    assert!(
        searched > 2 * 6,
        "scores.json, a map and an overlay per image"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let images = doc["images"].as_array().unwrap();
    assert_eq!(
        images.len(),
        6,
        "three single frames and a three-frame file"
    );
    for image in images {
        let withheld: Vec<&str> = image["withheld"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for keyword in [
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
        ] {
            assert!(withheld.contains(&keyword), "{image}");
        }
        assert!(
            image["map"]
                .as_str()
                .unwrap()
                .starts_with("series_3_instance_12_frame_")
        );
    }
}

/// The `image` of each progress line, in the order the lines were written (a group's
/// images in the order they were scored together).
fn progress_images(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("progress.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            line["image"].as_str().unwrap().to_string()
        })
        .collect()
}

fn image_scores(out: &Path) -> Vec<(String, f64)> {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let map = i["map"].as_str().unwrap().to_string();
            (map, i["score"].as_f64().unwrap())
        })
        .collect()
}

/// A CT/MR series handed over as one file per slice is scored like a volume: one set, its
/// files in InstanceNumber order whatever order they are given in, and its
/// SeriesInstanceUID (compared, never shown) in no output.
#[test]
fn a_series_given_as_shuffled_files_is_scored_as_one_set_in_instance_order() {
    let series = &medical_reference()["series"];
    let file = |instance: usize| fixture("medical").join(format!("series_mr_{instance}.dcm"));
    let shuffled = [file(3), file(1), file(4), file(2)];
    let out = temp_dir("series");
    let mut args = vec!["--domain", "brain-mri", "--out", s(&out)];
    args.extend(shuffled.iter().map(|p| s(p)));
    let (ok, err) = run_with_tiny_model("score", &args);
    assert!(ok, "{err}");
    let order: Vec<String> = progress_images(&out)
        .iter()
        .map(|image| image.rsplit('#').next().unwrap().to_string())
        .collect();
    let want: Vec<String> = (1..=4)
        .map(|i| format!("series=3,instance={i},frame=1"))
        .collect();
    assert_eq!(order, want, "scored in instance order");
    // One set: the scores of the files given in order as `--pairing set`, not those of
    // pairs (four single images would otherwise be two pairs).
    let scored = |extra: &[&str], files: &[std::path::PathBuf]| {
        let dir = temp_dir("series-check");
        let mut args = vec!["--domain", "brain-mri", "--out", s(&dir)];
        args.extend(extra);
        args.extend(files.iter().map(|p| s(p)));
        let (ok, err) = run_with_tiny_model("score", &args);
        assert!(ok, "{err}");
        let mut scores = image_scores(&dir);
        scores.sort_by(|a, b| a.0.cmp(&b.0));
        scores
    };
    let in_order = [file(1), file(2), file(3), file(4)];
    let mut got = image_scores(&out);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, scored(&["--pairing", "set"], &in_order));
    assert_ne!(got, scored(&["--pairing", "pairs"], &in_order));
    let uid = series["uid"].as_str().unwrap();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
        assert!(
            !text.contains(uid),
            "{} holds the series UID",
            path.display()
        );
    }
}

/// `score` on the tiny model with `args` and `files`: its stderr, and scores.json's domain
/// and where it came from.
fn domain_run(args: &[&str], files: &[&Path]) -> (String, (Value, Value)) {
    let out = temp_dir("domain");
    let mut all = vec!["--out", s(&out)];
    all.extend(args);
    all.extend(files.iter().map(|p| s(p)));
    let (ok, err) = run_with_tiny_model("score", &all);
    assert!(ok, "{err}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let config = &doc["config"];
    (
        err,
        (config["domain"].clone(), config["domain_from"].clone()),
    )
}

fn pair(domain: &str, from: &str) -> (Value, Value) {
    (Value::from(domain), Value::from(from))
}

/// Without `--domain`, the domain the DICOM files' Modality and Body Part Examined agree on,
/// said on stderr and in scores.json; the default where they disagree or none points.
#[test]
fn the_domain_comes_from_the_files_when_not_given() {
    let series: Vec<std::path::PathBuf> = (1..=4)
        .map(|i| fixture("medical").join(format!("series_mr_{i}.dcm")))
        .collect();
    let files: Vec<&Path> = series.iter().map(|p| p.as_path()).collect();
    let (err, domain) = domain_run(&[], &files);
    let because = "DICOM Modality MR, Body Part Examined HEAD";
    assert!(
        err.contains(&format!(
            "domain brain-mri, from the files' {because} (4 of 4 files)"
        )),
        "{err}"
    );
    assert_eq!(domain, pair("brain-mri", because));
    // MR HEAD and a CR without a body part (chest-xray) disagree.
    let cr = fixture("medical/cr_mono1_deflated.dcm");
    let (err, domain) = domain_run(&["--object", "brain"], &[files[0], &cr]);
    assert!(
        err.contains("different domains (brain-mri, chest-xray)") && err.contains("--domain"),
        "{err}"
    );
    let from = "default (the files point to brain-mri, chest-xray)";
    assert_eq!(domain, pair("object", from));
    // Given, it is used whatever the files say.
    let (err, domain) = domain_run(&["--domain", "liver-ct"], &[files[0]]);
    assert!(!err.contains("from the files"), "{err}");
    assert_eq!(domain, pair("liver-ct", "--domain"));
}

/// A NIfTI input's maps come back as `<stem>.map.nii.gz`: float32 over the input's grid with
/// its geometry bytes, each scored slice's map (brought to the slice's size) in that slice's
/// voxels by the slicing's own rule (columns along i, rows along j with the highest j at the
/// top), the slices not scored 0.
#[test]
fn a_volume_s_maps_are_written_back_as_nifti_over_its_voxels() {
    let out = score_ct_volume("volume-map");
    let input = plain_ct();
    let gz = std::fs::read(out.join("ct_oblique.map.nii.gz")).unwrap();
    let mut map = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut map).unwrap();
    let i16_at = |b: &[u8], at: usize| i16::from_le_bytes([b[at], b[at + 1]]);
    let dims: Vec<i16> = (0..8).map(|d| i16_at(&map, 40 + 2 * d)).collect();
    assert_eq!(dims, [3, 16, 12, 10, 1, 1, 1, 1]);
    assert_eq!((i16_at(&map, 70), i16_at(&map, 72)), (16, 32), "float32");
    assert_eq!(&map[344..348], b"n+1\0");
    // pixdim; xyzt_units; qform/sform codes, quatern, qoffset and srow: the input's bytes.
    for range in [76..108, 123..124, 252..328] {
        assert_eq!(map[range.clone()], input[range.clone()], "bytes {range:?}");
    }
    let voxel = |i: usize| f32::from_le_bytes(map[352 + 4 * i..356 + 4 * i].try_into().unwrap());
    assert_eq!(map.len(), 352 + 4 * 16 * 12 * 10);
    let reference = &medical_reference()["ct_oblique.nii.gz"];
    assert_eq!(reference["axis"], 2, "axial slices along k");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let mut scored = Vec::new();
    for image in doc["images"].as_array().unwrap() {
        assert_eq!(image["volume_map"], "ct_oblique.map.nii.gz");
        let k: usize = image["file"]
            .as_str()
            .unwrap()
            .rsplit("#k=")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (values, w, h) =
            duoclip::eval::maps::read_map(&out.join(image["map"].as_str().unwrap())).unwrap();
        let want = duoclip::eval::resize_map(&values, w, h, 16, 12);
        assert!(want.iter().any(|&v| v != 0.0));
        for row in 0..12 {
            for col in 0..16 {
                let (i, j) = (col, 11 - row);
                assert_eq!(
                    voxel(i + 16 * (j + 12 * k)),
                    want[row * 16 + col],
                    "k={k} row {row} col {col}"
                );
            }
        }
        scored.push(k);
    }
    assert_eq!(
        scored,
        [2, 3, 4, 5, 6, 7],
        "the background slices 0, 1, 8, 9 are not scored"
    );
    for k in [0, 1, 8, 9] {
        assert!(
            (0..16 * 12).all(|p| voxel(16 * 12 * k + p) == 0.0),
            "slice {k}"
        );
    }
}

/// A NIfTI-2 input gets a NIfTI-2 map (f64 geometry, copied exactly), which reads back.
#[test]
fn a_nifti2_volume_s_map_keeps_its_version_and_geometry() {
    let input = std::fs::read(fixture("medical/mr_nifti2.nii")).unwrap();
    let source = open_fixture("mr_nifti2.nii");
    // Image n's map: the constant n + 1, at 2×2. (All nine j slices are kept.)
    let gz = source
        .map_volume(|n| Ok((vec![n as f32 + 1.0; 4], 2, 2)))
        .expect("a volume")
        .unwrap();
    let mut map = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut map).unwrap();
    assert_eq!(&map[4..12], b"n+2\0\r\n\x1a\n");
    for range in [16..48, 104..168, 344..496, 500..504] {
        assert_eq!(map[range.clone()], input[range.clone()], "bytes {range:?}");
    }
    // 10×9×8 voxels sliced along j: voxel x lies in slice j = (x / 10) % 9.
    let kept: Vec<u64> = medical_reference()["mr_nifti2.nii"]["slices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_u64().unwrap())
        .collect();
    assert_eq!(map.len(), 544 + 4 * 10 * 9 * 8);
    for (x, bytes) in map[544..].chunks_exact(4).enumerate() {
        let j = (x as u64 / 10) % 9;
        let want = kept
            .iter()
            .position(|&k| k == j)
            .map_or(0.0, |n| n as f32 + 1.0);
        let got = f32::from_le_bytes(bytes.try_into().unwrap());
        // A constant through the bilinear resize: the constant, within rounding.
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "voxel {x}: {got}, want {want}"
        );
    }
}

/// `eval` reads its images as `score` does: a folder-layout set of single-frame DICOM and
/// 16-bit TIFF images is evaluated; a volume, several images in one file, is skipped with
/// what to do.
#[test]
fn eval_reads_dicom_and_16_bit_tiff_and_skips_a_volume_by_name() {
    let root = temp_dir("eval-medical");
    let class = root.join("data/scan");
    for dir in ["good", "bad", "masks/bad"] {
        std::fs::create_dir_all(class.join(dir)).unwrap();
    }
    let copy = |from: &str, to: &str| {
        std::fs::copy(fixture("medical").join(from), class.join(to)).unwrap();
    };
    copy("mr_implicit.dcm", "good/a.dcm"); // 14×12
    copy("ct_oblique.nii.gz", "good/volume.nii.gz");
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(20, 20, |x, y| {
        image::Luma([(x * 20 + y) as u16 * 90])
    })
    .save(class.join("good/b.tif"))
    .unwrap();
    copy("ct_explicit.dcm", "bad/c.dcm"); // 16×16
    image::GrayImage::from_fn(16, 16, |x, _| image::Luma([if x >= 12 { 255 } else { 0 }]))
        .save(class.join("masks/bad/c.png"))
        .unwrap();
    let (data, out) = (root.join("data"), root.join("out"));
    let args = [
        "--data",
        s(&data),
        "--layout",
        "folder",
        "--domain",
        "brain-mri",
        "--out",
        s(&out),
    ];
    let (ok, err) = run_with_tiny_model("eval", &args);
    assert!(ok, "{err}");
    let volume = class.join("good/volume.nii.gz");
    assert!(
        err.contains(&format!("skipped {}: ", s(&volume)))
            && err.contains("holds 6 images")
            && err.contains("eval takes one image per file"),
        "{err}"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let scan = &doc["categories"]["scan"];
    assert_eq!(
        (&scan["images"], &scan["anomalous_images"]),
        (&3.into(), &1.into())
    );
    // Maps at the tiny model's input: 14×12 → 37×32 (tiled), 20×20 and 16×16 → 32×32.
    let mut grids: Vec<Value> = scan["evaluation_grids"].as_array().unwrap().clone();
    grids.sort_by_key(|g| g.to_string());
    assert_eq!(
        grids,
        [serde_json::json!([32, 32]), serde_json::json!([37, 32])]
    );
    // The mask's columns 12..=15 of 16, on the 32×32 grid: columns x with ⌊(x + ½)/2⌋ ≥ 12.
    assert_eq!(scan["anomalous_pixels"], 8 * 32);
}

/// Enhanced multi-frame DICOM keeps its rescale and windows in functional groups: the
/// shared group's rescale and each frame's own window and VOI LUT function, as pydicom
/// applies them to the frame's attributes.
#[test]
fn enhanced_multi_frame_rescale_and_windows_come_from_the_functional_groups() {
    check_dicom("enhanced_frames.dcm", 0.0);
    let reference = &medical_reference()["enhanced_frames.dcm"]["frame_windows"];
    let source = open_fixture("enhanced_frames.dcm");
    for (i, function) in ["Linear", "LinearExact", "Sigmoid"].iter().enumerate() {
        let window = source.image(i).unwrap().window.unwrap().window;
        let window = window.as_window().expect("a window");
        let want = &reference[i];
        assert_eq!(
            (
                window.centre,
                window.width,
                format!("{:?}", window.function)
            ),
            (
                want["centre"].as_f64().unwrap(),
                want["width"].as_f64().unwrap(),
                function.to_string()
            ),
            "frame {i}"
        );
    }
}

/// 12-bit JPEG extended (DCT) is refused at open, naming what to do; a JPEG stream whose
/// size disagrees with the DICOM header is refused, not decoded into a buffer too small.
#[test]
fn twelve_bit_jpeg_and_a_stream_larger_than_its_header_are_refused() {
    let twelve_bit = std::fs::read(fixture("medical/jpeg_extended_12bit.dcm")).unwrap();
    let msg = refused(&twelve_bit, "x.dcm");
    assert!(
        msg.contains("12-bit JPEG") && msg.contains("SOF1") && msg.contains("gdcmconv"),
        "{msg}"
    );
    let mut bytes = std::fs::read(fixture("medical/jpeg_lossless_sv1.dcm")).unwrap();
    let sof = bytes
        .windows(2)
        .rposition(|w| w == [0xFF, 0xC3])
        .expect("a lossless frame header");
    // Width 20 → 200: ten times the samples the DICOM header leaves room for.
    bytes[sof + 7..sof + 9].copy_from_slice(&200u16.to_be_bytes());
    let msg = refused(&bytes, "wide.dcm");
    assert!(
        msg.contains("200×24") && msg.contains("declares 20×24"),
        "{msg}"
    );
}

/// A VOI LUT Sequence (PS3.3 C.11.2.1.1) is the file's first VOI, applied as pydicom's
/// `apply_voi_lut` applies it (signed first input, values past either end clamped); the
/// window after it is `--window file:2`; results name the LUT by its size, never its table.
#[test]
fn a_voi_lut_is_the_first_voi_and_matches_pydicom() {
    check_dicom("voi_lut.dcm", 0.0);
    check_dicom_with("voi_lut.dcm", 0.0, WindowChoice::File(2), "windowed_second");
    let source = open_fixture("voi_lut.dcm");
    let window = source.image(0).unwrap().window.unwrap();
    assert_eq!(
        serde_json::to_value(&window).unwrap(),
        serde_json::json!({"function": "LUT", "entries": 2000, "first_mapped": -1000,
            "bits": 12, "source": "file VOI LUT 1 of 2"})
    );
    let bytes = std::fs::read(fixture("medical/voi_lut.dcm")).unwrap();
    let second = open_with(bytes.clone(), "lut.dcm", WindowChoice::File(2)).unwrap();
    assert_eq!(
        second.image(0).unwrap().window.unwrap().source,
        "file 2 of 2"
    );
    let Err(Error::Image { message, .. }) = open_with(bytes, "lut.dcm", WindowChoice::File(3))
    else {
        panic!("a third VOI accepted");
    };
    assert!(
        message.contains("1 VOI LUT(s) and 1 window(s)") && message.contains("file:2"),
        "{message}"
    );
    // scores.json says which LUT, in the same small form.
    let out = temp_dir("voi-lut");
    let file = fixture("medical/voi_lut.dcm");
    let (ok, err) = run_with_tiny_model(
        "score",
        &["--domain", "liver-ct", "--out", s(&out), s(&file)],
    );
    assert!(ok, "{err}");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    assert_eq!(
        doc["images"][0]["window"],
        serde_json::to_value(&window).unwrap()
    );
}
