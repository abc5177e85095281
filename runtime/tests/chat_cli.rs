//! `lfm-edge chat` and the sampling options of `generate`, through the binary.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::fixture;

fn model() -> String {
    fixture("lfm2-tiny-conv-first")
        .to_string_lossy()
        .into_owned()
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(args)
        .env("RUST_LOG", "lfm_edge=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn chat_turns_reuse_the_cache() {
    let m = model();
    let out = run(
        &[
            "chat",
            "--model",
            &m,
            "--system",
            "Be brief.",
            "--max-tokens",
            "8",
        ],
        "Hello there\n\nAnd once more\n",
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches("> ").count(), 4, "{stdout}");
    // Turn 1 reuses nothing; turn 2 reuses at least the whole of turn 1's prompt.
    let reused: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.split(" reused from the cache").next()?.rsplit('(').next())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(reused.len(), 2, "{stderr}");
    assert_eq!(reused[0], 0, "{stderr}");
    assert!(reused[1] > 10, "{stderr}");
}

#[test]
fn generate_wraps_the_prompt_in_the_chat_template() {
    let m = model();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "generate",
            "--model",
            &m,
            "--prompt",
            "Hi",
            "--max-tokens",
            "6",
        ];
        a.extend(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let call = |extra: &[&'static str]| {
        let a = args(extra);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>(), "")
    };
    let plain = call(&["--ignore-eos", "--print-ids"]);
    let chat = call(&["--chat", "--ignore-eos", "--print-ids"]);
    assert!(
        plain.status.success() && chat.status.success(),
        "{}",
        text(&chat.stderr)
    );
    assert_ne!(text(&plain.stdout), text(&chat.stdout));
    let sampled = call(&[
        "--temperature",
        "0.9",
        "--top-k",
        "40",
        "--top-p",
        "0.9",
        "--min-p",
        "0.05",
        "--repetition-penalty",
        "1.2",
        "--presence-penalty",
        "0.5",
        "--frequency-penalty",
        "0.5",
        "--seed",
        "4",
        "--stop",
        "zz",
    ]);
    assert!(sampled.status.success(), "{}", text(&sampled.stderr));
    let bad = call(&["--top-p", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("top_p"), "{}", text(&bad.stderr));
}
