//! Fuzzes entries::pytorch_checkpoint: any bytes saved as a `.pt` give Ok or a
//! duoclip error, never a panic.
#![no_main]

#[path = "../entries.rs"]
mod entries;

use std::path::PathBuf;
use std::sync::OnceLock;

// burn-store's PyTorch reader opens files: one scratch file per fuzzing process, in memory
// (/dev/shm) where there is one.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

fn scratch() -> &'static PathBuf {
    SCRATCH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("duoclip-fuzz-{}.pt", std::process::id()))
    })
}

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = entries::pytorch_checkpoint(bytes, scratch());
});
