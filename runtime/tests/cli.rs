//! The `lfm-edge` command line: its exact contract, and clear errors (never a panic)
//! for every kind of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixture, max_abs_diff, reference, FIXTURES, LOGITS_TOLERANCE};

fn lfm_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(args)
        .output()
        .expect("run lfm-edge")
}

fn ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Runs a command that must fail with a message containing each of `needles`.
fn expect_error(args: &[&str], needles: &[&str]) {
    let out = lfm_edge(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail cleanly: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
}

/// A copy of a fixture's files (not its trace) to break.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    (tmp, dir)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn logits_npy_in_both_modes() {
    let name = FIXTURES[1];
    let r = reference(name);
    let tmp = tempfile::tempdir().unwrap();
    for mode in ["prefill", "decode"] {
        let out = tmp.path().join(format!("{mode}.npy"));
        let tokens = ids(&r.prompt_ids);
        stdout(&lfm_edge(&[
            "logits",
            "--model",
            s(&fixture(name)),
            "--tokens",
            &tokens,
            "--out",
            s(&out),
            "--mode",
            mode,
            // The f16 default is further from HF's f32 cache than the tolerance.
            "--kv-cache",
            "f32",
        ]));
        let (shape, logits) = lfm_edge::npy::read_f32(&out).unwrap();
        assert_eq!(shape, vec![r.prompt_ids.len(), 1024]);
        assert!(
            max_abs_diff(&logits, &r.logits) <= LOGITS_TOLERANCE,
            "{mode}"
        );
    }
}

#[test]
fn generate_prints_greedy_ids_last() {
    let name = FIXTURES[0];
    let r = reference(name);
    let tokens = ids(&r.prompt_ids);
    let out = stdout(&lfm_edge(&[
        "generate",
        "--model",
        s(&fixture(name)),
        "--tokens",
        &tokens,
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "--ignore-eos",
        "--print-ids",
    ]));
    assert_eq!(out.trim_end().lines().last().unwrap(), ids(&r.greedy_ids));
}

#[test]
fn generate_is_reproducible_with_a_seed() {
    let model = fixture(FIXTURES[0]);
    let run = |seed: &str| {
        stdout(&lfm_edge(&[
            "generate",
            "--model",
            s(&model),
            "--prompt",
            "Hello",
            "--max-tokens",
            "12",
            "--temperature",
            "0.8",
            "--seed",
            seed,
            "--ignore-eos",
            "--print-ids",
        ]))
    };
    assert_eq!(run("3"), run("3"));
}

#[test]
fn tokenize_matches_tokenizer_json() {
    let name = FIXTURES[0];
    for t in &reference(name).tokenizations {
        let out = stdout(&lfm_edge(&[
            "tokenize",
            "--model",
            s(&fixture(name)),
            "--text",
            &t.text,
        ]));
        assert_eq!(out.trim_end(), ids(&t.ids), "{:?}", t.text);
    }
}

#[test]
fn info_describes_model_and_adapter() {
    let out = stdout(&lfm_edge(&["info", "--model", s(&fixture(FIXTURES[0]))]));
    for needle in [
        "lfm2",
        "ccAcAc",
        "parameters: ",
        "weight bytes: ",
        "adapter: ",
        "max_storage_buffer_binding_size",
    ] {
        assert!(out.contains(needle), "{needle:?} not in {out}");
    }
}

