//! Shared by the integration tests: the GPU, the fixtures and their HF references.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use lfm_edge::dtype::DType;
use lfm_edge::gguf::GgmlType;
use lfm_edge::gpu::{Dispatch, StepUniform};
use lfm_edge::{sampler::argmax, Gpu, GpuOptions, KvDtype, Model, Session, SessionOptions};
use serde::Deserialize;

/// The tiny checkpoints made by scripts/make_fixtures.py.
pub const FIXTURES: [&str; 7] = [
    "lfm2-tiny-conv-first",
    "lfm2-tiny-attn-first",
    "lfm2moe-tiny",
    "lfm2moe-tiny-fused",
    "qwen3-tiny",
    "qwen3-tiny-bias",
    "ministral3-tiny",
];

/// The bar for logits against HF transformers in f32.
pub const LOGITS_TOLERANCE: f32 = 2e-3;

/// A deterministic token sequence over the fixtures' vocabulary (bos first).
pub fn tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    let mut ids = vec![1];
    while ids.len() < n {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ids.push(2 + (state >> 33) as u32 % 1000);
    }
    ids
}

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

/// The largest `|a - b|`; NaN when either side has a NaN anywhere, so that no
/// tolerance (`err <= tol`) and no equality (`err == 0.0`) holds.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |worst, d| {
            if d.is_nan() || worst.is_nan() {
                f32::NAN
            } else {
                worst.max(d)
            }
        })
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

/// SplitMix64: deterministic test inputs without another crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * scale
    }

    pub fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(scale)).collect()
    }
}

/// The GGUF type whose blocks a quantized `dtype` holds.
pub fn ggml_type(dtype: DType) -> GgmlType {
    let name = dtype.to_string().to_uppercase();
    GgmlType::all().find(|t| t.name() == name).unwrap()
}

/// Byte offsets of the f16 scale fields in a block of a quantized `dtype`
/// (ggml-common.h), for random blocks whose scales must stay finite.
pub fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q6_K => &[208],
        DType::Q4_K | DType::Q5_K | DType::Q4_1 | DType::Q5_1 => &[0, 2],
        DType::TQ1_0 => &[52],
        DType::TQ2_0 => &[64],
        _ => &[0],
    }
}

/// Records `dispatches` for a batch of `n_tokens` at cache position `pos` in one
/// compute pass, as `Session` does, submits, and fails on any wgpu error.
pub fn run_dispatches(
    gpu: &Gpu,
    n_tokens: u32,
    pos: u32,
    max_per_dim: u32,
    dispatches: &[&Dispatch],
) {
    let step = StepUniform {
        n_tokens,
        pos,
        _pad: [0; 2],
    };
    let (_uniform, group) = gpu.step_binding("step", &step).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_bind_group(1, &group, &[]);
        for d in dispatches {
            d.encode(&mut pass, n_tokens, max_per_dim);
        }
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.check().unwrap();
}

/// FNV-1a 64 of the values' little-endian bytes, as the fixture scripts hash them.
pub fn fnv1a64(values: &[f32]) -> String {
    let hash = values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    format!("{hash:016x}")
}

/// Prefill (all positions' logits, in batches of `batch`) and token-by-token decode of
/// `prompt` through an f32 KV cache (the f16 default is further from HF's f32 cache
/// than the tolerances), in a context of just the prompt.
pub fn prefill_and_decode(
    model: Arc<Model>,
    prompt: &[u32],
    batch: usize,
) -> [(&'static str, Vec<f32>); 2] {
    let exact = SessionOptions {
        kv_dtype: KvDtype::F32,
        batch,
        max_context: prompt.len(),
        ..SessionOptions::default()
    };
    let options = SessionOptions {
        all_logits: true,
        ..exact.clone()
    };
    let prefill = Session::new(model.clone(), &options)
        .unwrap()
        .feed(prompt)
        .unwrap();
    let mut session = Session::new(model, &exact).unwrap();
    let decode = prompt
        .iter()
        .flat_map(|&t| session.step(t).unwrap())
        .collect();
    [("prefill", prefill), ("decode", decode)]
}
