//! Sessions beyond feeding: reuse of a cached prefix, rewind, fork, save and restore,
//! context overflow, the f16 cache, and the generation loop.

mod common;

use std::sync::Arc;

use common::{fixture, gpu, load, max_abs_diff, reference, tokens, FIXTURES};
use lfm_edge::{
    generate, ContextOverflow, Error, Flow, GenerateOptions, KvDtype, Model, Piece, Sampler,
    SamplerConfig, Session, SessionOptions, StopReason, TokenStream,
};

/// Two runs of the runtime that batch the same tokens differently agree this closely.
const SAME: f32 = 1e-4;

/// f32 cache, small batches and snapshots every 8 tokens, so short sequences cross
/// many batch and snapshot boundaries.
fn options() -> SessionOptions {
    SessionOptions {
        kv_dtype: KvDtype::F32,
        batch: 16,
        snapshot_interval: 8,
        max_context: 256,
        ..SessionOptions::default()
    }
}

fn fresh_logits(model: &Arc<Model>, options: &SessionOptions, ids: &[u32]) -> Vec<f32> {
    Session::new(model.clone(), options)
        .unwrap()
        .feed(ids)
        .unwrap()
}

fn check(case: &str, got: &[f32], want: &[f32], tolerance: f32) {
    let err = max_abs_diff(got, want);
    eprintln!("{case}: max abs difference {err:.2e}");
    assert!(err <= tolerance, "{case}: {err} > {tolerance}");
}

#[test]
fn a_new_turn_feeds_only_what_it_adds() {
    for name in FIXTURES {
        let model = load(name);
        let all = tokens(70, 1);
        let want = fresh_logits(&model, &options(), &all);
        let mut session = Session::new(model, &options()).unwrap();
        session.prefill(&all[..29]).unwrap();
        // The second turn shares 29 tokens, then diverges from what the cache holds.
        let mut turn2 = all[..29].to_vec();
        turn2.extend(tokens(12, 2));
        session.prefill(&turn2).unwrap();
        let got = session.prefill(&all).unwrap();
        assert_eq!(session.tokens(), &all[..]);
        check(&format!("{name} prefill reuse"), &got, &want, SAME);
    }
}

#[test]
fn a_turn_that_extends_the_cache_feeds_only_its_new_tokens() {
    let model = load(FIXTURES[0]);
    let all = tokens(70, 3);
    let want = fresh_logits(&model, &options(), &all);
    let mut session = Session::new(model, &options()).unwrap();
    session.prefill(&all[..29]).unwrap();
    // All 29 are kept, though the last snapshot is at 24: the conv state is at 29.
    assert_eq!(session.reusable_prefix(&all), 29);
    // The same prompt again: its last token is fed again, from the snapshot at 24.
    assert_eq!(session.reusable_prefix(&all[..29]), 24);
    // A prompt that departs at 27: back to the snapshot at 24; one that departs at
    // once: nothing.
    let mut other = all[..27].to_vec();
    other.extend(tokens(5, 4));
    assert_eq!(session.reusable_prefix(&other), 24);
    assert_eq!(session.reusable_prefix(&tokens(40, 5)[1..]), 0);
    let got = session.prefill(&all).unwrap();
    assert_eq!(session.tokens(), &all[..]);
    check("prefill after the cache's end", &got, &want, SAME);
}

#[test]
fn rewind_then_refeed_gives_the_same_logits() {
    for name in FIXTURES {
        let model = load(name);
        let all = tokens(45, 3);
        let mut session = Session::new(model.clone(), &options()).unwrap();
        let want = session.feed(&all).unwrap();
        // Before, on and after snapshot boundaries, and back to the start.
        for to in [44, 40, 33, 32, 31, 7, 1, 0] {
            session.rewind(to).unwrap();
            assert_eq!(session.position(), to);
            let got = session.feed(&all[to..]).unwrap();
            check(&format!("{name} rewind to {to}"), &got, &want, SAME);
        }
        assert!(session.rewind(46).is_err());
    }
}

#[test]
fn rewind_reaches_snapshots_at_the_default_interval() {
    let model = load(FIXTURES[0]);
    let options = SessionOptions {
        kv_dtype: KvDtype::F32,
        ..SessionOptions::default()
    };
    let all = tokens(300, 4);
    let mut session = Session::new(model, &options).unwrap();
    let want = session.feed(&all).unwrap();
    for to in [299, 256, 200, 130] {
        session.rewind(to).unwrap();
        let got = session.feed(&all[to..]).unwrap();
        check(
            &format!("default interval, rewind to {to}"),
            &got,
            &want,
            SAME,
        );
    }
}

