//! GPU memory: a VRAM budget planned before allocating, and weights split across
//! bindings when they exceed the device's binding size.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use common::{fixture, load, max_abs_diff, reference};
use lfm_edge::bench::{profile, BenchOptions};
use lfm_edge::kv_pool::blocks_for;
use lfm_edge::{
    ContextOverflow, Error, Gpu, GpuOptions, KvDtype, KvPool, MemoryPlan, Model, Session,
    SessionOptions, VramBudget,
};

/// Low enough that the tiny fixtures' 128 KiB embedding takes four bindings; a quarter
/// of it still holds a session's largest activation (a decoded token's partial
/// attention results, 8448 bytes for 4 heads of 64).
const SMALL_BINDING: u64 = 34 << 10;

fn options() -> SessionOptions {
    SessionOptions {
        kv_dtype: KvDtype::F32,
        batch: 4,
        max_context: 64,
        all_logits: true,
        ..SessionOptions::default()
    }
}

fn logits(model: Arc<Model>, prompt: &[u32], options: &SessionOptions) -> (Vec<f32>, Vec<f32>) {
    let prefill = Session::new(model.clone(), options)
        .unwrap()
        .feed(prompt)
        .unwrap();
    let mut session = Session::new(model, options).unwrap();
    let decode = prompt
        .iter()
        .flat_map(|&t| session.step(t).unwrap())
        .collect();
    (prefill, decode)
}

/// Loads each model on `small` and on the default device: both give the same logits,
/// prefill (in batches of `batch`) and decode.
fn same_logits_as_unsplit(small: &Arc<Gpu>, models: &[PathBuf], batch: usize) {
    let prompt = reference("lfm2-tiny-conv-first").prompt_ids;
    let options = SessionOptions {
        batch,
        max_context: prompt.len(),
        ..options()
    };
    for path in models {
        let name = path.file_name().unwrap().to_string_lossy();
        let split = Arc::new(Model::load(path, small.clone()).unwrap());
        let whole = Arc::new(Model::load(path, common::gpu()).unwrap());
        let (split_prefill, split_decode) = logits(split, &prompt, &options);
        let (prefill, decode) = logits(whole, &prompt, &options);
        for (mode, got, want) in [
            ("prefill", split_prefill, prefill),
            ("decode", split_decode, decode),
        ] {
            let err = max_abs_diff(&got, &want);
            eprintln!("{name} {mode}: split vs whole {err:.2e}");
            assert!(err <= 1e-5, "{name} {mode}: {err}");
        }
    }
}

/// The checkpoints in every layout the splits handle: dense rows of bf16, Q8_0 (34-byte
/// blocks: rows not a multiple of the offset alignment) and K-quant blocks, expert
/// stacks per expert, fused and quantized.
fn split_models() -> Vec<PathBuf> {
    let gguf = |name: &str| fixture("gguf").join(format!("{name}.gguf"));
    vec![
        fixture("lfm2-tiny-conv-first"),
        fixture("lfm2-tiny-attn-first"),
        fixture("lfm2moe-tiny"),
        fixture("lfm2moe-tiny-fused"),
        gguf("lfm2-tiny-conv-first-Q8_0"),
        gguf("lfm2-tiny-kquant-Q4_K_M"),
        gguf("lfm2moe-tiny-Q4_0"),
    ]
}

#[test]
fn split_bindings_give_the_same_logits() {
    let small = Gpu::new(&GpuOptions {
        max_binding_size: Some(SMALL_BINDING),
        ..GpuOptions::default()
    })
    .unwrap();
    assert_eq!(small.limits.max_storage_buffer_binding_size, SMALL_BINDING);
    let split = Model::load(&fixture("lfm2moe-tiny-fused"), small.clone()).unwrap();
    // The embedding takes four bindings, each fused gate_up stack four.
    assert!(split.weight_bytes() > 4 * SMALL_BINDING);
    same_logits_as_unsplit(&small, &split_models(), 4);
}