/// `--sums`, `--matvec-launch`, `--prefill-launch` and `--key-ranges` choose how the
/// kernels run; `info` says which, and the picks' chunks.
#[test]
fn info_names_the_sums_and_launch_chosen() {
    let model = fixture(FIXTURES[0]);
    let out = stdout(&lfm_edge(&[
        "info",
        "--model",
        s(&model),
        "--sums",
        "workgroup",
        "--matvec-launch",
        "64,8,2",
        "--prefill-launch",
        "16,2,8",
        "--key-ranges",
        "4,128",
    ]));
    assert!(
        out.contains("Workgroup sums") && out.contains("matvec launch 64/8/2"),
        "{out}"
    );
    assert!(out.contains("prefill 16/2/8,"), "{out}");
    let tiled = stdout(&lfm_edge(&[
        "info",
        "--model",
        s(&model),
        "--prefill-launch",
        "tiled",
    ]));
    assert!(tiled.contains("prefill tiled,"), "{tiled}");
    assert!(out.contains("picks over chunks of "), "{out}");
    assert!(
        out.contains("attention over up to 4 key ranges of multiples of 128 keys"),
        "{out}"
    );
    let model = s(&model);
    expect_error(
        &["info", "--model", model, "--key-ranges", "9,64"],
        &["key ranges must be 1 to KeyRanges::MOST"],
    );
    expect_error(
        &["info", "--model", model, "--prefill-launch", "32,5,8"],
        &["prefill blocks must be 1 to 4 rows"],
    );
}

/// `bench --depth` starts each run from a cache already holding that many tokens, and
/// says so; with key ranges small enough, its decoded tokens split their keys.
#[test]
fn bench_runs_at_a_depth() {
    let model = fixture(FIXTURES[0]);
    let out = stdout(&lfm_edge(&[
        "bench",
        "--model",
        s(&model),
        "--depth",
        "40",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--repeat",
        "1",
        "--key-ranges",
        "4,8",
    ]));
    for key in ["prefill tok/s", "decode tok/s"] {
        let line = out.lines().find(|l| l.starts_with(key)).unwrap();
        assert!(line.ends_with("runs, at depth 40)"), "{line}");
    }
}

#[test]
fn missing_model_directory() {
    expect_error(
        &["info", "--model", "/nonexistent/model"],
        &["/nonexistent/model: no such model file or directory"],
    );
}

#[test]
fn unknown_model_type() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"lfm2\"", "\"mamba\""),
    )
    .unwrap();
    expect_error(&["info", "--model", s(&dir)], &["config.json", "\"mamba\""]);
}

/// Rewrites the fixture's safetensors file through `edit(name, shape) -> new shape or drop`.
fn rewrite_tensors(dir: &Path, edit: impl Fn(&str, &[usize]) -> Option<Vec<usize>>) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            let shape = edit(&name, view.shape())?;
            let view =
                safetensors::tensor::TensorView::new(view.dtype(), shape, view.data()).unwrap();
            Some((name, view))
        })
        .collect();
    safetensors::serialize_to_file(kept, None, &path).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    let gone = "model.layers.3.feed_forward.w2.weight";
    rewrite_tensors(&dir, |name, shape| (name != gone).then(|| shape.to_vec()));
    expect_error(&["info", "--model", s(&dir)], &[gone, "missing"]);
}

#[test]
fn misshapen_tensor_is_named() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    let bad = "model.layers.0.ffn_norm.weight";
    rewrite_tensors(&dir, |name, shape| {
        Some(if name == bad {
            vec![32, 2]
        } else {
            shape.to_vec()
        })
    });
    expect_error(
        &["info", "--model", s(&dir)],
        &[bad, "[32, 2]", "expected [64]"],
    );
}

#[test]
fn truncated_safetensors() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    let path = dir.join("model.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    expect_error(&["info", "--model", s(&dir)], &["model.safetensors"]);
}

#[test]
fn missing_shard() {
    let (_tmp, dir) = copy_fixture(FIXTURES[1]);
    std::fs::remove_file(dir.join("model-00003-of-00004.safetensors")).unwrap();
    expect_error(
        &["info", "--model", s(&dir)],
        &["model-00003-of-00004.safetensors"],
    );
}

#[test]
fn token_id_out_of_vocab() {
    let model = fixture(FIXTURES[0]);
    let args = [
        "logits",
        "--model",
        s(&model),
        "--tokens",
        "1,2,1024",
        "--out",
        "/dev/null",
    ];
    expect_error(&args, &["1024", "vocab_size is 1024"]);
}

#[test]
fn empty_prompt() {
    let model = fixture(FIXTURES[0]);
    expect_error(
        &[
            "generate",
            "--model",
            s(&model),
            "--prompt",
            "",
            "--max-tokens",
            "4",
        ],
        &["empty"],
    );
    expect_error(
        &[
            "logits",
            "--model",
            s(&model),
            "--tokens",
            "",
            "--out",
            "/dev/null",
        ],
        &["empty"],
    );
}

