//! Arbitrary bytes as a safetensors file: its header must give tensors that lie inside
//! the file, each of a supported dtype, or an error; never a panic.
//!
//! `cargo +nightly fuzz run safetensors_header corpus/safetensors_header` from runtime/.

#![no_main]

use std::path::Path;

use lfm_edge::safetensors::read_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tensors) = read_header(data, Path::new("fuzz.safetensors")) else {
        return;
    };
    for (_, t) in tensors {
        assert!(t.start <= t.end && t.end <= data.len());
        let elements = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let bytes = elements.and_then(|n| n.checked_mul(t.dtype.block_bytes()));
        assert_eq!(bytes, Some(t.end - t.start), "{:?}", t.shape);
    }
});
