//! Fuzzes duoclip::fuzz_entry::safetensors_checkpoint: any bytes give Ok or a duoclip error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = duoclip::fuzz_entry::safetensors_checkpoint(bytes);
});
