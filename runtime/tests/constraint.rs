//! Constrained decoding with the bundled demo model, which never saw JSON: what it writes
//! under a JSON schema, a regex or a Lark grammar is in the language, greedy or sampled;
//! bad grammars are errors before any token; and the mask costs little per token.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use lfm_edge::{
    generate, Constraint, Flow, GenerateOptions, Generation, Model, SamplerConfig, Session,
    SessionOptions, StopReason,
};
use serde_json::Value;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lfm2-demo-Q8_0.gguf");

fn demo() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(Model::load(std::path::Path::new(DEMO), common::gpu()).unwrap()))
        .clone()
}

fn run(prompt: &str, options: &GenerateOptions) -> lfm_edge::Result<Generation> {
    let model = demo();
    let ids = model.tokenizer.encode(prompt)?;
    let mut session = Session::new(model, &SessionOptions::default())?;
    let logits = session.feed(&ids)?;
    generate(&mut session, logits, options, |_| Flow::Continue)
}

fn constrained(
    constraint: Constraint,
    max_tokens: usize,
    sampler: SamplerConfig,
) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler,
        constraint: Some(constraint),
        ..GenerateOptions::default()
    }
}

/// Greedy, and three seeds at temperature 1 with penalties and top-p: the mask comes
/// before the whole chain.
fn samplers() -> Vec<SamplerConfig> {
    let mut all = vec![SamplerConfig::default()];
    for seed in 1..=3 {
        all.push(SamplerConfig {
            temperature: 1.0,
            top_p: 0.95,
            repetition_penalty: 1.1,
            seed,
            ..SamplerConfig::default()
        });
    }
    all
}

/// An integer range, an enum, a length limit and no other properties.
const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12},
    "age": {"type": "integer", "minimum": 18, "maximum": 99},
    "mood": {"enum": ["merry", "sad", "wroth"]}
  },
  "required": ["name", "age", "mood"],
  "additionalProperties": false
}"#;

/// `SCHEMA`, checked by hand.
fn check_against_schema(text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("not an object")?;
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    if keys != ["age", "mood", "name"] {
        return Err(format!("properties {keys:?}"));
    }
    let name = object["name"].as_str().ok_or("name is not a string")?;
    if !(1..=12).contains(&name.chars().count()) {
        return Err(format!("name {name:?} is not 1 to 12 characters"));
    }
    let age = object["age"].as_i64().ok_or("age is not an integer")?;
    if !(18..=99).contains(&age) {
        return Err(format!("age {age} is out of range"));
    }
    let mood = object["mood"].as_str().ok_or("mood is not a string")?;
    if !["merry", "sad", "wroth"].contains(&mood) {
        return Err(format!("mood {mood:?} is not in the enum"));
    }
    Ok(())
}

#[test]
fn json_schema_output_validates_greedy_and_sampled() {
    for sampler in samplers() {
        let options = constrained(
            Constraint::json_schema(SCHEMA).unwrap(),
            96,
            sampler.clone(),
        );
        let done = run("Enter the King and Queen.", &options).unwrap();
        assert_eq!(
            done.stop,
            StopReason::EndOfSequence,
            "{sampler:?}: {:?}",
            done.text
        );
        assert_eq!(done.grammar_complete, Some(true));
        if let Err(why) = check_against_schema(&done.text) {
            panic!("{sampler:?}: {:?}: {why}", done.text);
        }
    }
}

/// Under a mask the GPU picks (greedy's argmax, a top-k chain's candidates) among the
/// tokens the grammar allows, and reads back no row: the same tokens as the chain on
/// each row read back and masked on the CPU.
#[test]
fn the_gpu_picks_what_the_masked_row_gives() {
    use lfm_edge::constraint::{Allowed, Guide};
    use lfm_edge::Sampler;
    let model = demo();
    let constraint = Constraint::json_schema(SCHEMA).unwrap();
    let eos = lfm_edge::generate::end_of_sequence_ids(&model);
    let prompt = model.tokenizer.encode("Enter the King and Queen.").unwrap();
    let top_k = SamplerConfig {
        temperature: 0.8,
        top_k: 40,
        seed: 5,
        ..SamplerConfig::default()
    };
    for config in [SamplerConfig::default(), top_k] {
        let options = constrained(constraint.clone(), 48, config.clone());
        let done = run("Enter the King and Queen.", &options).unwrap();
        let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
        let mut logits = session.feed(&prompt).unwrap();
        let mut sampler = Sampler::with_config(config.clone());
        sampler.accept(session.tokens());
        let mut guide = Guide::new(&constraint, &model.tokenizer, &eos).unwrap();
        let mut replayed = Vec::new();
        while replayed.len() < 48 {
            if guide.mask(&mut logits).unwrap() == Allowed::Nothing {
                break;
            }
            let id = sampler.sample(&logits);
            if eos.contains(&id) {
                break;
            }
            guide.accept(id).unwrap();
            replayed.push(id);
            logits = session.step(id).unwrap();
        }
        assert!(replayed.len() > 5, "{config:?}: {replayed:?}");
        assert_eq!(done.tokens, replayed, "{config:?}");
    }
}

