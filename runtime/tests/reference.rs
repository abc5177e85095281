//! The runtime against HF transformers on the tiny fixtures: logits in every feeding
//! mode, the greedy continuation, and tokenization.

mod common;

use common::{load, max_abs_diff, reference, FIXTURES, LOGITS_TOLERANCE};
use lfm_edge::{KvDtype, Session, SessionOptions};

/// An f32 KV cache: the f16 default is further from HF's f32 cache than the tolerance
/// (runtime/tests/session.rs bounds it).
fn exact() -> SessionOptions {
    SessionOptions {
        kv_dtype: KvDtype::F32,
        ..SessionOptions::default()
    }
}

fn all_logits(batch: usize) -> SessionOptions {
    SessionOptions {
        batch,
        all_logits: true,
        ..exact()
    }
}

fn check_logits(name: &str, mode: &str, logits: &[f32], expected: &[f32]) {
    let err = max_abs_diff(logits, expected);
    eprintln!("{name} {mode}: max abs error {err:.2e}");
    assert!(
        err <= LOGITS_TOLERANCE,
        "{name} {mode}: max abs error {err} > {LOGITS_TOLERANCE}"
    );
}

#[test]
fn prefill_logits_match_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let mut session = Session::new(load(name), &all_logits(128)).unwrap();
        check_logits(
            name,
            "prefill",
            &session.feed(&r.prompt_ids).unwrap(),
            &r.logits,
        );
    }
}

#[test]
fn decode_logits_match_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let mut session = Session::new(load(name), &exact()).unwrap();
        let logits: Vec<f32> = r
            .prompt_ids
            .iter()
            .flat_map(|&t| session.step(t).unwrap())
            .collect();
        check_logits(name, "decode", &logits, &r.logits);
    }
}

/// Prompts longer than a batch run in several passes that share the cache.
#[test]
fn chunked_prefill_logits_match_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let mut session = Session::new(load(name), &all_logits(5)).unwrap();
        check_logits(
            name,
            "batches of 5",
            &session.feed(&r.prompt_ids).unwrap(),
            &r.logits,
        );
    }
}

/// Prefill and decode on a GPU's launch shapes, with each way the kernels sum across
/// invocations (a tree in workgroup memory; subgroup sums where the adapter has them):
/// the default adapter of the tests above may take only one of them.
#[test]
fn logits_match_transformers_with_either_sums() {
    use lfm_edge::gpu::{Gpu, GpuOptions, Reduce, Tuning};
    use lfm_edge::Model;
    let gpus = [
        (Tuning::GPU, Some(Reduce::Workgroup)),
        (Tuning::GPU_SUBGROUPS, None),
    ]
    .map(|(tuning, reduce)| {
        let options = GpuOptions {
            tuning: Some(tuning),
            reduce,
            ..GpuOptions::default()
        };
        Gpu::new(&options).unwrap()
    });
    for gpu in gpus {
        for name in FIXTURES {
            let r = reference(name);
            let model =
                std::sync::Arc::new(Model::load(&common::fixture(name), gpu.clone()).unwrap());
            let mut prefill = Session::new(model.clone(), &all_logits(128)).unwrap();
            let logits = prefill.feed(&r.prompt_ids).unwrap();
            let mode = format!("prefill, {:?} sums", gpu.reduce);
            check_logits(name, &mode, &logits, &r.logits);
            let mut session = Session::new(model, &exact()).unwrap();
            let logits: Vec<f32> = (r.prompt_ids.iter())
                .flat_map(|&t| session.step(t).unwrap())
                .collect();
            let mode = format!("decode, {:?} sums", gpu.reduce);
            check_logits(name, &mode, &logits, &r.logits);
        }
    }
}

/// A single token's attention with its keys split into ranges side by side and then
/// combined (a GPU's way over a long cache; here in ranges of a few keys, so that the
/// fixtures' short prompts split into many, ragged ones): decode logits still match.
#[test]
fn decode_logits_match_transformers_over_split_keys() {
    use lfm_edge::gpu::{Gpu, GpuOptions, KeyRanges, Tuning};
    use lfm_edge::Model;
    for key_ranges in [
        KeyRanges { most: 8, keys: 2 },
        KeyRanges { most: 3, keys: 1 },
    ] {
        let options = GpuOptions {
            tuning: Some(Tuning {
                key_ranges,
                ..Tuning::GPU_SUBGROUPS
            }),
            ..GpuOptions::default()
        };
        let gpu = Gpu::new(&options).unwrap();
        for name in FIXTURES {
            let r = reference(name);
            let model = Model::load(&common::fixture(name), gpu.clone()).unwrap();
            let mut session = Session::new(std::sync::Arc::new(model), &exact()).unwrap();
            let logits: Vec<f32> = (r.prompt_ids.iter())
                .flat_map(|&t| session.step(t).unwrap())
                .collect();
            check_logits(name, &format!("decode, {key_ranges:?}"), &logits, &r.logits);
        }
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let generated = common::greedy(load(name), &r.prompt_ids, r.greedy_ids.len());
        assert_eq!(generated, r.greedy_ids, "{name}");
    }
}

/// Greedy decoding with the argmax on the GPU (`Session::step_greedy`) gives
/// transformers' continuation too.
#[test]
fn greedy_steps_on_the_gpu_match_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let mut session = Session::new(load(name), &SessionOptions::default()).unwrap();
        let logits = session.feed(&r.prompt_ids).unwrap();
        let mut generated = vec![lfm_edge::sampler::argmax(&logits)];
        while generated.len() < r.greedy_ids.len() {
            let last = generated[generated.len() - 1];
            generated.push(session.step_greedy(last).unwrap());
        }
        assert_eq!(generated, r.greedy_ids, "{name}");
    }
}

#[test]
fn tokenization_matches_transformers() {
    for name in FIXTURES {
        let r = reference(name);
        let tokenizer = lfm_edge::Tokenizer::from_dir(&common::fixture(name)).unwrap();
        for t in &r.tokenizations {
            assert_eq!(
                tokenizer.encode(&t.text).unwrap(),
                t.ids,
                "{name}: {:?}",
                t.text
            );
        }
    }
}

#[test]
fn reset_starts_over() {
    let name = FIXTURES[0];
    let r = reference(name);
    let mut session = Session::new(load(name), &all_logits(128)).unwrap();
    session.feed(&r.prompt_ids[..7]).unwrap();
    session.reset();
    assert_eq!(session.position(), 0);
    check_logits(
        name,
        "after reset",
        &session.feed(&r.prompt_ids).unwrap(),
        &r.logits,
    );
}

#[test]
fn a_nan_is_never_within_tolerance() {
    let nan = max_abs_diff(&[0.0, f32::NAN, 1.0], &[0.0, 0.0, 1.0]);
    assert!(nan.partial_cmp(&LOGITS_TOLERANCE).is_none() && nan != 0.0);
    assert!(max_abs_diff(&[1.0], &[f32::NAN]).is_nan());
    assert_eq!(max_abs_diff(&[1.0, -2.0], &[1.5, -2.0]), 0.5);
}
