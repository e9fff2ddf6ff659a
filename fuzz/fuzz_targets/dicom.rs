//! Fuzzes entries::source from a DICOM seed corpus: any bytes give Ok or a duoclip error,
//! never a panic.
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = entries::source(bytes);
});