/// A constrained greedy stream submits the step that feeds each pick before the pick
/// comes back; a stream ended after any token leaves the session as without it: fed up
/// to the token before the last one yielded, and the same logits for what comes next.
#[test]
fn a_constrained_stream_ended_early_leaves_the_session_as_without() {
    use lfm_edge::TokenStream;
    let model = demo();
    let prompt = model.tokenizer.encode("Enter the King and Queen.").unwrap();
    let options = constrained(
        Constraint::json_schema(SCHEMA).unwrap(),
        48,
        SamplerConfig::default(),
    );
    for taken in [1, 3, 8] {
        let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
        let logits = session.feed(&prompt).unwrap();
        let ids: Vec<u32> = TokenStream::new(&mut session, logits, &options)
            .take(taken)
            .map(|p| p.unwrap().token.unwrap())
            .collect();
        assert_eq!(ids.len(), taken);
        assert_eq!(
            session.position(),
            prompt.len() + taken - 1,
            "after {taken}"
        );
        let logits = session.feed(&ids[taken - 1..]).unwrap();
        let mut fresh = Session::new(model.clone(), &SessionOptions::default()).unwrap();
        let want = fresh.feed(&[&prompt[..], &ids[..]].concat()).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()), "after {taken}");
        let worst = (logits.iter().zip(&want))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "after {taken}: max abs difference {worst}");
    }
}

/// Sentences of a small grammar with alternatives, a repetition and a regex terminal.
const LARK: &str = r#"
start: greeting ", " name "! " deed "."
greeting: "Hail" | "Farewell" | "Good morrow"
name: TITLE " " NAME
TITLE: "lord" | "lady" | "sir"
NAME: /[A-Z][a-z]{1,9}/
deed: VERB (" and " VERB){0,2}
VERB: "fight" | "sing" | "weep" | "dance"
"#;

/// `LARK`, checked by hand.
fn in_lark_language(text: &str) -> bool {
    let Some((greeting, rest)) = text.split_once(", ") else {
        return false;
    };
    let Some((name, deed)) = rest.split_once("! ") else {
        return false;
    };
    let Some(deed) = deed.strip_suffix('.') else {
        return false;
    };
    let Some((title, name)) = name.split_once(' ') else {
        return false;
    };
    let mut chars = name.chars();
    let name_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && (1..=9).contains(&chars.clone().count())
        && chars.all(|c| c.is_ascii_lowercase());
    let verbs: Vec<&str> = deed.split(" and ").collect();
    ["Hail", "Farewell", "Good morrow"].contains(&greeting)
        && ["lord", "lady", "sir"].contains(&title)
        && name_ok
        && (1..=3).contains(&verbs.len())
        && verbs
            .iter()
            .all(|v| ["fight", "sing", "weep", "dance"].contains(v))
}

#[test]
fn lark_output_is_in_the_language_greedy_and_sampled() {
    for sampler in samplers() {
        let options = constrained(Constraint::lark(LARK), 64, sampler.clone());
        let done = run("Enter the King and Queen.", &options).unwrap();
        assert_eq!(
            done.stop,
            StopReason::EndOfSequence,
            "{sampler:?}: {:?}",
            done.text
        );
        assert!(in_lark_language(&done.text), "{sampler:?}: {:?}", done.text);
    }
    assert!(in_lark_language("Hail, lord Lear! sing and weep."));
    assert!(!in_lark_language("Hail, lord lear! sing."));
}