#[test]
fn moe_info_reports_active_parameters() {
    let out = stdout(&lfm_edge(&["info", "--model", s(&fixture("lfm2moe-tiny"))]));
    for needle in [
        "lfm2_moe",
        "experts: 8 per MoE layer, top 3",
        "active parameters per token: ",
    ] {
        assert!(out.contains(needle), "{needle:?} not in {out}");
    }
}

fn with_num_experts(name: &str, n: usize) -> (tempfile::TempDir, PathBuf) {
    let (tmp, dir) = copy_fixture(name);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config = config.replace("\"num_experts\": 8", &format!("\"num_experts\": {n}"));
    std::fs::write(dir.join("config.json"), config).unwrap();
    (tmp, dir)
}

#[test]
fn moe_expert_count_must_match_the_tensors() {
    let (_tmp, fewer) = with_num_experts("lfm2moe-tiny", 6);
    expect_error(
        &["info", "--model", s(&fewer)],
        &["experts.6.w1.weight", "num_experts is 6"],
    );
    let (_tmp, more) = with_num_experts("lfm2moe-tiny", 10);
    expect_error(
        &["info", "--model", s(&more)],
        &["experts.8.w1.weight", "missing"],
    );
    let (_tmp, fused) = with_num_experts("lfm2moe-tiny-fused", 6);
    expect_error(
        &["info", "--model", s(&fused)],
        &["gate_up_proj", "expected [6, 64, 64]"],
    );
}

#[test]
fn gguf_file_runs_every_command() {
    let model = fixture("gguf/lfm2-tiny-kquant-Q4_K_M.gguf");
    let out = stdout(&lfm_edge(&["info", "--model", s(&model)]));
    for needle in ["architecture: lfm2", "Q4_K: ", "Q6_K: ", "f32: "] {
        assert!(out.contains(needle), "{needle:?} not in {out}");
    }
    for t in &reference(FIXTURES[0]).tokenizations {
        let out = stdout(&lfm_edge(&[
            "tokenize",
            "--model",
            s(&model),
            "--text",
            &t.text,
        ]));
        assert_eq!(out.trim_end(), ids(&t.ids), "{:?}", t.text);
    }
    let out = stdout(&lfm_edge(&[
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "Hello",
        "--max-tokens",
        "4",
        "--ignore-eos",
        "--print-ids",
    ]));
    assert_eq!(out.trim_end().lines().last().unwrap().split(',').count(), 4);
}

#[test]
fn truncated_gguf_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cut.gguf");
    let bytes = std::fs::read(fixture("gguf/lfm2-tiny-conv-first-Q8_0.gguf")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(&["info", "--model", s(&path)], &["cut.gguf"]);
}

#[test]
fn bench_reports_speed_bandwidth_and_memory() {
    for (name, moe) in [(FIXTURES[0], false), ("lfm2moe-tiny", true)] {
        let model = fixture(name);
        let args = ["--prompt-tokens", "8", "--gen-tokens", "4", "--repeat", "2"];
        let out = stdout(&lfm_edge(
            &[&["bench", "--model", s(&model)][..], &args].concat(),
        ));
        let value = |key: &str| -> f64 {
            let line = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")));
            let line = line.unwrap_or_else(|| panic!("no {key:?} in {out}"));
            line.split_whitespace().next().unwrap().parse().unwrap()
        };
        for key in [
            "prefill tok/s",
            "decode tok/s",
            "probe GB/s",
            "matvec probe GB/s",
        ] {
            assert!(value(key) > 0.0, "{key} in {out}");
        }
        // Over a matrix of the model's main weight type (the fixtures' f32 or bf16).
        let probe = out.lines().find(|l| l.starts_with("matvec probe GB/s: "));
        assert!(
            probe.is_some_and(|l| l.contains(" matrix of ") && l.contains(" × 4096")),
            "{out}"
        );
        assert!(value("decode GB/s") >= 0.0, "{out}");
        assert!(out.contains("adapter: "), "{out}");
        // Tied embeddings are read whole as the head; a MoE token skips idle experts.
        let info = stdout(&lfm_edge(&["info", "--model", s(&model)]));
        let weights = info
            .lines()
            .find_map(|l| l.strip_prefix("weight bytes: "))
            .unwrap()
            .parse::<f64>()
            .unwrap();
        let per_token = value("weight bytes per decoded token");
        match moe {
            true => assert!(per_token < weights, "{per_token} of {weights}"),
            false => assert_eq!(per_token, weights),
        }
        assert!(value("peak VRAM allocated") > weights, "{out}");
    }
    expect_error(
        &[
            "bench",
            "--model",
            s(&fixture(FIXTURES[0])),
            "--repeat",
            "0",
        ],
        &["one repeat"],
    );
}