#[test]
fn a_fork_goes_its_own_way() {
    let model = load(FIXTURES[1]);
    let (shared, a, b) = (tokens(21, 5), tokens(9, 6), tokens(14, 7));
    let mut original = Session::new(model.clone(), &options()).unwrap();
    original.feed(&shared).unwrap();
    let mut fork = original.fork().unwrap();
    let got_a = original.feed(&a).unwrap();
    let got_b = fork.feed(&b).unwrap();
    let with = |tail: &[u32]| [&shared[..], tail].concat();
    check(
        "original",
        &got_a,
        &fresh_logits(&model, &options(), &with(&a)),
        SAME,
    );
    check(
        "fork",
        &got_b,
        &fresh_logits(&model, &options(), &with(&b)),
        SAME,
    );
    // The fork's snapshots came along: it can rewind into the shared part.
    fork.rewind(17).unwrap();
    let got = fork.feed(&with(&b)[17..]).unwrap();
    check(
        "fork rewound",
        &got,
        &fresh_logits(&model, &options(), &with(&b)),
        SAME,
    );
}

#[test]
fn saved_state_restores_in_a_fresh_model() {
    for name in FIXTURES {
        let all = tokens(30, 8);
        let mut session = Session::new(load(name), &options()).unwrap();
        session.feed(&all[..27]).unwrap();
        let saved = session.save_state().unwrap();
        let want = session.feed(&all[27..]).unwrap();

        let fresh_model = Arc::new(Model::load(&fixture(name), gpu()).unwrap());
        let mut restored = Session::new(fresh_model, &options()).unwrap();
        restored.restore_state(&saved).unwrap();
        assert_eq!(restored.tokens(), &all[..27]);
        let got = restored.feed(&all[27..]).unwrap();
        check(&format!("{name} restored"), &got, &want, SAME);
        // Snapshots came along too.
        restored.rewind(10).unwrap();
        let got = restored.feed(&all[10..]).unwrap();
        check(&format!("{name} restored, rewound"), &got, &want, SAME);
    }
}

#[test]
fn saved_state_goes_through_a_file() {
    let model = load(FIXTURES[2]);
    let all = tokens(12, 9);
    let mut session = Session::new(model.clone(), &options()).unwrap();
    session.feed(&all[..11]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.lfmsession");
    session.save_file(&path).unwrap();
    let want = session.feed(&all[11..]).unwrap();
    let mut restored = Session::new(model, &options()).unwrap();
    restored.restore_file(&path).unwrap();
    check("file", &restored.feed(&all[11..]).unwrap(), &want, SAME);
}

#[test]
fn saved_state_refuses_another_model_or_cache() {
    let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
    session.feed(&tokens(5, 10)).unwrap();
    let saved = session.save_state().unwrap();
    let expect = |result: lfm_edge::Result<()>, needle: &str| match result {
        Err(e @ Error::SessionFile { .. }) => {
            assert!(e.to_string().contains(needle), "{needle:?} not in {e}")
        }
        other => panic!("expected a session file error, got {other:?}"),
    };
    let mut other = Session::new(load(FIXTURES[1]), &options()).unwrap();
    expect(other.restore_state(&saved), "another model");
    let f16 = SessionOptions {
        kv_dtype: KvDtype::F16,
        ..options()
    };
    let mut same_model_f16 = Session::new(load(FIXTURES[0]), &f16).unwrap();
    expect(
        same_model_f16.restore_state(&saved),
        "KV cache of another type",
    );
    let mut same = Session::new(load(FIXTURES[0]), &options()).unwrap();
    expect(same.restore_state(&saved[..saved.len() - 3]), "truncated");
    expect(
        same.restore_state(b"not a session"),
        "not an lfm-edge session",
    );
}

#[test]
fn a_full_context_errors_or_shifts() {
    // A hybrid model, and one whose RoPE is YaRN with an attention temperature.
    for name in ["lfm2-tiny-conv-first", "ministral3-tiny"] {
        full_context_errors_or_shifts(name);
    }
}

fn full_context_errors_or_shifts(name: &str) {
    let model = load(name);
    let full = SessionOptions {
        max_context: 24,
        ..options()
    };
    let all = tokens(40, 11);
    let mut session = Session::new(model.clone(), &full).unwrap();
    session.feed(&all[..24]).unwrap();
    let err = session.feed(&all[24..25]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextFull {
                held: 24,
                new: 1,
                capacity: 24
            }
        ),
        "{err}"
    );

    let shifting = SessionOptions {
        overflow: ContextOverflow::Shift,
        shift_keep: 4,
        ..full
    };
    let mut session = Session::new(model, &shifting).unwrap();
    session.feed(&all[..24]).unwrap();
    // The 25th token drops half of the 20 after the kept 4.
    let logits = session.feed(&all[24..25]).unwrap();
    assert!(logits.iter().all(|l| l.is_finite()));
    let kept: Vec<u32> = [&all[..4], &all[14..25]].concat();
    assert_eq!(session.tokens(), &kept[..]);
    assert_eq!(session.rewind_floor(), 14);
    assert!(session.rewind(13).is_err());
    // Rewinding after a shift starts from the state the shift left.
    let want = session.feed(&all[25..30]).unwrap();
    session.rewind(15).unwrap();
    check(
        "rewound to the shift",
        &session.feed(&all[25..30]).unwrap(),
        &want,
        SAME,
    );
    // Long feeds keep shifting.
    session.feed(&all[30..40]).unwrap();
    assert!(session.position() <= 24);
    assert_eq!(&session.tokens()[..4], &all[..4]);
    assert_eq!(session.tokens().last(), all.last());
}

