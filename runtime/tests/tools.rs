//! Tool calls in LFM2's format: parsing the call texts of LFM2's and LFM2.5's published
//! formats, rendering tools through their templates (and LFM2's rendering for a
//! template without tools), and `--tool-choice required` with the demo model, which
//! has never seen a tool, writing calls whose arguments validate.

mod common;

use std::path::Path;
use std::process::Command;

use lfm_edge::tools::{parse_tool_calls, ToolCall};
use lfm_edge::{ChatTemplate, Message, Tools};
use serde_json::{json, Value};

fn calls(text: &str) -> Vec<Value> {
    let parsed = parse_tool_calls(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    parsed.calls.iter().map(as_json).collect()
}

fn as_json(call: &ToolCall) -> Value {
    json!({"name": call.name, "arguments": call.arguments})
}

#[test]
fn parses_python_style_calls() {
    assert_eq!(
        calls("<|tool_call_start|>[get_time(city=\"XYZCITY\")]<|tool_call_end|>"),
        [json!({"name": "get_time", "arguments": {"city": "XYZCITY"}})]
    );
    // Python's literals, and JSON's, inside dicts and lists.
    assert_eq!(
        calls("<|tool_call_start|>[set_config(config={\"enabled\": True, \"count\": 3, \"note\": None, \"ok\": false})]<|tool_call_end|>"),
        [json!({"name": "set_config", "arguments": {"config": {"enabled": true, "count": 3, "note": null, "ok": false}}})]
    );
    // A dotted name, a list, a nested dict, single quotes, negative and float numbers.
    assert_eq!(
        calls("<|tool_call_start|>[Calendar.create_event(title='demo', participants=[\"Alice\", 'Bob'], metadata={'priority': 'high', 'reminder': true}, offset=-2, weight=0.5, ratio=1e-3)]<|tool_call_end|>"),
        [json!({"name": "Calendar.create_event", "arguments": {
            "title": "demo", "participants": ["Alice", "Bob"],
            "metadata": {"priority": "high", "reminder": true},
            "offset": -2, "weight": 0.5, "ratio": 0.001}})]
    );
    // Several calls in one answer; a call without arguments; a trailing comma.
    assert_eq!(
        calls("<|tool_call_start|>[special_function(arg1=1), special_function_with_opt(arg1=1, arg2=2,), empty_args()]<|tool_call_end|>"),
        [
            json!({"name": "special_function", "arguments": {"arg1": 1}}),
            json!({"name": "special_function_with_opt", "arguments": {"arg1": 1, "arg2": 2}}),
            json!({"name": "empty_args", "arguments": {}}),
        ]
    );
}

#[test]
fn string_escapes_and_nested_quotes() {
    // Escapes decode to their characters; quotes of the other kind need none.
    let text = r#"<|tool_call_start|>[python(code="def hello():\n    print('hey')\tdone", say='He said "no" and \'yes\'', path="C:\\dir", emoji="\u00e9\ud83d\ude00")]<|tool_call_end|>"#;
    assert_eq!(
        calls(text),
        [json!({"name": "python", "arguments": {
            "code": "def hello():\n    print('hey')\tdone",
            "say": "He said \"no\" and 'yes'",
            "path": "C:\\dir",
            "emoji": "é😀"}})]
    );
    // Brackets and parentheses inside strings are text.
    let text = r#"<|tool_call_start|>[note(text="a (b) [c] {d}, e=f")]<|tool_call_end|>"#;
    assert_eq!(calls(text)[0]["arguments"]["text"], "a (b) [c] {d}, e=f");
}

#[test]
fn content_around_calls_and_the_json_form() {
    let parsed = parse_tool_calls(
        "Let me check the time.<|tool_call_start|>[get_time(city=\"Paris\")]<|tool_call_end|>Done.",
    )
    .unwrap();
    assert_eq!(parsed.content, "Let me check the time.Done.");
    assert_eq!(parsed.calls.len(), 1);
    // Markdown links are content, not calls.
    let text =
        "Use this format: [link text](url). Example: [Wikipedia](https://www.wikipedia.org).";
    let parsed = parse_tool_calls(text).unwrap();
    assert_eq!((parsed.content.as_str(), parsed.calls.len()), (text, 0));
    // The JSON form, with arguments as an object or as a JSON string.
    assert_eq!(
        calls(
            r#"<|tool_call_start|>[{"name": "get_time", "arguments": {"city": "Paris"}}, {"name": "get_date", "arguments": "{\"tz\": \"UTC\"}"}]<|tool_call_end|>"#
        ),
        [
            json!({"name": "get_time", "arguments": {"city": "Paris"}}),
            json!({"name": "get_date", "arguments": {"tz": "UTC"}}),
        ]
    );
    // Two sections in one answer.
    let two = "<|tool_call_start|>[a(x=1)]<|tool_call_end|> and <|tool_call_start|>[b(y=2)]<|tool_call_end|>";
    assert_eq!(calls(two).len(), 2);
}

#[test]
fn malformed_calls_are_errors_naming_where() {
    let e = parse_tool_calls("<|tool_call_start|>[get_time(city=\"Paris\")").unwrap_err();
    assert!(e.contains("not closed"), "{e}");
    let e =
        parse_tool_calls("<|tool_call_start|>[get_time(city=Paris)]<|tool_call_end|>").unwrap_err();
    assert!(e.contains("expected a value at byte 15"), "{e}");
    let e =
        parse_tool_calls("<|tool_call_start|>[get_time(\"Paris\")]<|tool_call_end|>").unwrap_err();
    assert!(e.contains("expected a name"), "{e}");
    let e = parse_tool_calls("<|tool_call_start|>[f(s=\"open)]<|tool_call_end|>").unwrap_err();
    assert!(e.contains("not closed"), "{e}");
}

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather",
  "description": "Current weather in a city — «quoted» <b>",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                 "required": ["city"]}}}]"#;

