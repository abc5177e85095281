//! Arbitrary text as tokenizer.json: a tokenizer that loads encodes and decodes a
//! sample text with special tokens and control characters; nothing panics.
//!
//! `cargo +nightly fuzz run tokenizer_json corpus/tokenizer_json` from runtime/.

#![no_main]

use std::path::Path;

use lfm_edge::Tokenizer;
use libfuzzer_sys::fuzz_target;

const SAMPLE: &str = "<|im_start|>user\nHi, 世界 🦙 \t\0 it's 3.14<|im_end|>";

fuzz_target!(|json: &str| {
    let Ok(tokenizer) = Tokenizer::from_json(json, None, Path::new("fuzz")) else {
        return;
    };
    if let Ok(ids) = tokenizer.encode(SAMPLE) {
        let _ = tokenizer.decode(&ids, false);
        let _ = tokenizer.decode(&ids, true);
    }
});
