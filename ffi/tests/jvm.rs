//! The JNI layer of the Android library on the host JVM: the Java bindings the Kotlin
//! API calls (android/lfm/src/main/java) are compiled with javac and run against the
//! Linux build of the library, for a real generation on the fixture.

#![cfg(feature = "jni")]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{
    architecture_fixture, check_tool_refusals, check_weather_call, demo_model, fixture,
    gguf_fixture, join_ids, library_dir, matches_constraint_regex, printed_calls, reference,
    repo_root, run, GgufFixture, ARCHITECTURE_FIXTURES, GGUF_FIXTURES, WEATHER_TOOL,
};

/// Compiles the bindings and tests/java's HostCheck, runs it, and returns its
/// "name: value" lines.
fn host_check() -> BTreeMap<String, String> {
    let classes = tempfile::tempdir().unwrap();
    let sources = [
        "android/lfm/src/main/java/dev/lfmedge",
        "ffi/tests/java/dev/lfmedge",
    ]
    .iter()
    .flat_map(|dir| std::fs::read_dir(repo_root().join(dir)).unwrap())
    .map(|entry| entry.unwrap().path())
    .filter(|path| path.extension().is_some_and(|e| e == "java"));
    run(Command::new("javac")
        .args(["-Xlint:all", "-Werror", "-d"])
        .arg(classes.path())
        .args(sources));
    let r = reference();
    let output = run(Command::new("java")
        .arg(format!("-Djava.library.path={}", library_dir().display()))
        .arg("-Xcheck:jni")
        .arg("-cp")
        .arg(classes.path())
        .arg("dev.lfmedge.HostCheck")
        .arg(fixture())
        .arg(join_ids(&r.prompt_ids))
        .arg(&r.prompt_text)
        .arg(demo_model())
        .arg(WEATHER_TOOL)
        .args(models().flat_map(|(_, f)| [f.path.display().to_string(), join_ids(&f.prompt_ids)])));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(": ").or(Some((line, ""))))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The models HostCheck loads beside the fixture, each with HF's greedy ids.
fn models() -> impl Iterator<Item = (&'static str, GgufFixture)> {
    let gguf = GGUF_FIXTURES.iter().map(|&name| (name, gguf_fixture(name)));
    let others = ARCHITECTURE_FIXTURES
        .iter()
        .map(|&name| (name, architecture_fixture(name)));
    gguf.chain(others)
}

#[test]
fn java_bindings_generate_on_the_fixture() {
    let r = reference();
    let lines = host_check();
    let line = |name: &str| {
        lines
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
    };
    let greedy = join_ids(&r.greedy_ids);
    assert_eq!(line("greedy"), &greedy);
    assert_eq!(line("greedy-stop"), "MAX_TOKENS");
    let tokenizer = lfm_edge::Tokenizer::from_dir(&fixture()).unwrap();
    // Through Java's UTF-16 strings and back, emoji and CJK included.
    let text = tokenizer.decode(&r.greedy_ids, true).unwrap();
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(line("greedy-text-utf8"), &hex);
    assert_eq!(line("text-prompt"), &greedy);
    assert_eq!(line("tokenize"), &join_ids(&r.prompt_ids));
    assert_eq!(line("callback-stop"), "CALLBACK 3");
    assert!(
        line("chat").starts_with("8 tokens, context "),
        "{}",
        line("chat")
    );
    assert!(
        line("out-of-vocab").starts_with("2 token id 99999"),
        "{}",
        line("out-of-vocab")
    );
    assert_eq!(line("callback-exception"), "thrown by the callback");
    assert_eq!(line("restored"), "true");
    // The second session's prompt takes the pool's last block; its first generated
    // token finds no room, stays pending, and the generation stops.
    assert_eq!(line("pooled"), "MAX_TOKENS CONTEXT_FULL 17");
    assert_eq!(line("budget"), "11");
    assert!(
        line("missing-model").starts_with("3 /nonexistent/model"),
        "{}",
        line("missing-model")
    );
    assert_eq!(line("stop-string"), "STOP_STRING false");
    // The whole output matches the regex, and the generation ends where it must.
    let (stop, text) = line("regex-constraint").split_once(' ').unwrap();
    assert_eq!(stop, "END_OF_SEQUENCE", "{text:?}");
    assert!(
        matches_constraint_regex(text),
        "{text:?} does not match [a-z]{{3}}-[0-9]{{2}}"
    );
    for (name, needle) in [
        ("negative-max-tokens", "2 maxTokens -1 is negative"),
        ("negative-top-k", "2 topK -1 is negative"),
        ("bad-top-p", "2 top_p 2 is not in (0, 1]"),
        ("negative-context", "2 contextLength -1 is negative"),
        ("negative-budget", "2 vramBudgetBytes -1 is negative"),
        ("negative-pool", "2 kvPoolTokens -1 is negative"),
        (
            "bad-constraint-kind",
            "2 constraintKind 9 is not an lfm_constraint_kind",
        ),
    ] {
        assert_eq!(line(name), needle);
    }
    // A schema that does not compile: INVALID_ARGUMENT, naming where it is wrong.
    let bad_schema = line("bad-schema");
    assert!(
        bad_schema.starts_with("2 ")
            && bad_schema.contains("JSON schema at /properties/n: Invalid type: intger"),
        "{bad_schema}"
    );
    // Tool choice "required" on the demo model: calls that validate, then a tool result
    // that continues the chat from the cached conversation.
    assert_eq!(line("tool-calls-stop"), "END_OF_SEQUENCE");
    let calls = printed_calls(&lines, "tool-call");
    assert!(!calls.is_empty(), "{lines:?}");
    calls.iter().for_each(check_weather_call);
    check_tool_refusals(&lines);
    let result = line("tool-result");
    let (held, after) = result
        .strip_prefix("MAX_TOKENS ")
        .and_then(|r| r.split_once(" -> "))
        .unwrap_or_else(|| panic!("{result}"));
    let (held, after): (usize, usize) = (held.parse().unwrap(), after.parse().unwrap());
    assert!(after > held + 6, "{result}");
    assert_eq!(line("calls-after-reset"), "0");
    // Quantized GGUF files and the other architectures load through the same loader
    // and stream the greedy ids.
    for (name, f) in models() {
        let file = f.path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            line(&format!("gguf {file}")),
            &join_ids(&f.greedy_ids),
            "{name}"
        );
    }
    assert!(lines.contains_key("done"));
}
