//! The command line at its edges: a reader that goes away, a full disk, bytes that are
//! not text, sizes past what a model can hold. Each gives one clean line or a quiet
//! exit, never a panic.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::fixture;

fn lfm_edge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lfm-edge"));
    command.env("RUST_LOG", "warn");
    command
}

fn tiny() -> String {
    fixture("lfm2-tiny-conv-first").display().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `args` with standard output a pipe whose reader is gone before anything is
/// written.
fn into_closed_pipe(args: &[&str]) -> Output {
    let mut child = lfm_edge()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let model = tiny();
    let commands: [&[&str]; 3] = [
        // Without the fix this fills the context, says so, then panics on println.
        &[
            "generate",
            "--model",
            &model,
            "--prompt",
            "x",
            "--max-tokens",
            "1000",
            "--ignore-eos",
            "--context",
            "64",
        ],
        &["tokenize", "--model", &model, "--text", "hello"],
        &["info", "--model", &model],
    ];
    for args in commands {
        let out = into_closed_pipe(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            !err.contains("is full"),
            "{args:?} went on generating: {err}"
        );
    }
}

#[test]
fn a_full_disk_is_one_line_and_status_1() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = lfm_edge()
        .args([
            "generate",
            "--model",
            &tiny(),
            "--prompt",
            "x",
            "--max-tokens",
            "4",
        ])
        .stdout(full)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        ["error: standard output: No space left on device (os error 28)"]
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_chat_line_that_is_not_utf8_is_reported_and_the_chat_goes_on() {
    let mut child = lfm_edge()
        .args(["chat", "--model", &tiny(), "--max-tokens", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hi\n\xff\xfe\nstill here\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    // Four prompts: before each line, and the one Ctrl-D answers.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("> ").count(), 4, "{stdout}");
}

/// Runs a command that must fail with status `code` and a message containing `needle`.
fn expect_failure(args: &[&str], env: &[(&str, &str)], code: i32, needle: &str) {
    let out = lfm_edge()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
}

#[test]
fn sizes_past_the_model_are_refused_before_anything_is_allocated() {
    let model = tiny();
    for tokens in ["18446744073709551615", "1000000000"] {
        expect_failure(
            &["bench", "--model", &model, "--prompt-tokens", tokens],
            &[],
            1,
            "do not fit the model's context of 128000",
        );
    }
    expect_failure(
        &[
            "generate",
            "--model",
            &model,
            "--prompt",
            "x",
            "--max-tokens",
            "1",
            "--context",
            "1099511627776",
        ],
        &[],
        1,
        "--context 1099511627776 is above the model's max_position_embeddings of 128000",
    );
}

#[test]
fn options_that_would_be_ignored_are_refused() {
    let model = tiny();
    expect_failure(
        &[
            "generate",
            "--model",
            &model,
            "--tokens",
            "1,2",
            "--chat",
            "--max-tokens",
            "1",
        ],
        &[],
        2,
        "cannot be used with",
    );
    expect_failure(
        &[
            "trace",
            "--model",
            &model,
            "--tokens",
            "1,2",
            "--out",
            "/tmp/lfm-edge-trace",
            "--reference",
            "/nonexistent",
        ],
        &[],
        1,
        "/nonexistent: no such folder",
    );
    expect_failure(
        &["info", "--model", &model],
        &[("WGPU_BACKEND", "nonsense")],
        1,
        "WGPU_BACKEND=\"nonsense\" names no backend",
    );
    expect_failure(
        &["info", "--model", &model, "--max-buffer", "1"],
        &[],
        1,
        "max_buffer_size of 1 bytes",
    );
}

#[test]
fn a_model_that_is_a_fifo_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    expect_failure(
        &["info", "--model", fifo.to_str().unwrap()],
        &[],
        1,
        "model.gguf: not a regular file or a directory",
    );
}
