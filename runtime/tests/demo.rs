//! The bundled demo model (trained by scripts/train_demo.py) against the greedy
//! continuations HF transformers computed from the same weights: the bf16 safetensors
//! checkpoint (models/lfm2-demo) and the Q8_0 GGUF file made of it, which is the model
//! the commands run when given no --model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use lfm_edge::{
    generate, sampler::argmax, Flow, GenerateOptions, Model, Sampler, SamplerConfig, Session,
    SessionOptions,
};
use serde::Deserialize;

/// The GGUF file the commands run without --model.
const BUNDLED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lfm2-demo-Q8_0.gguf");

/// The fields checked here of models/lfm2-demo/reference.json and of the GGUF's .json.
#[derive(Deserialize)]
struct DemoReference {
    prompt_text: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn safetensors_demo() -> PathBuf {
    Path::new(BUNDLED_MODEL).with_file_name("lfm2-demo")
}

/// A model and its reference file.
fn demos() -> [(PathBuf, PathBuf); 2] {
    let gguf = PathBuf::from(BUNDLED_MODEL);
    [
        (
            safetensors_demo(),
            safetensors_demo().join("reference.json"),
        ),
        (gguf.clone(), gguf.with_extension("json")),
    ]
}

fn read_reference(path: &Path) -> DemoReference {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn greedy_continuation_matches_transformers() {
    for (path, reference) in demos() {
        let r = read_reference(&reference);
        let model = Arc::new(Model::load(&path, common::gpu()).unwrap());
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
            logits = session.step(id).unwrap();
        }
        assert_eq!(generated, r.greedy_ids, "{}", path.display());
    }
}

#[test]
fn generate_defaults_to_the_demo_model() {
    let r = read_reference(&demos()[1].1);
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

/// Sampled generation, which picks from the GPU's candidates (`Session::step_top`) and
/// reads the row only where they cannot decide, draws the tokens that sampling each
/// row read back draws: for every setting of the chain, penalties included.
#[test]
fn sampled_generation_draws_what_the_rows_draw() {
    let r = read_reference(&demos()[1].1);
    let model = Arc::new(Model::load(Path::new(BUNDLED_MODEL), common::gpu()).unwrap());
    let at = |temperature, seed| SamplerConfig {
        temperature,
        seed,
        ..SamplerConfig::default()
    };
    let configs = [
        at(1.0, 1),
        SamplerConfig {
            top_k: 40,
            ..at(1.2, 2)
        },
        SamplerConfig {
            top_p: 0.9,
            ..at(0.8, 3)
        },
        SamplerConfig {
            min_p: 0.05,
            ..at(1.0, 4)
        },
        SamplerConfig {
            top_k: 20,
            repetition_penalty: 1.3,
            ..at(0.9, 5)
        },
        SamplerConfig {
            min_p: 0.1,
            presence_penalty: 0.5,
            frequency_penalty: 0.3,
            ..at(1.0, 6)
        },
        SamplerConfig {
            repetition_penalty: 1.2,
            ..at(0.0, 7)
        },
    ];
    for config in configs {
        let options = GenerateOptions {
            max_tokens: 48,
            sampler: config.clone(),
            ignore_eos: true,
            ..GenerateOptions::default()
        };
        let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
        let logits = session.feed(&r.prompt_ids).unwrap();
        let streamed = generate(&mut session, logits, &options, |_| Flow::Continue).unwrap();

        let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
        let mut sampler = Sampler::with_config(config.clone());
        sampler.accept(&r.prompt_ids);
        let mut logits = session.feed(&r.prompt_ids).unwrap();
        let mut drawn = Vec::new();
        while drawn.len() < options.max_tokens {
            let id = sampler.sample(&logits);
            drawn.push(id);
            logits = session.step(id).unwrap();
        }
        assert_eq!(streamed.tokens, drawn, "{config:?}");
    }
}