/// The projections before RoPE that a decoded token's attention layers launch, by the
/// weight they read (`bench --profile`'s families).
fn qkv_projections(model: Arc<Model>) -> Vec<String> {
    let options = BenchOptions {
        prompt_tokens: 1,
        gen_tokens: 1,
        repeat: 1,
        depth: 0,
        kv_dtype: KvDtype::F32,
    };
    let families = profile(&model, &options).unwrap().families;
    let mut names: Vec<String> = families
        .iter()
        .filter_map(|f| f.name.strip_prefix("Matvec self_attn."))
        .filter(|name| *name != "out_proj")
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[test]
fn split_buffers_give_the_same_logits() {
    // Small enough that the quantized expert stacks (9 KiB) take two bindings.
    let small = Gpu::new(&GpuOptions {
        max_buffer_size: Some(SMALL_BINDING / 2),
        max_binding_size: Some(SMALL_BINDING / 4),
        ..GpuOptions::default()
    })
    .unwrap();
    assert_eq!(small.limits.max_buffer_size, SMALL_BINDING / 2);
    for path in split_models() {
        let split = Model::load(&path, small.clone()).unwrap();
        let whole = Model::load(&path, common::gpu()).unwrap();
        assert!(
            split.weight_buffer_count() > whole.weight_buffer_count(),
            "{path:?}: no tensor was split"
        );
    }
    // q, k and v together (30 KiB of bf16) exceed a binding: they stay three projections,
    // each writing its columns of the rows, in parts.
    let path = fixture("lfm2-tiny-attn-first");
    let apart = qkv_projections(Arc::new(Model::load(&path, small.clone()).unwrap()));
    assert_eq!(apart, ["k_proj", "q_proj", "v_proj"]);
    let joined = qkv_projections(Arc::new(Model::load(&path, common::gpu()).unwrap()));
    assert_eq!(joined, ["q_proj+k_proj+v_proj"]);
    // Two tokens' logits fill a binding.
    same_logits_as_unsplit(&small, &split_models(), 2);
}

#[test]
fn a_row_larger_than_a_buffer_is_named() {
    let tiny = Gpu::new(&GpuOptions {
        max_buffer_size: Some(64),
        ..GpuOptions::default()
    })
    .unwrap();
    let err = Model::load(&fixture("lfm2-tiny-conv-first"), tiny)
        .err()
        .expect("a limit error");
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Limit {
                limit: "max_buffer_size",
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("one row of"), "{message}");
}

#[test]
fn weights_over_the_budget_are_refused_with_the_numbers() {
    let model = load("lfm2-tiny-conv-first");
    let weights = model.weight_bytes();
    let err = MemoryPlan::new(&model.config, weights, weights - 1, &options(), 1).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Budget { .. }), "{message}");
    assert!(message.contains(&weights.to_string()), "{message}");
}

#[test]
fn a_budget_that_fits_n_tokens_gives_a_context_of_n() {
    let model = load("lfm2-tiny-attn-first");
    let n = 40;
    let weights = model.weight_bytes();
    let exact = SessionOptions {
        max_context: n,
        all_logits: false,
        ..options()
    };
    // Exactly the bytes n tokens take.
    let need = MemoryPlan::new(&model.config, weights, u64::MAX / 4, &exact, 1).unwrap();
    let unbounded = SessionOptions {
        max_context: usize::MAX,
        ..exact.clone()
    };
    let plan = MemoryPlan::new(&model.config, weights, need.total, &unbounded, 1).unwrap();
    assert_eq!(plan.context, n, "{plan:?}");
    eprintln!(
        "{n} tokens: weights {weights}, session {} + {} per token ({} of them KV)",
        plan.session_fixed, plan.per_token, plan.kv_per_token
    );
    // What the plan counted is what a session allocates.
    let session = Session::new(model.clone(), &plan.apply(&unbounded)).unwrap();
    assert_eq!(session.max_context(), n);
    assert_eq!(weights + session.gpu_bytes(), plan.total);

    let all: Vec<u32> = (0..=n as u32).map(|i| 1 + i % 500).collect();
    let mut session = Session::new(model.clone(), &plan.apply(&unbounded)).unwrap();
    session.feed(&all[..n]).unwrap();
    assert!(matches!(
        session.feed(&all[n..]),
        Err(Error::ContextFull { .. })
    ));
    let shifting = SessionOptions {
        overflow: ContextOverflow::Shift,
        ..plan.apply(&unbounded)
    };
    let mut session = Session::new(model, &shifting).unwrap();
    session.feed(&all[..n]).unwrap();
    session.feed(&all[n..]).unwrap();
    assert!(session.position() < n);
}