#[test]
fn the_f16_cache_stays_close_to_f32() {
    for name in FIXTURES {
        let r = reference(name);
        let model = load(name);
        let f16 = SessionOptions {
            kv_dtype: KvDtype::F16,
            ..options()
        };
        let got = fresh_logits(&model, &f16, &r.prompt_ids);
        let want = fresh_logits(&model, &options(), &r.prompt_ids);
        check(&format!("{name} f16 cache"), &got, &want, 2e-2);
        assert_eq!(
            lfm_edge::sampler::argmax(&got),
            lfm_edge::sampler::argmax(&want)
        );
    }
}

fn sample(model: &Arc<Model>, prompt: &[u32], options: &GenerateOptions) -> lfm_edge::Generation {
    let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
    let logits = session.prefill(prompt).unwrap();
    generate(&mut session, logits, options, |_| Flow::Continue).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_tokens() {
    let model = load(FIXTURES[0]);
    let prompt = reference(FIXTURES[0]).prompt_ids;
    let with_seed = |seed| GenerateOptions {
        max_tokens: 20,
        ignore_eos: true,
        sampler: SamplerConfig {
            temperature: 1.0,
            top_k: 50,
            top_p: 0.95,
            repetition_penalty: 1.1,
            seed,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    let a = sample(&model, &prompt, &with_seed(7));
    assert_eq!(a.tokens, sample(&model, &prompt, &with_seed(7)).tokens);
    assert_ne!(a.tokens, sample(&model, &prompt, &with_seed(8)).tokens);
    assert_eq!(a.tokens.len(), 20);
    assert_eq!(a.stop, StopReason::MaxTokens);
}

#[test]
fn a_stop_string_ends_the_text_before_it() {
    let model = load(FIXTURES[0]);
    let prompt = reference(FIXTURES[0]).prompt_ids;
    let greedy = GenerateOptions {
        max_tokens: 24,
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let full = sample(&model, &prompt, &greedy);
    assert!(full.text.len() > 12, "{:?}", full.text);
    // A stop string from the middle of the text, likely split across tokens.
    let cut = (full.text.len() / 2..full.text.len())
        .find(|&i| full.text.is_char_boundary(i))
        .unwrap();
    let stop: String = full.text[cut..].chars().take(4).collect();
    let at = full.text.find(&stop).unwrap();
    let stopped = sample(
        &model,
        &prompt,
        &GenerateOptions {
            stop_strings: vec![stop.clone()],
            ..greedy.clone()
        },
    );
    assert_eq!(stopped.stop, StopReason::StopString);
    assert_eq!(stopped.text, full.text[..at], "stop {stop:?}");
    // What the callback saw is the same text.
    let mut streamed = String::new();
    let mut session = Session::new(model, &SessionOptions::default()).unwrap();
    let logits = session.prefill(&prompt).unwrap();
    let options = GenerateOptions {
        stop_strings: vec![stop],
        ..greedy
    };
    generate(&mut session, logits, &options, |chunk| {
        streamed.push_str(chunk.text);
        Flow::Continue
    })
    .unwrap();
    assert_eq!(streamed, stopped.text);
}

#[test]
fn a_token_stream_yields_what_generate_streams() {
    let model = load(FIXTURES[0]);
    let prompt = reference(FIXTURES[0]).prompt_ids;
    let options = GenerateOptions {
        max_tokens: 12,
        ignore_eos: true,
        sampler: SamplerConfig {
            temperature: 0.8,
            seed: 3,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    let want = sample(&model, &prompt, &options);
    let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
    let logits = session.prefill(&prompt).unwrap();
    let mut stream = TokenStream::new(&mut session, logits, &options);
    let pieces: Vec<Piece> = (&mut stream).collect::<lfm_edge::Result<_>>().unwrap();
    assert_eq!(stream.stop_reason(), Some(StopReason::MaxTokens));
    assert_eq!(stream.tokens(), want.tokens);
    let ids: Vec<u32> = pieces.iter().filter_map(|p| p.token).collect();
    assert_eq!(ids, want.tokens);
    let text: String = pieces.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(text, want.text);
    // The last sampled token is not fed: the session holds the prompt and the rest.
    assert_eq!(session.position(), prompt.len() + want.tokens.len() - 1);

    // Stopping early is dropping the stream.
    let mut session = Session::new(model, &SessionOptions::default()).unwrap();
    let logits = session.prefill(&prompt).unwrap();
    let first: Vec<_> = TokenStream::new(&mut session, logits, &options)
        .take(3)
        .map(|p| p.unwrap().token.unwrap())
        .collect();
    assert_eq!(first, want.tokens[..3]);
    assert_eq!(session.position(), prompt.len() + 2);
}

#[test]
fn generation_stops_at_a_full_context_or_when_asked() {
    let model = load(FIXTURES[1]);
    let prompt = tokens(10, 12);
    let small = SessionOptions {
        max_context: 14,
        ..SessionOptions::default()
    };
    let mut session = Session::new(model.clone(), &small).unwrap();
    let logits = session.prefill(&prompt).unwrap();
    let options = GenerateOptions {
        max_tokens: 100,
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let done = generate(&mut session, logits, &options, |_| Flow::Continue).unwrap();
    assert_eq!(done.stop, StopReason::ContextFull);
    // The last sampled token waits outside the full cache.
    assert_eq!(done.tokens.len(), 5);
    assert_eq!(session.position(), 14);

    let mut session = Session::new(model, &small).unwrap();
    let logits = session.prefill(&prompt).unwrap();
    let mut calls = 0;
    let done = generate(&mut session, logits, &options, |_| {
        calls += 1;
        if calls == 3 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    })
    .unwrap();
    assert_eq!((done.stop, done.tokens.len()), (StopReason::Callback, 3));
}

#[test]
fn prefill_text_keeps_sampled_tokens_whatever_their_text() {
    let model = load(FIXTURES[0]);
    let mut session = Session::new(model.clone(), &options()).unwrap();
    let turn = "<|startoftext|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    session.prefill_text(turn).unwrap();
    // An answer of tokens the tokenizer would not produce for their text.
    session.feed(&tokens(20, 13)[1..]).unwrap();
    let held = session.tokens().to_vec();
    let next = "<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n";
    let text = model.tokenizer.decode(&held, false).unwrap() + next;
    let got = session.prefill_text(&text).unwrap();
    let tail = model.tokenizer.encode_with(next, false).unwrap();
    assert_eq!(session.tokens(), &[&held[..], &tail[..]].concat()[..]);
    let want = fresh_logits(&model, &options(), session.tokens());
    check("prefill_text", &got, &want, SAME);
}

/// A greedy stream feeds each token's step before yielding the token before it (the
/// GPU never waits for the CPU between tokens), and a sampled one records it; the
/// session counts that step only once the stream asks for its result, so a stream ended
/// after any token leaves the session as it would be without it: the same tokens, and
/// the same logits for what is fed next, conv state included, across snapshot
/// boundaries.
#[test]
fn a_stream_fed_ahead_leaves_the_session_as_without() {
    let sampled = SamplerConfig {
        temperature: 0.9,
        top_k: 40,
        seed: 3,
        ..SamplerConfig::default()
    };
    for (name, config) in FIXTURES
        .iter()
        .flat_map(|name| [(name, SamplerConfig::default()), (name, sampled.clone())])
    {
        let model = load(name);
        let prompt = reference(name).prompt_ids;
        // Drawn from the rows a synchronous session reads back.
        let want = {
            let mut session = Session::new(model.clone(), &options()).unwrap();
            let mut sampler = Sampler::with_config(config.clone());
            sampler.accept(&prompt);
            let mut logits = session.prefill(&prompt).unwrap();
            let mut ids = Vec::new();
            while ids.len() < 10 {
                ids.push(sampler.sample(&logits));
                logits = session.step(ids[ids.len() - 1]).unwrap();
            }
            ids
        };
        let greedy = GenerateOptions {
            max_tokens: 10,
            ignore_eos: true,
            sampler: config.clone(),
            ..GenerateOptions::default()
        };
        for taken in [10, 4] {
            let mut session = Session::new(model.clone(), &options()).unwrap();
            let logits = session.prefill(&prompt).unwrap();
            let got: Vec<u32> = TokenStream::new(&mut session, logits, &greedy)
                .take(taken)
                .map(|p| p.unwrap().token.unwrap())
                .collect();
            assert_eq!(got, want[..taken], "{name} {config:?}: ids");
            // The last token yielded is not fed.
            let fed = prompt.len() + taken - 1;
            assert_eq!(session.position(), fed, "{name}: position after {taken}");
            let all: Vec<u32> = prompt.iter().chain(&want[..taken]).copied().collect();
            // A fork and a saved state see the session as it holds it.
            let mut fork = session.fork().unwrap();
            let mut restored = Session::new(model.clone(), &options()).unwrap();
            restored
                .restore_state(&session.save_state().unwrap())
                .unwrap();
            let want_logits = fresh_logits(&model, &options(), &all);
            for (what, s) in [
                ("session", &mut session),
                ("fork", &mut fork),
                ("restored", &mut restored),
            ] {
                let logits = s.feed(&want[taken - 1..taken]).unwrap();
                let case = format!("{name}: {what}'s logits after {taken} streamed");
                check(&case, &logits, &want_logits, SAME);
            }
        }
    }
}

/// A step submitted alone (`submit_step`) and then picked gives what the one-call steps
/// give, and a pick within a mask gives the masked row's argmax; the mask holds for
/// that pick only.
#[test]
fn a_submitted_step_picks_as_a_whole_step_does() {
    for name in FIXTURES {
        let model = load(name);
        let ids = tokens(12, 5);
        let (prompt, fed) = ids.split_at(6);
        let mut whole = Session::new(model.clone(), &options()).unwrap();
        let mut parts = Session::new(model.clone(), &options()).unwrap();
        whole.feed(prompt).unwrap();
        parts.feed(prompt).unwrap();
        let vocab = model.config.vocab_size;
        // Every third token allowed.
        let mut mask = vec![0u32; vocab.div_ceil(32)];
        for i in (0..vocab).step_by(3) {
            mask[i / 32] |= 1 << (i % 32);
        }
        for (i, &t) in fed.iter().enumerate() {
            let case = format!("{name}, step {i}");
            if i % 2 == 0 {
                let want = whole.step_greedy(t).unwrap();
                parts.submit_step(t).unwrap();
                let row = parts.last_logits().unwrap();
                let masked: Vec<f32> = (row.iter().enumerate())
                    .map(|(j, &l)| if j % 3 == 0 { l } else { f32::NEG_INFINITY })
                    .collect();
                let within = parts.pick_greedy(Some(&mask)).unwrap();
                assert_eq!(within, lfm_edge::sampler::argmax(&masked), "{case}");
                assert_eq!(parts.pick_greedy(None).unwrap(), want, "{case}");
            } else {
                let want = whole.step_top(t, 0.7).unwrap();
                parts.submit_step(t).unwrap();
                assert_eq!(parts.pick_top(0.7, None).unwrap(), want, "{case}");
            }
        }
        assert_eq!(whole.tokens(), parts.tokens(), "{name}");
    }
}

/// Over a long cache, a single token's attention split into ranges of whole 64-key
/// blocks (and a ragged last one), then combined, gives the logits the unsplit
/// attention gives, token after token.
#[test]
fn split_attention_over_a_long_cache_matches_unsplit() {
    use lfm_edge::gpu::{Gpu, GpuOptions, KeyRanges, Tuning};
    let gpu_options = GpuOptions {
        tuning: Some(Tuning {
            key_ranges: KeyRanges { most: 4, keys: 64 },
            ..Tuning::GPU_SUBGROUPS
        }),
        ..GpuOptions::default()
    };
    let split_gpu = Gpu::new(&gpu_options).unwrap();
    let session_options = SessionOptions {
        max_context: 512,
        ..options()
    };
    for name in ["lfm2-tiny-attn-first", "qwen3-tiny"] {
        let unsplit = load(name);
        let split = Arc::new(Model::load(&fixture(name), split_gpu.clone()).unwrap());
        let mut sessions = [unsplit, split].map(|m| Session::new(m, &session_options).unwrap());
        let ids = tokens(300, 7);
        let mut worst = 0.0f32;
        for (i, &id) in ids.iter().enumerate() {
            let [a, b] = sessions.each_mut().map(|s| s.step(id).unwrap());
            let err = max_abs_diff(&a, &b);
            assert!(err <= SAME, "{name} token {i}: {err} > {SAME}");
            worst = worst.max(err);
        }
        eprintln!("{name}: split attention within {worst:.2e} of unsplit over 300 tokens");
    }
}
