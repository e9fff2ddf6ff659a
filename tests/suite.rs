//! The integration tests, as one test binary: each file is a module of it. As eighteen binaries
//! each one linked the library and ran as its own process (~2 min of the suite's build; the
//! tests now run in one process, in parallel, in ~20 s instead of ~60).

mod common;
/// The fuzz targets' entries (`fuzz/entries.rs`), which `fuzz_smoke` runs on its corpus.
#[path = "../fuzz/entries.rs"]
mod fuzz_entry;

mod cli;
mod cli_calibrate;
mod cli_eval;
mod cli_eval_decide;
mod cli_score;
mod clip_parity;
mod convert;
mod crash_safe;
mod decide;
mod detector;
mod detector_parity;
mod eval_metrics;
mod fuzz_smoke;
mod hostile;
mod maps;
mod medical;
mod precision;
mod prompts;
mod reference;
mod split_devices;
mod tokenizer;
mod tta;
