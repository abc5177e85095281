//! GGUF models against HF transformers run on the exactly dequantized weights: every
//! tensor type in prefill and decode, greedy continuations, and VRAM holding the
//! quantized bytes as they are in the file.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{gpu, max_abs_diff};
use lfm_edge::gguf::GgufFile;
use lfm_edge::{Gpu, GpuOptions, Model, Session, SessionOptions};
use serde::Deserialize;

/// The bar for GGUF logits: activations stay f32, so only the weights' rounding counts.
const GGUF_TOLERANCE: f32 = 5e-3;

#[derive(Deserialize)]
struct GgufReference {
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    /// llama.cpp's CPU backend's greedy continuation, where it equals HF's.
    #[serde(default)]
    llama_cpp_greedy_ids: Option<Vec<u32>>,
}

/// Each GGUF fixture with its reference (`X.gguf`, `X.json`, `X.logits.npy`).
fn gguf_fixtures() -> Vec<(PathBuf, GgufReference, Vec<f32>)> {
    let dir = common::fixture("gguf");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf") && p.with_extension("json").exists())
        .map(|path| {
            let text = std::fs::read_to_string(path.with_extension("json")).unwrap();
            let reference: GgufReference = serde_json::from_str(&text).unwrap();
            let (_, logits) = lfm_edge::npy::read_f32(&path.with_extension("logits.npy")).unwrap();
            (path, reference, logits)
        })
        .collect();
    fixtures.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        fixtures.len() >= 8,
        "GGUF fixtures missing from {}",
        dir.display()
    );
    fixtures
}

fn name(path: &std::path::Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn logits_match_transformers_on_dequantized_weights() {
    for (path, r, expected) in gguf_fixtures() {
        let model = Arc::new(Model::load(&path, gpu()).unwrap());
        let batch = r.prompt_ids.len();
        for (mode, logits) in common::prefill_and_decode(model, &r.prompt_ids, batch) {
            let err = max_abs_diff(&logits, &expected);
            eprintln!("{} {mode}: max abs error {err:.2e}", name(&path));
            assert!(err <= GGUF_TOLERANCE, "{} {mode}: {err}", name(&path));
        }
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for (path, r, _) in gguf_fixtures() {
        let model = Arc::new(Model::load(&path, gpu()).unwrap());
        let generated = common::greedy(model, &r.prompt_ids, r.greedy_ids.len());
        assert_eq!(generated, r.greedy_ids, "{}", name(&path));
        if let Some(llama_cpp) = &r.llama_cpp_greedy_ids {
            assert_eq!(&generated, llama_cpp, "{} vs llama.cpp", name(&path));
        }
    }
}

/// Quantized weights are uploaded as their raw blocks: VRAM holds the file's tensor
/// bytes, plus at most 15 bytes of padding per tensor (buffers are whole 16-byte words).
#[test]
fn vram_holds_the_quantized_bytes() {
    for (path, _, _) in gguf_fixtures() {
        let file = GgufFile::open(&path).unwrap();
        let file_bytes: u64 = file.tensors().map(|t| t.n_bytes as u64).sum();
        let tensors = file.tensors().count() as u64;
        let gpu: Arc<Gpu> = Gpu::new(&GpuOptions::default()).unwrap();
        let model = Model::load(&path, gpu.clone()).unwrap();
        let uploaded = gpu.uploaded_bytes();
        assert_eq!(model.weight_bytes(), file_bytes, "{}", name(&path));
        assert!(
            (file_bytes..=file_bytes + 15 * tensors).contains(&uploaded),
            "{}: uploaded {uploaded}, file has {file_bytes}",
            name(&path)
        );
    }
}

/// llama.cpp's converter writes f32 weights as they are, but Ministral 3's q/k rows in
/// its own order: its F32 file and the HF folder it came from give the same logits.
#[test]
fn a_gguf_file_and_its_folder_give_the_same_logits() {
    let options = SessionOptions {
        all_logits: true,
        kv_dtype: lfm_edge::KvDtype::F32,
        ..SessionOptions::default()
    };
    for name in ["qwen3-tiny", "ministral3-tiny"] {
        let prompt = common::reference(name).prompt_ids;
        let logits = |path: PathBuf| {
            let model = Arc::new(Model::load(&path, gpu()).unwrap());
            Session::new(model, &options)
                .unwrap()
                .feed(&prompt)
                .unwrap()
        };
        let folder = logits(common::fixture(name));
        let file = logits(common::fixture("gguf").join(format!("{name}-F32.gguf")));
        let err = max_abs_diff(&folder, &file);
        assert!(err <= 1e-5, "{name}: folder and F32 GGUF differ by {err}");
    }
}