#[test]
fn bench_profile_times_each_kernel_family() {
    let model = fixture("lfm2moe-tiny");
    let out = stdout(&lfm_edge(&[
        "bench",
        "--model",
        s(&model),
        "--prompt-tokens",
        "4",
        "--gen-tokens",
        "3",
        "--repeat",
        "1",
        "--profile",
    ]));
    let (out, prefill) = out.split_once("prefill profile:").expect(&out);
    // | family | dispatches/token | µs/token | % | weight GB/s |
    let table = |text: &str| -> Vec<(String, usize, f64)> {
        (text.lines())
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let dispatches = cells.get(2)?.parse().ok()?;
                Some((cells[1].to_string(), dispatches, cells[3].parse().ok()?))
            })
            .collect()
    };
    let rows = table(out);
    // Every projection has a weight rate; nothing else has.
    for line in out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("family"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let rate = cells.get(5).and_then(|c| c.parse::<f64>().ok());
        let projection = cells[1].starts_with("Matvec");
        assert_eq!(rate.is_some_and(|r| r >= 0.0), projection, "{line}");
    }
    let dispatches = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1);
    assert!(rows.iter().all(|r| r.2 >= 0.0), "{out}");
    let total: usize = rows.iter().filter(|r| r.0 != "kernels").map(|r| r.1).sum();
    assert_eq!(dispatches("kernels"), Some(total), "{out}");
    // Three MoE layers, each routed in one launch and its experts in two: gate and up
    // rows of one stack in one, SwiGLU with them, and the down projection with the
    // combine. The two dense layers' gate and up rows take one launch, SwiGLU too, and
    // no norm takes a launch of its own (the final one is the head's).
    assert_eq!(dispatches("MoeRouteToken"), Some(3), "{out}");
    assert_eq!(dispatches("MoeRoute"), None, "{out}");
    assert_eq!(dispatches("Matvec feed_forward.gate"), None, "{out}");
    for (experts, launches) in [("w1+w3", Some(3)), ("w2", Some(3)), ("w3", None)] {
        let name = format!("Matvec feed_forward.experts.{experts}");
        assert_eq!(dispatches(&name), launches, "{out}");
    }
    assert_eq!(dispatches("MoeCombine"), None, "{out}");
    assert_eq!(dispatches("SwiGlu"), None, "{out}");
    assert_eq!(dispatches("Matvec feed_forward.w1+w3"), Some(2), "{out}");
    assert_eq!(dispatches("RmsNorm"), None, "{out}");
    // Each of the two attention layers takes one launch for its q, k and v projections,
    // and one for RoPE, the KV store and the attention; each of the three conv layers
    // one for its in_proj and conv.
    assert_eq!(dispatches("RopeAttention"), Some(2), "{out}");
    assert_eq!(dispatches("Attention"), None, "{out}");
    assert_eq!(dispatches("Rope"), None, "{out}");
    assert_eq!(dispatches("MatvecConv conv.in_proj"), Some(3), "{out}");
    assert_eq!(dispatches("ShortConvToken"), None, "{out}");
    let qkv = |name| dispatches(&format!("Matvec self_attn.{name}"));
    assert_eq!(qkv("q_proj+k_proj+v_proj"), Some(2), "{out}");
    for apart in ["q_proj", "k_proj", "v_proj"] {
        assert_eq!(qkv(apart), None, "{out}");
    }
    for line in [
        "profile: 3 decoded tokens",
        "token µs: ",
        "pick µs: ",
        "launch µs: ",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }

    // The prompt's batch: | family | dispatches/batch | µs/batch | % |, its launches
    // as a batch takes them (routing and the slot lists, matmuls, the norms).
    assert!(
        prefill.starts_with(" a batch of 4 prompt tokens"),
        "{prefill}"
    );
    assert!(prefill.contains("batch µs: "), "{prefill}");
    let rows = table(prefill);
    assert!(rows.iter().all(|r| r.2 >= 0.0), "{prefill}");
    let total: usize = rows.iter().filter(|r| r.0 != "kernels").map(|r| r.1).sum();
    let dispatches = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1);
    assert_eq!(dispatches("kernels"), Some(total), "{prefill}");
    for kernel in ["MoeRoute", "MoeLists", "MoeCombine"] {
        assert_eq!(dispatches(kernel), Some(3), "{prefill}");
    }
    let matmuls = |weight: &str| -> usize {
        (rows.iter())
            .filter(|r| r.0.starts_with("Matmul") && r.0.ends_with(weight))
            .map(|r| r.1)
            .sum()
    };
    // Gate and up rows of a stack: a launch each.
    assert_eq!(matmuls(" feed_forward.experts.w1+w3"), 6, "{prefill}");
    assert_eq!(matmuls(" feed_forward.experts.w2"), 3, "{prefill}");
    assert_eq!(dispatches("Attention"), Some(2), "{prefill}");
}