#[test]
fn a_model_within_a_budget_gives_its_sessions_what_is_left() {
    let path = fixture("lfm2-tiny-attn-first");
    let n = 40;
    // What the budget holds for the weights is what their buffers take.
    let weights = load("lfm2-tiny-attn-first").vram_bytes();
    let exact = SessionOptions {
        max_context: n,
        all_logits: false,
        ..options()
    };
    let config = lfm_edge::ModelConfig::from_file(&path.join("config.json")).unwrap();
    let need = MemoryPlan::new(&config, weights, u64::MAX / 4, &exact, 1)
        .unwrap()
        .total;

    // Not even the weights: refused before anything is uploaded.
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let file_bytes = lfm_edge::budget::weight_file_bytes(&path).unwrap();
    let err = Model::load_within(&path, gpu.clone(), &VramBudget::new(file_bytes - 1))
        .err()
        .expect("a budget error");
    assert!(matches!(err, Error::Budget { .. }), "{err}");
    assert_eq!(gpu.uploaded_bytes(), 0);

    let budget = VramBudget::new(need);
    let model = Arc::new(Model::load_within(&path, gpu, &budget).unwrap());
    assert_eq!(budget.used(), weights);
    let unbounded = SessionOptions {
        max_context: usize::MAX,
        ..exact.clone()
    };
    let session = Session::new(model.clone(), &unbounded).unwrap();
    assert_eq!(session.max_context(), n);
    assert_eq!(budget.used(), need);
    assert_eq!(budget.used(), weights + session.gpu_bytes());
    let err = Session::new(model.clone(), &unbounded)
        .err()
        .expect("no room left");
    assert!(matches!(err, Error::Budget { .. }), "{err}");
    let err = session.fork().err().expect("no room for a fork");
    assert!(matches!(err, Error::Budget { .. }), "{err}");
    assert_eq!(budget.used(), need);
    drop(session);

    // Room for a second session of half the context: a fork, which needs its
    // parent's, is refused rather than shortened.
    let half = SessionOptions {
        max_context: n / 2,
        ..exact.clone()
    };
    let half_bytes = MemoryPlan::new(&config, 0, u64::MAX / 4, &half, 1)
        .unwrap()
        .total;
    let roomier = VramBudget::new(need + half_bytes);
    let model2 = Arc::new(Model::load_within(&path, common::gpu(), &roomier).unwrap());
    let parent = Session::new(model2.clone(), &exact).unwrap();
    let err = parent.fork().err().expect("a fork shorter than its parent");
    assert!(err.to_string().contains("like its parent"), "{err}");
    assert_eq!(
        Session::new(model2, &unbounded).unwrap().max_context(),
        n / 2
    );
    assert_eq!(budget.used(), weights);

    // A shared pool takes its bytes when made, its sessions only their own.
    let pool = model.kv_pool(KvDtype::F32, blocks_for(n / 2)).unwrap();
    let pool_bytes = KvPool::bytes(&model.config, KvDtype::F32, blocks_for(n / 2));
    assert_eq!(budget.used(), weights + pool_bytes);
    let a = Session::new_in(&pool, model.clone(), &unbounded).unwrap();
    assert_eq!(budget.used(), weights + pool_bytes + a.gpu_bytes());
    drop((a, pool));
    assert_eq!(budget.used(), weights);
}

/// `lfm-edge COMMAND --model FIXTURE --vram-budget BUDGET ARGS…`.
fn within_budget(command: &str, fixture_name: &str, budget: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args([command, "--model"])
        .arg(fixture(fixture_name))
        .args(["--vram-budget", budget])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn info_reports_the_kv_footprint_and_the_context_that_fits() {
    let out = within_budget("info", "lfm2-tiny-conv-first", "4MiB", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2 attention layers · (k + v) · 2 kv heads · 16 dims · 2 bytes.
    assert!(
        stdout.contains("kv cache bytes per token: 256 (f16"),
        "{stdout}"
    );
    assert!(stdout.contains("context that fits: "), "{stdout}");
}

#[test]
fn a_budget_below_the_weights_fails_before_loading() {
    let args = ["--prompt", "Hi", "--max-tokens", "4"];
    let out = within_budget("generate", "lfm2-tiny-conv-first", "100KB", &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("VRAM budget of 100000 bytes"), "{stderr}");
    assert!(stderr.contains("weights alone need"), "{stderr}");
}

#[test]
fn generate_within_a_budget_says_when_the_context_is_full() {
    let run = |overflow: &str| {
        let args = [
            "--prompt",
            "Hi",
            "--max-tokens",
            "80",
            "--ignore-eos",
            "--print-ids",
            "--context-overflow",
            overflow,
        ];
        let out = within_budget("generate", "lfm2-tiny-attn-first", "1100KB", &args);
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let generated = stdout.lines().last().unwrap().split(',').count();
        (generated, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (generated, stderr) = run("error");
    assert!(generated < 80, "{generated}");
    assert!(stderr.contains("is full"), "{stderr}");
    let (generated, stderr) = run("shift");
    assert_eq!(generated, 80);
    assert!(!stderr.contains("is full"), "{stderr}");
}

#[test]
fn phone_limits_on_the_command_line_split_the_weights_alike() {
    let name = "lfm2moe-tiny-fused";
    let ids: Vec<String> = reference(name)
        .prompt_ids
        .iter()
        .map(u32::to_string)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let logits = |file: &str, limits: &[&str]| {
        let out = dir.path().join(file);
        let status = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
            .args(["logits", "--mode", "decode", "--model"])
            .arg(fixture(name))
            // A context small enough for the cache to fit the small buffers too.
            .args(["--tokens", &ids.join(","), "--context", "16", "--out"])
            .arg(&out)
            .args(limits)
            .status()
            .unwrap();
        assert!(status.success(), "{limits:?}");
        lfm_edge::npy::read_f32(&out).unwrap().1
    };
    let whole = logits("whole.npy", &[]);
    let split = logits(
        "split.npy",
        &["--max-buffer", "32KiB", "--max-binding", "16KiB"],
    );
    assert_eq!(max_abs_diff(&whole, &split), 0.0);
}