fn template(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/templates")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Weather in Paris?"),
        Message::new(
            "assistant",
            "<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>",
        ),
        Message::new("tool", "{\"temp\": 21}"),
    ]
}

/// As transformers renders LFM2's template: the tools as `json.dumps` writes them (keys
/// in order, `", "` and `": "`, nothing escaped), in the system turn.
const LFM2_RENDERED: &str = "<|startoftext|><|im_start|>system\nBe brief.\nList of tools: <|tool_list_start|>[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather in a city — «quoted» <b>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]<|tool_list_end|><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|><|im_end|>\n<|im_start|>tool\n<|tool_response_start|>{\"temp\": 21}<|tool_response_end|><|im_end|>\n<|im_start|>assistant\n";

#[test]
fn lfm2_templates_render_tools() {
    let tools = Tools::from_json(TOOLS).unwrap();
    let lfm2 = ChatTemplate::new(
        &template("LFM2-8B-A1B.jinja"),
        "<|startoftext|>",
        "<|im_end|>",
    )
    .unwrap();
    let rendered = lfm2
        .render_with_tools(&conversation(), Some(&tools), true)
        .unwrap();
    assert_eq!(rendered, LFM2_RENDERED);
    // LFM2.5: the list without markers, tool results as they are.
    let lfm25 = ChatTemplate::new(
        &template("LFM2.5-Instruct.jinja"),
        "<|startoftext|>",
        "<|im_end|>",
    )
    .unwrap();
    let rendered = lfm25
        .render_with_tools(&conversation(), Some(&tools), true)
        .unwrap();
    let expected = LFM2_RENDERED
        .replace("<|tool_list_start|>", "")
        .replace("<|tool_list_end|>", "")
        .replace("<|tool_response_start|>", "")
        .replace("<|tool_response_end|>", "");
    assert_eq!(rendered, expected);
}

#[test]
fn a_template_without_tools_gets_lfm2s_rendering() {
    let tools = Tools::from_json(TOOLS).unwrap();
    // The demo model's template knows nothing of tools.
    let plain = "{{- bos_token -}}{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";
    let template = ChatTemplate::new(plain, "<|startoftext|>", "<|im_end|>").unwrap();
    let rendered = template
        .render_with_tools(&conversation(), Some(&tools), true)
        .unwrap();
    assert_eq!(rendered, LFM2_RENDERED);
    // Without a system turn, one is made for the list.
    let rendered = template
        .render_with_tools(&conversation()[1..2], Some(&tools), true)
        .unwrap();
    assert!(
        rendered.starts_with(
            "<|startoftext|><|im_start|>system\nList of tools: <|tool_list_start|>[{\"type\""
        ),
        "{rendered}"
    );
}

#[test]
fn tools_files_are_checked() {
    let bare = Tools::from_json(r#"[{"name": "ping"}]"#).unwrap();
    assert_eq!(
        bare.0[0].json,
        json!({"type": "function", "function": {"name": "ping"}})
    );
    for (bad, why) in [
        ("{}", "expected a JSON array"),
        (
            r#"[{"type": "function", "function": {}}]"#,
            "[0] has no \"name\"",
        ),
        (r#"[{"name": "a b"}]"#, "is not a function name"),
        (r#"[{"name": "a"}, {"name": "a"}]"#, "listed twice"),
        (
            r#"[{"name": "a", "parameters": 3}]"#,
            "parameters is not an object",
        ),
    ] {
        let e = Tools::from_json(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

/// One tool with an integer range, an enum and a bounded string.
const ALARM: &str = r#"[{"type": "function", "function": {"name": "set_alarm",
  "parameters": {"type": "object", "properties": {
    "hour": {"type": "integer", "minimum": 0, "maximum": 23},
    "label": {"type": "string", "maxLength": 16},
    "repeat": {"enum": ["daily", "weekdays", "never"]}},
   "required": ["hour", "repeat"]}}}]"#;

fn check_alarm(arguments: &Value) {
    let object = arguments.as_object().unwrap();
    assert!(
        object
            .keys()
            .all(|k| ["hour", "label", "repeat"].contains(&k.as_str())),
        "{arguments}"
    );
    assert!(
        (0..=23).contains(&object["hour"].as_i64().unwrap()),
        "{arguments}"
    );
    assert!(
        ["daily", "weekdays", "never"].contains(&object["repeat"].as_str().unwrap()),
        "{arguments}"
    );
    if let Some(label) = object.get("label") {
        assert!(label.as_str().unwrap().chars().count() <= 16, "{arguments}");
    }
}

#[test]
fn tool_choice_required_writes_calls_that_validate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tools.json");
    std::fs::write(&file, ALARM).unwrap();
    for sampling in [&[][..], &["--temperature", "1", "--seed", "5"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
            .args([
                "generate",
                "--chat",
                "--prompt",
                "Wake me at seven.",
                "--max-tokens",
                "300",
            ])
            .args([
                "--tools",
                file.to_str().unwrap(),
                "--tool-choice",
                "required",
                "--print-tool-calls",
            ])
            .args(sampling)
            .env("XDG_RUNTIME_DIR", "/tmp")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap();
        let calls: Value = serde_json::from_str(last).unwrap();
        let calls = calls.as_array().unwrap();
        assert!(!calls.is_empty(), "{stdout}");
        for call in calls {
            assert_eq!(call["name"], "set_alarm", "{stdout}");
            check_alarm(&call["arguments"]);
        }
    }
}