/// Fails unless `lfm-edge args` ends within 20 s; for inputs that once hung the loader
/// or exhausted memory (the child is killed, and the test fails, instead of hanging).
fn ends_in_time(args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run lfm-edge");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} still running after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `expect_error`, after checking that the command ends in time.
fn expect_error_in_time(args: &[&str], needles: &[&str]) {
    ends_in_time(args);
    expect_error(args, needles);
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, json.to_string()).unwrap();
}

#[test]
fn a_billion_layers_are_refused_before_anything_is_allocated() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    edit_json(&dir.join("config.json"), |c| {
        c["num_hidden_layers"] = 1_000_000_000.into();
        c.as_object_mut().unwrap().remove("layer_types");
    });
    expect_error_in_time(
        &["info", "--model", s(&dir)],
        &["config.json", "num_hidden_layers is 1000000000"],
    );
}

#[test]
fn layer_count_must_match_the_checkpoint() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    edit_json(&dir.join("config.json"), |c| {
        c["num_hidden_layers"] = 5.into();
        c["layer_types"].as_array_mut().unwrap().pop();
    });
    expect_error(
        &["info", "--model", s(&dir)],
        &["model.safetensors", "6 layers", "the config has 5"],
    );
}

/// A chat template through `generate --chat`, with `template` as its source.
fn chat_with_template(template: &str, needles: &[&str]) -> String {
    let (tmp, dir) = copy_fixture(FIXTURES[0]);
    edit_json(&dir.join("tokenizer_config.json"), |c| {
        c["chat_template"] = template.into();
    });
    let args = [
        "generate",
        "--model",
        s(&dir),
        "--chat",
        "--prompt",
        "Hi",
        "--max-tokens",
        "2",
    ];
    expect_error_in_time(&args, needles);
    let stderr = String::from_utf8(lfm_edge(&args).stderr).unwrap();
    drop(tmp);
    stderr
}

#[test]
fn chat_templates_that_run_too_long_are_stopped() {
    let nested = "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}\
                  {% endfor %}{% endfor %}";
    let silent = "{% for i in range(100000) %}{% for j in range(100000) %}\
                  {% endfor %}{% endfor %}";
    let doubling = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}\
                    {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}";
    for template in [nested, silent, doubling] {
        chat_with_template(template, &["the chat template ran too long"]);
    }
}

