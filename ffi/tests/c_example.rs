//! examples/c/generate.c, built with the system C compiler against lfm_edge.h and the
//! cdylib, streams the same greedy continuation as the CLI (the HF reference).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{compile_c, fixture, join_ids, reference, repo_root, run};

fn example() -> &'static PathBuf {
    static EXAMPLE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &EXAMPLE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let exe = dir.path().join("generate");
            compile_c(&[repo_root().join("examples/c/generate.c")], &exe);
            (dir, exe)
        })
        .1
}

/// Runs the example; returns the streamed text and the ids of its last line.
fn generate(args: &[&str]) -> (String, String) {
    let output = run(Command::new(example()).arg(fixture()).args(args));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let body = stdout.strip_suffix('\n').expect("a final newline");
    let (text, ids) = body.rsplit_once('\n').expect("the ids on the last line");
    (text.to_string(), ids.to_string())
}

#[test]
fn streams_the_greedy_reference_from_token_ids() {
    let r = reference();
    let tokens = join_ids(&r.prompt_ids);
    let (text, ids) = generate(&["--tokens", &tokens, "--max-tokens", "24", "--ignore-eos"]);
    assert_eq!(ids, join_ids(&r.greedy_ids));
    // The streamed text is what the CLI prints: the decoded ids, no UTF-8 split lost.
    let tokenizer = lfm_edge::Tokenizer::from_dir(&fixture()).unwrap();
    assert_eq!(text, tokenizer.decode(&r.greedy_ids, true).unwrap());
}

#[test]
fn a_text_prompt_is_tokenized_with_bos_like_the_cli() {
    let r = reference();
    let (_, ids) = generate(&[
        "--prompt",
        &r.prompt_text,
        "--max-tokens",
        "24",
        "--ignore-eos",
    ]);
    assert_eq!(ids, join_ids(&r.greedy_ids));
}

#[test]
fn chats_for_several_turns() {
    let (text, ids) = generate(&["--chat", "Hi!", "--chat", "And then?", "--max-tokens", "6"]);
    assert!(
        text.starts_with("> Hi!\n") && text.contains("\n> And then?\n"),
        "{text}"
    );
    assert!(!ids.is_empty());
}
