//! Parity with open_clip: tests/fixtures/tokenizer.json holds `open_clip.tokenize(text)` for
//! several hundred texts (written by tools/gen_tokenizer_fixture.py); every one must match.

use duoclip::clip::tokenizer::Tokenizer;
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer.json");

struct Case {
    text: String,
    ids: Vec<u32>,
}

fn load_fixture() -> (usize, Vec<Case>) {
    let json = std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| {
        panic!("cannot read {FIXTURE} ({e}); run tools/gen_tokenizer_fixture.py")
    });
    let root: Value = serde_json::from_str(&json).expect("fixture is valid JSON");
    let context_length = root["context_length"].as_u64().expect("context_length") as usize;
    let cases = root["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .map(|case| Case {
            text: case["text"].as_str().expect("text").to_owned(),
            ids: case["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_u64().expect("id") as u32)
                .collect(),
        })
        .collect();
    (context_length, cases)
}

#[test]
fn every_fixture_case_matches_open_clip() {
    let (context_length, cases) = load_fixture();
    assert!(
        cases.len() >= 200,
        "fixture has only {} cases; regenerate it",
        cases.len()
    );
    let tokenizer = Tokenizer::new();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let ours = tokenizer.tokenize(&case.text, context_length);
            (ours != case.ids).then(|| {
                format!(
                    "text {:?}\n  open_clip {:?}\n  duoclip   {:?}",
                    case.text, case.ids, ours
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from open_clip:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
