//! Every truncation and byte flip of a safetensors checkpoint's header, and seeded
//! flips anywhere: each opens, or fails with an error, never a panic or an
//! allocation without bound. Loading the whole model checks what opening cannot
//! (shapes against the config) on a sample.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{fixture, gpu, Rng};
use lfm_edge::safetensors::Checkpoint;
use lfm_edge::weights::WeightSource;
use lfm_edge::Model;

const FIXTURE: &str = "lfm2-tiny-conv-first";

/// A copy of the fixture whose model.safetensors is `bytes`.
fn checkpoint_with(dir: &Path, bytes: &[u8]) {
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        let from = fixture(FIXTURE).join(name);
        if from.exists() {
            std::fs::copy(from, dir.join(name)).unwrap();
        }
    }
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
}

/// Opens the checkpoint and reads every tensor `names` lists: an error is fine.
fn open_and_read(dir: &Path, names: &[String]) -> bool {
    let Ok(checkpoint) = Checkpoint::open(dir) else {
        return false;
    };
    for name in names {
        if let Ok(view) = checkpoint.get(name) {
            let elements: usize = view.shape.iter().product();
            assert!(view.bytes.len() >= elements.min(1), "{name}: {elements}");
        }
    }
    true
}

#[test]
fn damaged_headers_give_errors_not_panics() {
    let valid = std::fs::read(fixture(FIXTURE).join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&valid[8..8 + header_len]).unwrap();
    let names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Every cut inside the header and a few past it.
    for len in (0..8 + header_len).chain([8 + header_len + 1, valid.len() - 1]) {
        checkpoint_with(dir, &valid[..len]);
        assert!(!open_and_read(dir, &names), "cut at {len} opened");
    }
    // Every byte of the length and the header, set to a few values, in place.
    checkpoint_with(dir, &valid);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("model.safetensors"))
        .unwrap();
    for at in 0..8 + header_len {
        for value in [0u8, 0xff, valid[at] ^ 0x01, b'9', b'"'] {
            file.write_all_at(&[value], at as u64).unwrap();
            open_and_read(dir, &names);
        }
        file.write_all_at(&valid[at..at + 1], at as u64).unwrap();
    }
    // Seeded flips anywhere, loaded as a model on a sample.
    let mut rng = Rng(11);
    let gpu = gpu();
    for i in 0..300 {
        let mut bytes = valid.clone();
        let span = if i % 2 == 0 {
            8 + header_len
        } else {
            bytes.len()
        };
        for _ in 0..1 + rng.next_u64() % 3 {
            let at = (rng.next_u64() % span as u64) as usize;
            bytes[at] = rng.next_u64() as u8;
        }
        checkpoint_with(dir, &bytes);
        if open_and_read(dir, &names) && i % 10 == 0 {
            // Loads or fails cleanly; data flips merely change values.
            let _ = Model::load(dir, gpu.clone());
        }
    }
}
