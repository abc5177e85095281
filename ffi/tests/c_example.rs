//! examples/c/generate.c, built with the system C compiler against lfm_edge.h and the
//! cdylib, streams the same continuations as the CLI: greedy (the HF reference) from a
//! folder and from quantized GGUF files, and sampled with every option.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{
    compile_c, fixture, gguf_fixture, join_ids, reference, repo_root, run, GGUF_FIXTURES,
};
use lfm_edge::{GenerateOptions, LoadOptions, Model, SamplerConfig, Session, SessionOptions};

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

/// Runs the example on the fixture folder; returns the streamed text and the ids of
/// its last line.
fn generate(args: &[&str]) -> (String, String) {
    generate_with(&fixture(), args)
}

fn generate_with(model: &std::path::Path, args: &[&str]) -> (String, String) {
    let output = run(Command::new(example()).arg(model).args(args));
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

#[test]
fn quantized_gguf_files_stream_the_greedy_reference() {
    for name in GGUF_FIXTURES {
        let f = gguf_fixture(name);
        let tokens = join_ids(&f.prompt_ids);
        let args = ["--tokens", &tokens, "--max-tokens", "24", "--ignore-eos"];
        let (_, ids) = generate_with(&f.path, &args);
        assert_eq!(ids, join_ids(&f.greedy_ids), "{name}");
    }
}

/// What the library's generation loop (the CLI's) samples with `sampler`.
fn library_ids(model: &std::path::Path, prompt: &[u32], sampler: SamplerConfig) -> Vec<u32> {
    let model = Model::open(model.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let mut session = Session::new(model, &SessionOptions::default()).unwrap();
    let logits = session.feed(prompt).unwrap();
    let options = GenerateOptions {
        max_tokens: 16,
        sampler,
        stop_strings: Vec::new(),
        ignore_eos: true,
        constraint: None,
    };
    lfm_edge::generate(&mut session, logits, &options, |_| lfm_edge::Flow::Continue)
        .unwrap()
        .tokens
}

#[test]
fn every_sampling_option_reaches_the_library() {
    let f = gguf_fixture(GGUF_FIXTURES[1]);
    let tokens = join_ids(&f.prompt_ids);
    let hot = SamplerConfig {
        temperature: 1.5,
        seed: 7,
        ..SamplerConfig::default()
    };
    let greedy = SamplerConfig::default();
    let configs = [
        (vec!["--temperature", "1.5", "--seed", "7"], hot.clone()),
        // Each of these keeps only the most likely token: greedy again, when it arrives.
        (
            vec!["--temperature", "1.5", "--top-k", "1"],
            SamplerConfig {
                top_k: 1,
                ..hot.clone()
            },
        ),
        (
            vec!["--temperature", "1.5", "--top-p", "0.001"],
            SamplerConfig {
                top_p: 0.001,
                ..hot.clone()
            },
        ),
        (
            vec!["--temperature", "1.5", "--min-p", "1"],
            SamplerConfig {
                min_p: 1.0,
                ..hot.clone()
            },
        ),
        // These forbid what the context holds: no token twice, none from the prompt.
        (
            vec!["--presence-penalty", "1000"],
            SamplerConfig {
                presence_penalty: 1000.0,
                ..greedy.clone()
            },
        ),
        (
            vec!["--frequency-penalty", "1000"],
            SamplerConfig {
                frequency_penalty: 1000.0,
                ..greedy.clone()
            },
        ),
        (
            vec!["--presence-penalty", "1000", "--penalty-window", "1"],
            SamplerConfig {
                presence_penalty: 1000.0,
                penalty_window: 1,
                ..greedy.clone()
            },
        ),
        (
            vec!["--repetition-penalty", "1.5"],
            SamplerConfig {
                repetition_penalty: 1.5,
                ..greedy
            },
        ),
    ];
    let greedy_16 = join_ids(&f.greedy_ids[..16]);
    for (i, (flags, sampler)) in configs.into_iter().enumerate() {
        let mut args = vec!["--tokens", &tokens, "--max-tokens", "16", "--ignore-eos"];
        args.extend(&flags);
        let (_, ids) = generate_with(&f.path, &args);
        let want = library_ids(&f.path, &f.prompt_ids, sampler);
        assert_eq!(ids, join_ids(&want), "{flags:?}");
        match i {
            0 => assert_ne!(ids, greedy_16),
            1..=3 => assert_eq!(ids, greedy_16, "{flags:?}"),
            4 | 5 => {
                let mut seen: Vec<u32> = f.prompt_ids.clone();
                for id in &want {
                    assert!(!seen.contains(id), "{flags:?}: {id} again in {want:?}");
                    seen.push(*id);
                }
            }
            6 => assert!(want.windows(2).all(|w| w[0] != w[1]), "{want:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_stop_string_ends_the_generation_unprinted() {
    let r = reference();
    let tokens = join_ids(&r.prompt_ids);
    let tokenizer = lfm_edge::Tokenizer::from_dir(&fixture()).unwrap();
    let full = tokenizer.decode(&r.greedy_ids, true).unwrap();
    // A stop string from the middle of the greedy text.
    let middle = full.char_indices().nth(full.chars().count() / 2).unwrap().0;
    let stop: String = full[middle..].chars().take(2).collect();
    let args = [
        "--tokens",
        &tokens,
        "--max-tokens",
        "24",
        "--ignore-eos",
        "--stop",
        &stop,
    ];
    let (text, _) = generate(&args);
    let expected = &full[..full.find(&stop).unwrap()];
    assert_eq!(text, expected);
}