#[test]
fn regex_output_matches_whole() {
    let regex = "(Enter|Exit) [A-Z]{3,8}\\. [0-9]{2}";
    for sampler in samplers() {
        let options = constrained(Constraint::regex(regex), 32, sampler.clone());
        let done = run("Enter the King and Queen.", &options).unwrap();
        let text = done.text.as_str();
        let (verb, rest) = text.split_once(' ').unwrap();
        let (name, number) = rest.split_once(". ").unwrap();
        assert!(["Enter", "Exit"].contains(&verb), "{text:?}");
        assert!((3..=8).contains(&name.len()), "{text:?}");
        assert!(name.chars().all(|c| c.is_ascii_uppercase()), "{text:?}");
        assert!(
            number.len() == 2 && number.chars().all(|c| c.is_ascii_digit()),
            "{text:?}"
        );
        assert_eq!(done.stop, StopReason::EndOfSequence);
    }
}

#[test]
fn end_of_sequence_only_where_the_grammar_ends() {
    // The demo model would rather go on; the grammar ends after "To be".
    let options = constrained(
        Constraint::lark("start: \"To be\""),
        16,
        SamplerConfig::default(),
    );
    let done = run("Enter Hamlet.", &options).unwrap();
    assert_eq!(
        (done.text.as_str(), done.stop),
        ("To be", StopReason::EndOfSequence)
    );
    // Without end-of-sequence tokens, a complete grammar still ends the generation.
    let options = GenerateOptions {
        ignore_eos: true,
        ..options
    };
    let done = run("Enter Hamlet.", &options).unwrap();
    assert_eq!(
        (done.text.as_str(), done.stop),
        ("To be", StopReason::EndOfSequence)
    );
    assert_eq!(done.grammar_complete, Some(true));
}

#[test]
fn max_tokens_first_is_length_and_incomplete() {
    let options = constrained(
        Constraint::json_schema(SCHEMA).unwrap(),
        5,
        SamplerConfig::default(),
    );
    let done = run("Enter the King and Queen.", &options).unwrap();
    assert_eq!(done.stop, StopReason::MaxTokens);
    assert_eq!(done.tokens.len(), 5);
    assert_eq!(done.grammar_complete, Some(false));
    assert!(done.text.starts_with("{\"name\""), "{:?}", done.text);
}

/// Each refusal comes before any token, from `generate` as from `Constraint::check`.
fn refusal(constraint: Constraint) -> String {
    let checked = constraint.check(&demo().tokenizer).unwrap_err().to_string();
    let options = constrained(constraint, 8, SamplerConfig::default());
    let mut tokens = 0;
    let model = demo();
    let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
    let logits = session
        .feed(&model.tokenizer.encode("Enter").unwrap())
        .unwrap();
    let run = generate(&mut session, logits, &options, |_| {
        tokens += 1;
        Flow::Continue
    });
    assert_eq!(run.unwrap_err().to_string(), checked);
    assert_eq!(tokens, 0);
    checked
}

#[test]
fn bad_grammars_are_errors_naming_where() {
    let typo = r#"{"type": "object", "properties": {"age": {"type": "intger"}}}"#;
    let e = refusal(Constraint::json_schema(typo).unwrap());
    assert!(
        e.contains("at /properties/age") && e.contains("intger"),
        "{e}"
    );
    let e = Constraint::json_schema("{\"type\":\n \"object\",}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2 column"), "{e}");
    let e = refusal(Constraint::lark("start: \"a\" name\n"));
    assert!(
        e.contains("unknown name: \"name\"") && e.contains("at 1("),
        "{e}"
    );
    let e = refusal(Constraint::lark("start: <|tool_call_start|>\n"));
    assert!(e.contains("unknown special token"), "{e}");
    let e = refusal(Constraint::regex("[a-"));
    assert!(e.contains("unclosed character class"), "{e}");
}