#[test]
fn chat_template_syntax_errors_take_one_short_line() {
    let template = format!("{}{{% for m in messages %}}", "x".repeat(400_000));
    let stderr = chat_with_template(
        &template,
        &["tokenizer_config.json", "syntax error", "line 1"],
    );
    // The log lines before it aside, the error is the last line, and a short one.
    let (_, error) = stderr.split_once("error: ").unwrap();
    assert_eq!(error.trim_end().lines().count(), 1, "{error}");
    assert!(error.len() < 300, "{} bytes: {error}", error.len());
}

/// Replaces `file` in `dir` with a FIFO, which no writer will ever open.
fn make_fifo(dir: &Path, file: &str) -> PathBuf {
    let path = dir.join(file);
    let _ = std::fs::remove_file(&path);
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success());
    path
}

#[test]
fn model_files_that_are_fifos_are_refused() {
    for (fixture_name, file) in [
        (FIXTURES[0], "config.json"),
        (FIXTURES[0], "tokenizer.json"),
        (FIXTURES[0], "tokenizer_config.json"),
        (FIXTURES[0], "model.safetensors"),
        (FIXTURES[1], "model.safetensors.index.json"),
        (FIXTURES[1], "model-00002-of-00004.safetensors"),
    ] {
        let (_tmp, dir) = copy_fixture(fixture_name);
        make_fifo(&dir, file);
        expect_error_in_time(&["info", "--model", s(&dir)], &[file, "not a regular file"]);
    }
    // Neither a file nor a folder: refused (the GGUF reader's own check is in gguf.rs).
    let tmp = tempfile::tempdir().unwrap();
    let gguf = make_fifo(tmp.path(), "model.gguf");
    expect_error_in_time(&["info", "--model", s(&gguf)], &["model.gguf"]);
}

/// Padding or truncation in tokenizer.json is ignored, as transformers ignores it
/// unless asked: a fixed padding length would otherwise size every encoding.
#[test]
fn tokenizer_json_padding_and_truncation_are_ignored() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    edit_json(&dir.join("tokenizer.json"), |t| {
        t["padding"] = serde_json::json!({
            "strategy": {"Fixed": 1_000_000_000_000_000u64}, "direction": "Right",
            "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "<|pad|>"
        });
        t["truncation"] = serde_json::json!({
            "direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 0
        });
    });
    let tokenize = |model: &Path| {
        stdout(&lfm_edge(&[
            "tokenize",
            "--model",
            s(model),
            "--text",
            "Hello there",
        ]))
    };
    assert_eq!(tokenize(&dir), tokenize(&fixture(FIXTURES[0])));
}

/// A syntax error inside tokenizer.json's decoder once panicked in the tokenizers crate
/// (found by the tokenizer_json fuzz target).
#[test]
fn tokenizer_json_syntax_errors_are_errors() {
    let (_tmp, dir) = copy_fixture(FIXTURES[0]);
    let path = dir.join("tokenizer.json");
    let json = std::fs::read_to_string(&path).unwrap();
    let broken = json.replacen("\"decoder\": {", "\"decoder\": {1: 2, ", 1);
    assert_ne!(broken, json);
    std::fs::write(&path, broken).unwrap();
    expect_error(
        &["tokenize", "--model", s(&dir), "--text", "Hi"],
        &["tokenizer.json", "key must be a string"],
    );
}

/// A post-processor template naming a special token it does not define once loaded,
/// then panicked in the tokenizers crate on the first encoding (found by the
/// tokenizer_json fuzz target).
#[test]
fn tokenizer_json_template_with_an_undefined_token_is_refused() {
    // With its "type", and without (tokenizers reads the template all the same).
    for type_key in ["type", "no type"] {
        let (_tmp, dir) = copy_fixture(FIXTURES[0]);
        edit_json(&dir.join("tokenizer.json"), |t| {
            let processor = t["post_processor"].as_object_mut().unwrap();
            let kind = processor.remove("type").unwrap();
            processor.insert(type_key.into(), kind);
            t["post_processor"]["single"][0]["SpecialToken"]["id"] = "<|nowhere|>".into();
        });
        expect_error(
            &["tokenize", "--model", s(&dir), "--text", "Hi"],
            &["tokenizer.json", "\"<|nowhere|>\""],
        );
    }
}
