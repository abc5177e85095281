//! The Kotlin API of the Android library (android/lfm/src/main/kotlin) on the host JVM:
//! compiled with kotlinc, with the Java bindings it calls and tests/kotlin's KotlinCheck,
//! and run against the Linux build of the library on the GGUF and safetensors fixtures.
//! The compiler comes from scripts/kotlin/install.sh (.ci/run calls it).

#![cfg(feature = "jni")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    check_tool_refusals, check_weather_call, demo_model, fixture, gguf_fixture, join_ids,
    library_dir, matches_constraint_regex, printed_calls, reference, repo_root, run, WEATHER_TOOL,
};

/// The Q4_K_M fixture: K-quant blocks, as most apps ship their models.
const GGUF: &str = "lfm2-tiny-kquant-Q4_K_M";

/// The Kotlin compiler's folder (bin/kotlinc, lib/*.jar), as the install script has it.
fn kotlin_home() -> PathBuf {
    let script = repo_root().join("scripts/kotlin/install.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", script.display()));
    assert!(
        output.status.success(),
        "{}(.ci/run installs it)",
        String::from_utf8_lossy(&output.stderr)
    );
    let kotlinc = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    kotlinc.parent().unwrap().parent().unwrap().to_path_buf()
}

fn sources(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn classpath(entries: &[&Path]) -> std::ffi::OsString {
    std::env::join_paths(entries).unwrap()
}

/// Compiles the bindings (javac), then the Kotlin API and KotlinCheck (one kotlinc run),
/// runs KotlinCheck, and returns its "name: value" lines.
fn kotlin_check(gguf: &Path, prompt: &str) -> BTreeMap<String, String> {
    let kotlin = kotlin_home();
    let stdlib = kotlin.join("lib/kotlin-stdlib.jar");
    let coroutines = kotlin.join("lib/kotlinx-coroutines-core-jvm.jar");
    let java_classes = tempfile::tempdir().unwrap();
    let kotlin_classes = tempfile::tempdir().unwrap();
    run(Command::new("javac")
        .args(["-Xlint:all", "-Werror", "-d"])
        .arg(java_classes.path())
        .args(sources("android/lfm/src/main/java/dev/lfmedge", "java")));
    run(Command::new(kotlin.join("bin/kotlinc"))
        // The language of android/build.gradle.kts's Kotlin plugin (2.1), so that what
        // compiles here compiles there.
        .args(["-language-version", "2.1", "-api-version", "2.1"])
        .arg("-Xsuppress-version-warnings")
        .args(["-Werror", "-jvm-target", "17"])
        .arg("-cp")
        .arg(classpath(&[java_classes.path(), &coroutines]))
        .arg("-d")
        .arg(kotlin_classes.path())
        .args(sources("android/lfm/src/main/kotlin/dev/lfmedge", "kt"))
        .args(sources("ffi/tests/kotlin/dev/lfmedge/app", "kt")));
    let output = run(Command::new("java")
        .arg(format!("-Djava.library.path={}", library_dir().display()))
        .arg("-Xcheck:jni")
        .arg("-cp")
        .arg(classpath(&[
            java_classes.path(),
            kotlin_classes.path(),
            &stdlib,
            &coroutines,
        ]))
        .arg("dev.lfmedge.app.KotlinCheckKt")
        .arg(gguf)
        .arg(prompt)
        .arg(fixture())
        .arg(demo_model())
        .arg(WEATHER_TOOL));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(": ").or(Some((line, ""))))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// "N pieces, context USED" or "true, context USED": the tokens the session holds.
fn context_after(line: &str) -> usize {
    line.rsplit_once("context ").unwrap().1.parse().unwrap()
}

#[test]
fn kotlin_api_streams_cancels_and_restores() {
    let r = reference();
    let f = gguf_fixture(GGUF);
    let lines = kotlin_check(&f.path, &r.prompt_text);
    let line = |name: &str| {
        lines
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
            .as_str()
    };
    // The greedy continuation's text: its full decode, an unfinished last character
    // included (as U+FFFD).
    let tokenizer = lfm_edge::Tokenizer::load(&f.path).unwrap();
    let greedy_text = hex(&tokenizer.decode(&f.greedy_ids, true).unwrap());

    assert_eq!(line("tokenize"), join_ids(&f.prompt_ids));
    // The Flow streams the reference's greedy continuation, UTF-8 intact through Java.
    assert_eq!(line("flow-greedy-utf8"), greedy_text);
    let prompt_and_greedy = f.prompt_ids.len() + f.greedy_ids.len();
    assert_eq!(line("flow-context"), prompt_and_greedy.to_string());
    assert_eq!(line("greedy"), join_ids(&f.greedy_ids));
    assert_eq!(line("greedy-stop"), "MAX_TOKENS");
    assert_eq!(line("blocking-equals-flow"), "true");

    // Cancelled collectors stop their 1000-token generations early, and the session
    // goes on: the same greedy continuation after a reset, or more tokens without one.
    assert!(line("take-2").starts_with("2 pieces"), "{}", line("take-2"));
    for name in ["take-2", "job-cancelled", "unbuffered-cancelled"] {
        let used = context_after(line(name));
        assert!(
            (f.prompt_ids.len()..f.prompt_ids.len() + 1000).contains(&used),
            "{name}: {}",
            line(name)
        );
    }
    assert!(line("job-cancelled").starts_with("true"));
    assert!(line("unbuffered-cancelled").starts_with("true"));
    assert_eq!(line("continues-after-take"), "true");
    assert_eq!(line("same-after-cancel"), "true");
    assert_eq!(line("stop-string"), "STOP_STRING false");
    let (stop, text) = line("regex-constraint").split_once(' ').unwrap();
    assert_eq!(stop, "END_OF_SEQUENCE", "{text:?}");
    assert!(matches_constraint_regex(text), "{text:?}");

    // Chat turns through Flows are those of the blocking calls.
    assert_eq!(line("chat-flow"), line("chat-blocking"));
    let chat = line("chat-flow");
    assert!(context_after(chat) > 8, "{chat}");

    // Saved after 12 tokens and restored in another session, which goes on as the
    // first one does: together, the 24 greedy tokens.
    assert_eq!(line("restored"), format!("true {greedy_text}"));

    // Negative values are errors naming them (INVALID_ARGUMENT), never the defaults.
    for (name, message) in [
        ("negative-max-tokens", "maxTokens -1 is negative"),
        ("negative-top-k", "topK -1 is negative"),
        ("negative-penalty-window", "penaltyWindow -1 is negative"),
        ("negative-context", "contextLength -1 is negative"),
        ("negative-budget", "vramBudgetBytes -1 is negative"),
        ("negative-pool", "kvPoolTokens -1 is negative"),
        ("negative-binding", "maxBindingBytes -1 is negative"),
    ] {
        assert_eq!(line(name), format!("2 {message}"), "{name}");
    }
    let bad_schema = line("bad-schema");
    assert!(
        bad_schema.starts_with("2 ")
            && bad_schema.contains("JSON schema at /properties/n: Invalid type: intger"),
        "{bad_schema}"
    );
    assert_eq!(line("usable-after-errors"), "true");
    // IO.
    assert!(
        line("missing-model").starts_with("3 /nonexistent/model"),
        "{}",
        line("missing-model")
    );

    // Tools on the demo model: calls that validate, by choice required and by name, errors
    // as LfmExceptions, a tool result that continues the chat.
    for prefix in ["tool-call", "named-call"] {
        let calls = printed_calls(&lines, prefix);
        assert!(!calls.is_empty(), "no {prefix} in {lines:?}");
        calls.iter().for_each(check_weather_call);
    }
    assert_eq!(line("named-stop"), "END_OF_SEQUENCE");
    check_tool_refusals(&lines);
    let (held, after) = line("tool-result").split_once(" -> ").unwrap();
    let (held, after): (usize, usize) = (held.parse().unwrap(), after.parse().unwrap());
    assert!(after > held + 6, "{}", line("tool-result"));
    assert_eq!(line("calls-after-reset"), "0");

    // A safetensors folder through the same API.
    assert_eq!(line("folder-greedy"), join_ids(&r.greedy_ids));
    assert!(lines.contains_key("done"));
}
