//! Shared by the integration tests: the GPU, the fixtures and their HF references.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use lfm_edge::{sampler::argmax, Gpu, GpuOptions, Model, Session, SessionOptions};
use serde::Deserialize;

/// The tiny checkpoints made by scripts/make_fixtures.py.
pub const FIXTURES: [&str; 4] = [
    "lfm2-tiny-conv-first",
    "lfm2-tiny-attn-first",
    "lfm2moe-tiny",
    "lfm2moe-tiny-fused",
];

/// The bar for logits against HF transformers in f32.
pub const LOGITS_TOLERANCE: f32 = 2e-3;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

#[derive(Deserialize)]
pub struct Tokenization {
    pub text: String,
    pub ids: Vec<u32>,
}

#[derive(Deserialize)]
pub struct Reference {
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub tokenizations: Vec<Tokenization>,
    /// (n_prompt, vocab), HF logits of every prompt position.
    #[serde(skip)]
    pub logits: Vec<f32>,
}

pub fn reference(name: &str) -> Reference {
    let dir = fixture(name);
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let mut reference: Reference = serde_json::from_str(&text).unwrap();
    let (shape, logits) = lfm_edge::npy::read_f32(&dir.join("logits.npy")).unwrap();
    assert_eq!(shape[0], reference.prompt_ids.len());
    reference.logits = logits;
    reference
}

pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(&GpuOptions::default()).expect("a wgpu adapter (lavapipe on CI)"))
        .clone()
}

pub fn load(name: &str) -> Arc<Model> {
    Arc::new(Model::load(&fixture(name), gpu()).unwrap())
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `n` greedy tokens after `prompt`, decoding one token at a time through the cache.
pub fn greedy(model: Arc<Model>, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut session = Session::new(model, &SessionOptions::default()).unwrap();
    let mut logits = session.feed(prompt).unwrap();
    let mut generated = Vec::new();
    while generated.len() < n {
        generated.push(argmax(&logits));
        if generated.len() < n {
            logits = session.feed(&generated[generated.len() - 1..]).unwrap();
        }
    }
    generated
}