#[test]
fn grammars_that_allow_nothing_are_errors() {
    let e = refusal(
        Constraint::json_schema(r#"{"type": "integer", "minimum": 5, "maximum": 3}"#).unwrap(),
    );
    assert!(e.contains("minimum (5) is greater than maximum (3)"), "{e}");
    let e = refusal(Constraint::regex("a[^\\x00-\\x{10FFFF}]"));
    assert!(e.contains("allows no text"), "{e}");
    let e = refusal(Constraint::json_schema(r#"{"enum": []}"#).unwrap());
    assert!(e.starts_with("JSON schema"), "{e}");
}

/// A grammar whose every output goes on for ever would allow token after token up to
/// `max_tokens`, never a whole sentence: refused before any token, naming the rule.
#[test]
fn grammars_without_a_complete_output_are_errors() {
    for endless in ["start: \"a\" start\n", "start: x\nx: \"(\" x \")\"\n"] {
        let e = refusal(Constraint::lark(endless));
        assert_eq!(
            e, "grammar: it allows no complete output: rule `start` never ends",
            "{endless}"
        );
    }
    let itself = r##"{"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}"##;
    let e = refusal(Constraint::json_schema(itself).unwrap());
    assert!(
        e.starts_with("JSON schema: it allows no complete output: a value never ends"),
        "{e}"
    );
    let embedded = format!("start: \"<\" j \">\"\nj: %json {itself}\n");
    let e = refusal(Constraint::lark(&embedded));
    assert!(e.contains("it allows no complete output"), "{e}");
    // With a trigger too: the grammar is compiled before the trigger appears.
    let e = Constraint::lark("start: \"a\" start\n")
        .after("<tool_call>")
        .check(&demo().tokenizer)
        .unwrap_err()
        .to_string();
    assert!(e.contains("never ends"), "{e}");
    for fine in [
        "start: \"a\"+\n",
        "start: x\nx: \"(\" x \")\" | \"a\"\n",
        "start: \"a\" start | \"b\"\n",
        "start: \"<\" j \">\"\nj: %json {\"type\": \"object\"}\n",
    ] {
        Constraint::lark(fine).check(&demo().tokenizer).unwrap();
    }
    let optional = r##"{"type": "object", "properties": {"a": {"$ref": "#"}}}"##;
    Constraint::json_schema(optional)
        .unwrap()
        .check(&demo().tokenizer)
        .unwrap();
}

/// The mask's cost per token against the forward pass: decode under a JSON schema
/// stays at 80 % or more of unconstrained decode on the demo model, i.e. the mask
/// (computed on the CPU between forward passes) costs at most a quarter of a decode
/// step. The mask is timed alone, by replaying the constrained run's tokens through a
/// fresh parser, so that other work on the machine does not blur the comparison; the
/// end-to-end figures are printed beside it.
#[test]
fn constrained_decode_keeps_80_percent_of_the_speed() {
    use lfm_edge::constraint::Guide;
    let schema = r#"{"type": "array", "minItems": 64,
        "items": {"type": "object", "properties": {"who": {"enum": ["King", "Queen"]},
        "says": {"type": "string", "maxLength": 40}}, "required": ["who", "says"],
        "additionalProperties": false}}"#;
    let tokens = 48;
    let free = GenerateOptions {
        max_tokens: tokens,
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let constraint = Constraint::json_schema(schema).unwrap();
    let bound = constrained(constraint.clone(), tokens, SamplerConfig::default());
    let best_of_three =
        |f: &mut dyn FnMut() -> f64| (0..3).map(|_| f()).fold(f64::INFINITY, f64::min);
    let decode = |options: &GenerateOptions| {
        let started = Instant::now();
        let done = run("Enter the King and Queen.", options).unwrap();
        assert_eq!(done.tokens.len(), tokens);
        (
            started.elapsed().as_secs_f64() * 1e3 / tokens as f64,
            done.tokens,
        )
    };
    let (_, sampled) = decode(&bound); // also builds the vocabulary's trie, once per model
    let free_ms = best_of_three(&mut || decode(&free).0);
    let bound_ms = best_of_three(&mut || decode(&bound).0);
    let model = demo();
    let eos = lfm_edge::generate::end_of_sequence_ids(&model);
    let mut logits = vec![0.0f32; model.config.vocab_size];
    let mask_ms = best_of_three(&mut || {
        let mut guide = Guide::new(&constraint, &model.tokenizer, &eos).unwrap();
        let started = Instant::now();
        for &id in &sampled {
            logits.fill(0.0);
            guide.mask(&mut logits).unwrap();
            guide.accept(id).unwrap();
        }
        started.elapsed().as_secs_f64() * 1e3 / tokens as f64
    });
    eprintln!(
        "ms/token: unconstrained {free_ms:.2}, under a JSON schema {bound_ms:.2} end to end; \
         the mask alone {mask_ms:.3} ({:.0} % of the speed)",
        100.0 * free_ms / (free_ms + mask_ms)
    );
    assert!(
        mask_ms <= 0.25 * free_ms,
        "mask {mask_ms:.3} vs step {free_ms:.2} ms/token"
    );
}

/// The binary with the demo model; its stdout, or its stderr on failure.
fn lfm_edge(args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[test]
fn command_line_json_schema_grammar_and_regex() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, SCHEMA).unwrap();
    let lark = dir.path().join("greeting.lark");
    std::fs::write(&lark, LARK).unwrap();
    let (schema, lark) = (schema.to_str().unwrap(), lark.to_str().unwrap());
    let prompt = [
        "generate",
        "--prompt",
        "Enter the King and Queen.",
        "--max-tokens",
        "96",
    ];
    for sampling in [
        &[][..],
        &["--temperature", "0.9", "--seed", "11", "--top-k", "40"][..],
    ] {
        let out = lfm_edge(
            &[&prompt[..], &["--json-schema", schema], sampling].concat(),
            "",
        )
        .unwrap();
        check_against_schema(out.trim_end()).unwrap_or_else(|why| panic!("{out:?}: {why}"));
        let out = lfm_edge(&[&prompt[..], &["--grammar", lark], sampling].concat(), "").unwrap();
        assert!(in_lark_language(out.trim_end()), "{out:?}");
    }
    // In chat, every answer.
    let out = lfm_edge(
        &["chat", "--json-schema", schema, "--max-tokens", "96"],
        "Who art thou?\nAnd thou?\n",
    )
    .unwrap();
    let answers: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(answers.len(), 2, "{out:?}");
    for answer in answers {
        check_against_schema(answer).unwrap_or_else(|why| panic!("{answer:?}: {why}"));
    }
    // Too few tokens: said on stderr, the output cut.
    let cut = std::process::Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(
            [
                &prompt[..3],
                &["--max-tokens", "4", "--json-schema", schema],
            ]
            .concat(),
        )
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&cut.stderr).contains("(length) before the output was complete")
    );
    // One constraint at a time; a bad one is an error before any output.
    let both = lfm_edge(
        &[&prompt[..], &["--json-schema", schema, "--regex", "a"]].concat(),
        "",
    );
    assert!(both.unwrap_err().contains("cannot be used with"));
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"type": "object", "properties": {"n": {"minimum": "x"}}}"#,
    )
    .unwrap();
    let bad = dir.path().join("bad.json");
    let e = lfm_edge(
        &[&prompt[..], &["--json-schema", bad.to_str().unwrap()]].concat(),
        "",
    )
    .unwrap_err();
    assert!(
        e.contains("JSON schema at /properties/n: Expected f64"),
        "{e}"
    );
}

