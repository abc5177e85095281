//! Shared by the ffi integration tests: the fixture, its HF reference, the built
//! library, and running the system tools (cc, nm, javac, java) with clear failures.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

pub const FIXTURE: &str = "lfm2-tiny-conv-first";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture() -> PathBuf {
    repo_root().join("fixtures").join(FIXTURE)
}

#[derive(Deserialize)]
pub struct Tokenization {
    pub text: String,
    pub ids: Vec<u32>,
}

#[derive(Deserialize)]
pub struct Reference {
    pub prompt_text: String,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub tokenizations: Vec<Tokenization>,
}

pub fn reference() -> Reference {
    let text = std::fs::read_to_string(fixture().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The GGUF fixtures apps load most (Q4_0, and a K-quant), each with the greedy ids
/// that the runtime's tests hold the command line to (HF's, on the dequantized weights).
pub const GGUF_FIXTURES: [&str; 2] = ["lfm2-tiny-conv-first-Q4_0", "lfm2-tiny-kquant-Q4_K_M"];

/// The other architectures, as HF folders (under fixtures/) and GGUF files (under
/// fixtures/gguf/, `.gguf` left off), each with HF's greedy ids.
pub const ARCHITECTURE_FIXTURES: [&str; 4] = [
    "qwen3-tiny",
    "ministral3-tiny",
    "gguf/qwen3-tiny-kquant-Q4_K_M",
    "gguf/ministral3-tiny-Q4_0",
];

/// A model file or folder and the greedy ids that HF gives for its prompt.
pub struct GgufFixture {
    pub path: PathBuf,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Expected {
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn read_expected(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn gguf_fixture(name: &str) -> GgufFixture {
    let dir = repo_root().join("fixtures/gguf");
    let expected = read_expected(&dir.join(format!("{name}.json")));
    GgufFixture {
        path: dir.join(format!("{name}.gguf")),
        prompt_ids: expected.prompt_ids,
        greedy_ids: expected.greedy_ids,
    }
}

/// An entry of [`ARCHITECTURE_FIXTURES`]: a GGUF fixture, or an HF folder and its
/// reference.json.
pub fn architecture_fixture(name: &str) -> GgufFixture {
    if let Some(gguf) = name.strip_prefix("gguf/") {
        return gguf_fixture(gguf);
    }
    let path = repo_root().join("fixtures").join(name);
    let expected = read_expected(&path.join("reference.json"));
    GgufFixture {
        path,
        prompt_ids: expected.prompt_ids,
        greedy_ids: expected.greedy_ids,
    }
}

pub fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The folder holding the cdylib and staticlib of this very build: cargo builds every
/// crate type of the library next to the test executables (target/<profile>/deps), with
/// the same profile and features, before it runs them.
pub fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().to_path_buf();
    let cdylib = dir.join(format!(
        "{}lfm_edge_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(cdylib.exists(), "{} was not built", cdylib.display());
    dir
}

/// Runs `command`, failing the test with its output (or with what is missing).
pub fn run(command: &mut Command) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); is it installed?"));
    assert!(
        output.status.success(),
        "{program} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The system C compiler (`CC`, else `cc`).
pub fn c_compiler() -> Command {
    Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
}

/// Compiles C `sources` against lfm_edge.h and the cdylib, warnings as errors.
pub fn compile_c(sources: &[PathBuf], out: &Path) {
    let lib = library_dir();
    run(c_compiler()
        .args(["-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror"])
        .arg("-I")
        .arg(repo_root().join("ffi/include"))
        .args(sources)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-llfm_edge_ffi")
        .arg("-o")
        .arg(out));
}

/// The regex the bindings' constraint checks use: three lowercase letters, a dash, two
/// digits.
pub const CONSTRAINT_REGEX: &str = "[a-z]{3}-[0-9]{2}";

/// Whether `text` is whole a match of [`CONSTRAINT_REGEX`] (no regex crate here).
pub fn matches_constraint_regex(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 6
        && b[..3].iter().all(u8::is_ascii_lowercase)
        && b[3] == b'-'
        && b[4..].iter().all(u8::is_ascii_digit)
}

/// The bundled demo model (models/lfm2-demo), which has never seen a tool: under a
/// tool choice that constrains decoding it still writes calls that parse and validate.
pub fn demo_model() -> PathBuf {
    repo_root().join("models/lfm2-demo")
}

/// The tool the bindings' tool checks list: a string with a bounded length, an integer
/// range and an optional boolean, two of them required.
pub const WEATHER_TOOL: &str = r#"[{"type": "function", "function": {"name": "get_weather",
  "description": "The weather in a city over the next days",
  "parameters": {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 16},
    "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "metric": {"type": "boolean"}},
   "required": ["city", "days"]}}}]"#;

/// The tool calls a JVM check printed as lines `PREFIX 0`, `PREFIX 1`, … (`name
/// arguments-json`), as `{"name": …, "arguments": {…}}` values.
pub fn printed_calls(
    lines: &std::collections::BTreeMap<String, String>,
    prefix: &str,
) -> Vec<serde_json::Value> {
    (0..)
        .map_while(|i| lines.get(&format!("{prefix} {i}")))
        .map(|call| {
            let (name, arguments) = call.split_once(' ').unwrap();
            let arguments: serde_json::Value = serde_json::from_str(arguments).unwrap();
            serde_json::json!({"name": name, "arguments": arguments})
        })
        .collect()
}

/// Panics unless a JVM check printed the errors bad tools and an unknown tool choice
/// must give, as `LfmException` status and message.
pub fn check_tool_refusals(lines: &std::collections::BTreeMap<String, String>) {
    let line = |name: &str| lines.get(name).map_or("", String::as_str);
    assert!(
        line("bad-tools").starts_with("2 tools: invalid JSON"),
        "{lines:?}"
    );
    assert_eq!(
        line("unknown-tool-choice"),
        "2 tool choice \"get_time\" is not auto, required, none or a tool's name \
         (the tools are get_weather)"
    );
}

/// Panics unless `call` (`{"name": …, "arguments": {…}}`) calls [`WEATHER_TOOL`] with
/// arguments valid against its parameters.
pub fn check_weather_call(call: &serde_json::Value) {
    assert_eq!(call["name"], "get_weather", "{call}");
    let arguments = call["arguments"]
        .as_object()
        .unwrap_or_else(|| panic!("{call}"));
    assert!(
        arguments
            .keys()
            .all(|k| ["city", "days", "metric"].contains(&k.as_str())),
        "{call}"
    );
    let city = arguments["city"]
        .as_str()
        .unwrap_or_else(|| panic!("{call}"));
    assert!(city.chars().count() <= 16, "{call}");
    let days = arguments["days"]
        .as_i64()
        .unwrap_or_else(|| panic!("{call}"));
    assert!((1..=7).contains(&days), "{call}");
    if let Some(metric) = arguments.get("metric") {
        assert!(metric.is_boolean(), "{call}");
    }
}

/// A model loaded through the C ABI once per test binary and never freed (each binary
/// loads one path): the header promises it is shareable across threads.
pub fn shared_model(path: fn() -> PathBuf) -> *const lfm_edge_ffi::capi::LfmModel {
    use lfm_edge_ffi::capi::{lfm_model_load, LfmModel};
    struct Shared(*mut LfmModel);
    // SAFETY: the header promises (and capi asserts) that lfm_model is Send + Sync.
    unsafe impl Send for Shared {}
    unsafe impl Sync for Shared {}
    static MODEL: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = std::ffi::CString::new(path().to_str().unwrap()).unwrap();
            let mut model = std::ptr::null_mut();
            let status = unsafe { lfm_model_load(path.as_ptr(), std::ptr::null(), &mut model) };
            assert_ok(status);
            Shared(model)
        })
        .0
}

/// The C ABI's message for the last error on this thread.
pub fn last_error() -> String {
    let message = unsafe { std::ffi::CStr::from_ptr(lfm_edge_ffi::capi::lfm_last_error_message()) };
    message.to_string_lossy().into_owned()
}

pub fn assert_ok(status: lfm_edge_ffi::LfmStatus) {
    assert_eq!(status, lfm_edge_ffi::LfmStatus::Ok, "{}", last_error());
}
