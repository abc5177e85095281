//! Arbitrary bytes as a GGUF file: parsing, handing out every tensor, dequantizing it and
//! building the tokenizer must each return a value or an error, never panic, hang or
//! allocate beyond what the input's size allows.
//!
//! `cargo +nightly fuzz run gguf_reader ../fixtures/gguf` (from runtime/) seeds the
//! corpus with the fixture files.

#![no_main]

use lfm_edge::gguf::{dequantize, tokenizer_from_gguf, GgufFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    for info in file.tensors() {
        if let Ok(tensor) = file.tensor(&info.name) {
            assert_eq!(tensor.bytes.len(), info.n_bytes);
            if let Ok(values) = dequantize(info.ggml_type, tensor.bytes) {
                assert_eq!(values.len(), info.n_elements());
            }
        }
    }
    let _ = tokenizer_from_gguf(&file);
});