/// A trigger (what `--tool-choice auto` uses): free until the trigger, then the grammar
/// until it is complete, then free again; a special token or text alike.
#[test]
fn a_trigger_starts_the_grammar_each_time() {
    use lfm_edge::constraint::{Allowed, Guide};
    let tokenizer = lfm_edge::Tokenizer::load(std::path::Path::new(DEMO)).unwrap();
    let vocab = tokenizer.vocab_size();
    let im_end = tokenizer.token_id("<|im_end|>").unwrap();
    let ids = |text: &str| tokenizer.encode_with(text, false).unwrap();
    let allowed = |guide: &mut Guide| {
        let mut logits = vec![0.0f32; vocab];
        let kind = guide.mask(&mut logits).unwrap();
        let ids: Vec<u32> = (0..vocab as u32)
            .filter(|&i| logits[i as usize] == 0.0)
            .collect();
        (kind, ids)
    };
    let digits = |ids: &[u32]| {
        ids.iter().all(|&i| {
            let text = tokenizer.decode(&[i], false).unwrap();
            !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
        })
    };
    for trigger in ["<|fim_pre|>", "Enter"] {
        let constraint = Constraint::regex("[0-9]{2}").after(trigger);
        let mut guide = Guide::new(&constraint, &tokenizer, &[im_end]).unwrap();
        assert_eq!(allowed(&mut guide).0, Allowed::Any);
        for id in ids("Exeunt. ") {
            guide.accept(id).unwrap();
        }
        assert_eq!(allowed(&mut guide).0, Allowed::Any, "{trigger}");
        for round in 0..2 {
            for id in ids(trigger) {
                guide.accept(id).unwrap();
            }
            let (kind, ids) = allowed(&mut guide);
            assert_eq!(kind, Allowed::Masked);
            assert!(digits(&ids) && !ids.contains(&im_end), "{trigger} {round}");
            guide.accept(tokenizer.token_id("4").unwrap()).unwrap();
            assert!(!guide.is_complete());
            guide.accept(tokenizer.token_id("2").unwrap()).unwrap();
            // Complete: free again, until the next trigger.
            assert!(guide.is_complete());
            assert_eq!(allowed(&mut guide).0, Allowed::Any, "{trigger} {round}");
        }
    }
}
