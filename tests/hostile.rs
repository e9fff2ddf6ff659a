//! Hostile files given to the `duoclip` command as a user (or an attacker) would: each ends
//! in a non-zero exit and a message naming the file and what is wrong — never a panic, a
//! hang, code from a model file running, or an output outside `--out`. The files come from
//! tools/gen_hostile_fixtures.py (tests/fixtures/hostile/).

use crate::common;

use std::path::{Path, PathBuf};

use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn hostile(name: &str) -> PathBuf {
    fixture("hostile").join(name)
}

/// `embed` with a hostile model, run in a fresh folder; must fail and write nothing.
fn embed_refuses(model: &Path, extra: &[&str]) -> (PathBuf, String) {
    let cwd = temp_dir(&format!(
        "hostile-{}",
        model.file_stem().unwrap().to_string_lossy()
    ));
    let image = fixture("openclip_tiny/image.png");
    let mut args = vec!["embed", "--model", s(model), "--image", s(&image)];
    args.extend(extra);
    args.extend(["--out", "embedding.json"]);
    let (ok, err) = run_duoclip_in(&cwd, &args);
    assert!(!ok, "{} was accepted", model.display());
    assert!(!cwd.join("embedding.json").exists());
    let file = model.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&file), "the message must name {file}:\n{err}");
    (cwd, err)
}

#[test]
fn pickles_that_call_python_are_refused_and_nothing_runs() {
    // Under torch.load(weights_only=False) each payload creates its marker file in the
    // current folder (checked by the generator).
    for (file, global, marker) in [
        (
            "pickle_os_system.pt",
            "posix.system",
            "duoclip-pwned-os-system",
        ),
        (
            "pickle_import.pt",
            "subprocess.call",
            "duoclip-pwned-import",
        ),
    ] {
        let (cwd, err) = embed_refuses(&hostile(file), &[]);
        assert!(
            err.contains(&format!("`{global}`")) && err.contains("never runs code"),
            "{err}"
        );
        assert!(!cwd.join(marker).exists(), "{file}: the payload ran");
    }
}

#[test]
fn zip_entries_outside_the_archive_are_refused() {
    let (cwd, err) = embed_refuses(&hostile("zip_traversal.pt"), &[]);
    assert!(
        err.contains("`../../duoclip-traversal.txt`") && err.contains("outside the archive"),
        "{err}"
    );
    let escaped = cwd.parent().unwrap().join("duoclip-traversal.txt");
    assert!(!escaped.exists() && !cwd.join("duoclip-traversal.txt").exists());
}

#[test]
fn safetensors_headers_claiming_too_much_are_refused() {
    for (file, says) in [
        ("huge_header.safetensors", "1099511627776"),
        (
            "huge_tensor.safetensors",
            "(the last, `w`) end at byte 109951162",
        ),
        ("overlap.safetensors", "overlap"),
    ] {
        let (_, err) = embed_refuses(&hostile(file), &[]);
        assert!(err.contains(says), "{file}: expected {says:?} in\n{err}");
    }
}

#[test]
fn non_finite_weights_are_named_by_key() {
    for (file, key, value) in [
        (
            "nan_weights.safetensors",
            "visual.transformer.resblocks.0.mlp.c_fc.weight",
            "NaN",
        ),
        ("inf_weights.safetensors", "visual.proj", "inf"),
    ] {
        let (_, err) = embed_refuses(&hostile(file), &["--vision-heads", "1"]);
        assert!(
            err.contains(&format!("key `{key}`")) && err.contains(value),
            "{file}: {err}"
        );
    }
}

/// `score` on the tiny model with `extra` options and `images`, output in `out`.
fn score(out: &Path, extra: &[&str], images: &[&str]) -> (bool, String) {
    let mut args = vec!["--object", "metal_nut", "--out", s(out)];
    args.extend(extra);
    args.extend(images);
    run_with_tiny_model("score", &args)
}

#[test]
fn images_claiming_60000_squared_are_refused_before_decoding() {
    let out = temp_dir("hostile-bombs");
    let good = fixture("openclip_tiny/image.png");
    for file in ["bomb.png", "bomb.jpg"] {
        let (ok, err) = score(&out, &[], &[s(&hostile(file)), s(&good)]);
        assert!(!ok, "{file} was accepted");
        // The header check's wording: the decoder never ran.
        assert!(
            err.contains(file)
                && err.contains("60000×60000")
                && err.contains("100000000 pixels")
                && err.contains("--max-pixels"),
            "{err}"
        );
    }
    assert!(!out.join("scores.json").exists());
}

