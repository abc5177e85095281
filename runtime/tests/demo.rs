//! The bundled demo model (models/lfm2-demo, trained by scripts/train_demo.py) against
//! the greedy continuation HF transformers computed from the same weights at training
//! time, and as the model `generate` runs when given no --model.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use lfm_edge::hub::BUNDLED_MODEL;
use lfm_edge::{sampler::argmax, Model, Session, SessionOptions};
use serde::Deserialize;

/// models/lfm2-demo/reference.json (the fields checked here).
#[derive(Deserialize)]
struct DemoReference {
    prompt_text: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn demo_reference() -> DemoReference {
    let path = Path::new(BUNDLED_MODEL).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn greedy_continuation_matches_transformers() {
    let r = demo_reference();
    let model = Arc::new(Model::load(Path::new(BUNDLED_MODEL), common::gpu()).unwrap());
    assert_eq!(
        model.tokenizer.encode(&r.prompt_text).unwrap(),
        r.prompt_ids
    );
    let mut session = Session::new(model, &SessionOptions::default()).unwrap();
    let mut logits = session.feed(&r.prompt_ids).unwrap();
    let mut generated = Vec::new();
    while generated.len() < r.greedy_ids.len() {
        let id = argmax(&logits);
        generated.push(id);
        logits = session.feed(&[id]).unwrap();
    }
    assert_eq!(generated, r.greedy_ids);
}

#[test]
fn generate_defaults_to_the_demo_model() {
    let r = demo_reference();
    let out = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(["generate", "--prompt", &r.prompt_text, "--max-tokens", "8"])
        .args(["--ignore-eos", "--print-ids"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some(join(&r.greedy_ids[..8]).as_str())
    );
}
