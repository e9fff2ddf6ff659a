//! Fuzzes entries::tokenize: any text tokenizes without a panic or a hang.
#![no_main]

#[path = "../entries.rs"]
mod entries;

use std::sync::OnceLock;

use duoclip::clip::Tokenizer;

// Building the BPE tables takes tens of milliseconds (seconds under AddressSanitizer on a busy
// machine): once per process, in `init`, so that it never counts against an input's timeout.
static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();

libfuzzer_sys::fuzz_target!(
    init: {
        TOKENIZER.get_or_init(Tokenizer::new);
    },
    |bytes: &[u8]| {
        entries::tokenize(TOKENIZER.get_or_init(Tokenizer::new), bytes);
    }
);
