//! The debug mode: each named intermediate of the forward pass against HF transformers'
//! (fixtures/*/trace, written by hooks on the modules of the same names), in the library
//! and through `lfm-edge trace`.

mod common;

use std::process::Command;

use common::{fixture, load, max_abs_diff, reference, FIXTURES};
use lfm_edge::{npy, KvDtype, Session, SessionOptions};

/// Per intermediate; the logits bar (2e-3) holds for values ten times larger.
const TOLERANCE: f32 = 1e-3;

fn options() -> SessionOptions {
    SessionOptions {
        kv_dtype: KvDtype::F32,
        all_logits: true,
        ..SessionOptions::default()
    }
}

#[test]
fn intermediates_match_transformers_layer_by_layer() {
    for name in FIXTURES {
        let r = reference(name);
        let model = load(name);
        let trace = Session::new(model.clone(), &options())
            .unwrap()
            .trace(&r.prompt_ids)
            .unwrap();
        let layers = model.config.n_layers();
        assert_eq!(trace.intermediates.len(), 2 * layers + 2, "{name}");
        for (i, intermediate) in trace.intermediates.iter().enumerate() {
            let path = fixture(name)
                .join("trace")
                .join(format!("{}.npy", intermediate.name));
            let (shape, want) = npy::read_f32(&path).unwrap();
            assert_eq!(shape, [r.prompt_ids.len(), model.config.hidden_size]);
            let err = max_abs_diff(&intermediate.values, &want);
            eprintln!("{name} {i:2} {}: {err:.2e}", intermediate.name);
            assert!(err <= TOLERANCE, "{name} {}: {err}", intermediate.name);
        }
        // Tracing changes nothing: the logits and the cache are those of `feed`.
        let mut fed = Session::new(model, &options()).unwrap();
        assert_eq!(trace.logits, fed.feed(&r.prompt_ids).unwrap());
    }
}

#[test]
fn a_trace_is_one_batch() {
    let model = load(FIXTURES[0]);
    let small = SessionOptions {
        batch: 4,
        ..options()
    };
    let err = Session::new(model, &small)
        .unwrap()
        .trace(&[1, 2, 3, 4, 5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("one batch"), "{err}");
}

#[test]
fn trace_command_writes_and_diffs_the_intermediates() {
    let name = FIXTURES[0];
    let r = reference(name);
    let ids: Vec<String> = r.prompt_ids.iter().map(u32::to_string).collect();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(["trace", "--model"])
        .arg(fixture(name))
        .args(["--tokens", &ids.join(","), "--kv-cache", "f32", "--out"])
        .arg(out.path())
        .arg("--reference")
        .arg(fixture(name).join("trace"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 14, "{stdout}");
    assert!(
        lines[0].starts_with("model.embed_tokens: max abs diff 0.000e0"),
        "{stdout}"
    );
    assert!(
        lines[13].starts_with("model.embedding_norm: max abs diff "),
        "{stdout}"
    );
    let (shape, _) = npy::read_f32(&out.path().join("model.layers.5.npy")).unwrap();
    assert_eq!(shape, [r.prompt_ids.len(), 64]);
}