#[test]
fn the_image_size_limit_is_an_option() {
    let out = temp_dir("hostile-limit");
    let image = fixture("openclip_tiny/image.png");
    // The 32×32 fixture has 1024 pixels.
    let (ok, err) = score(&out, &["--max-pixels", "1000"], &[s(&image), s(&image)]);
    assert!(!ok, "1024 pixels passed a 1000-pixel limit");
    assert!(
        err.contains("image.png") && err.contains("32×32") && err.contains("1000 pixels"),
        "{err}"
    );
    let (ok, err) = score(&out, &["--max-side", "31"], &[s(&image), s(&image)]);
    assert!(!ok && err.contains("31×31"), "{err}");
    let (ok, err) = score(&out, &["--max-pixels", "1024"], &[s(&image), s(&image)]);
    assert!(ok, "{err}");
}

#[test]
fn hostile_image_names_keep_outputs_inside_out() {
    let root = temp_dir("hostile-names");
    let inputs = root.join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    let image = fixture("openclip_tiny/image.png");
    let newline = inputs.join("evil\nname.png");
    std::fs::copy(&image, &newline).unwrap();
    std::fs::copy(&image, root.join("x.png")).unwrap();
    // `in/sub/../../x.png` is root/x.png, reached through `..`.
    let climbing = format!("{}/sub/../../x.png", s(&inputs));
    let out = root.join("out");
    let (ok, err) = score(&out, &[], &[s(&newline), &climbing]);
    assert!(ok, "{err}");
    assert_eq!(
        listing(&out),
        [
            "evil_name.npy",
            "evil_name.png",
            "progress.jsonl",
            "run.json",
            "scores.json",
            "x.npy",
            "x.png"
        ]
    );
    assert_eq!(
        listing(&root),
        ["in", "out", "x.png"],
        "nothing new beside out"
    );
    assert_eq!(listing(&inputs), ["evil\nname.png", "sub"]);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    assert_eq!(doc["images"][0]["file"], s(&newline));
    assert_eq!(doc["images"][1]["file"], climbing.as_str());
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            found.extend(files_below(&path).iter().map(|f| format!("{name}/{f}")));
        } else {
            found.push(name);
        }
    }
    found
}

#[test]
fn eval_keeps_outputs_inside_out_whatever_the_dataset_names() {
    let root = temp_dir("hostile-eval");
    // VisA's split file names the classes: one called `../../escape` must not become a
    // folder two levels above maps/.
    let visa = root.join("visa");
    copy_dir(&fixture("eval/datasets/visa_csv"), &visa);
    let csv = visa.join("split_csv/1cls.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("../../escape,test,normal,candle/Data/Images/Normal/0002.JPG,\n");
    std::fs::write(&csv, text).unwrap();
    let out = root.join("out-visa");
    let args = ["--data", s(&visa), "--layout", "visa", "--out", s(&out)];
    let (ok, err) = run_with_tiny_model("eval", &args);
    assert!(ok, "{err}");
    assert!(
        err.contains("1cls.csv:12") && err.contains("class `../../escape` is not a plain folder"),
        "{err}"
    );
    // An MVTec image named with a newline: its map keeps the name, inside --out.
    let mvtec = root.join("mvtec");
    copy_dir(&fixture("eval/datasets/mvtec"), &mvtec);
    let good = mvtec.join("tile/test/good");
    std::fs::copy(good.join("000.png"), good.join("odd\nname.png")).unwrap();
    let out_mvtec = root.join("out-mvtec");
    let args = [
        "--data",
        s(&mvtec),
        "--layout",
        "mvtec",
        "--out",
        s(&out_mvtec),
    ];
    let (ok, err) = run_with_tiny_model("eval", &args);
    assert!(ok, "{err}");
    assert!(
        out_mvtec
            .join("maps/tile/test/good/odd\nname.npy")
            .is_file()
    );
    assert_eq!(
        listing(&root),
        ["mvtec", "out-mvtec", "out-visa", "visa"],
        "nothing written beside the outputs"
    );
    let maps = files_below(&out.join("maps"));
    assert!(
        maps.iter()
            .all(|m| m.starts_with("candle/") || m.starts_with("macaroni1/")),
        "{maps:?}"
    );
}
