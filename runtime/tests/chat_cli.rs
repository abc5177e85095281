//! `lfm-edge chat` and the sampling options of `generate`, through the binary.

mod common;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

use common::fixture;

fn model() -> String {
    fixture("lfm2-tiny-conv-first")
        .to_string_lossy()
        .into_owned()
}

/// The binary, its standard streams piped, logging its turns.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(args)
        .env("RUST_LOG", "lfm_edge=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = spawn(args);
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

/// A child's output, collected by a thread as it comes.
#[cfg(unix)]
fn collect(
    mut pipe: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = sink.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            writer.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    sink
}

/// Waits up to a minute for `done` to hold of the collected text.
#[cfg(unix)]
fn wait_for(output: &std::sync::Mutex<Vec<u8>>, what: &str, done: impl Fn(&str) -> bool) {
    let start = std::time::Instant::now();
    while !done(&text(&output.lock().unwrap())) {
        assert!(
            start.elapsed().as_secs() < 60,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(unix)]
fn interrupt(child: &Child) {
    // The shell's own kill: no procps needed.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_answer_not_the_chat() {
    let m = model();
    // An answer that would not end by itself: no token limit worth the name, and a
    // context that shifts instead of filling.
    let mut child = spawn(&[
        "chat",
        "--model",
        &m,
        "--max-tokens",
        "1000000",
        "--context",
        "128",
        "--context-overflow",
        "shift",
    ]);
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Hello there\n").unwrap();
    wait_for(&stdout, "the answer to start", |s| s.len() > 40);
    interrupt(&child);
    wait_for(&stderr, "the answer to stop", |s| {
        s.contains(" generated in ")
    });
    assert!(child.try_wait().unwrap().is_none(), "Ctrl-C ended the chat");

    // The chat goes on: a second turn is answered.
    wait_for(&stdout, "the prompt", |s| s.ends_with("> "));
    let first = stdout.lock().unwrap().len();
    stdin.write_all(b"And again\n").unwrap();
    wait_for(&stdout, "the second answer", |s| s.len() > first + 40);
    interrupt(&child);
    wait_for(&stderr, "the second answer to stop", |s| {
        s.matches(" generated in ").count() == 2
    });
    // At the prompt, Ctrl-C quits.
    wait_for(&stdout, "the prompt", |s| s.ends_with("> "));
    interrupt(&child);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        text(&stderr.lock().unwrap())
    );
}
