//! A model's chat template (the Jinja `chat_template` of tokenizer_config.json) rendered
//! the way HF transformers' `apply_chat_template` renders it: the same whitespace
//! options (`trim_blocks`, `lstrip_blocks`), loop controls, Python string methods, the
//! `bos_token` / `eos_token` variables, `raise_exception`, and transformers' `tojson`
//! (Python's `json.dumps` spacing, keys in order, nothing HTML-escaped). Tools go in
//! as the `tools` variable; a template that ignores them gets LFM2's tool list in its
//! system turn instead ([`ChatTemplate::render_with_tools`]). The text it gives already
//! holds the special tokens, bos included: encode it with
//! [`Tokenizer::encode_with`](crate::Tokenizer::encode_with)`(text, false)`.

use minijinja::value::Kwargs;
use minijinja::{context, Environment, ErrorKind, Value};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::tools::{Tools, TOOL_LIST_END, TOOL_LIST_START, TOOL_RESPONSE_END, TOOL_RESPONSE_START};

/// One turn of a conversation, as HF's `messages` list holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// "system", "user", "assistant" or "tool".
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// The template reads a `tools` variable; when it does not, tools are listed in the
    /// system turn and tool results wrapped as LFM2's template does.
    reads_tools: bool,
}

const TEMPLATE_NAME: &str = "chat_template";
/// The work one render may do, in minijinja's fuel: about one unit per instruction and
/// per 64 bytes of data the template makes, so it bounds the time and the memory
/// (about 256 MB) a template can take. A 4 MB conversation of 1000 turns takes ~200 000.
const FUEL: u64 = 4_000_000;
/// The longest rendered conversation, in bytes (some two million tokens of text).
const MAX_OUTPUT: usize = 8 << 20;

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts the template sees.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        Self::compile(source, bos_token, eos_token)
            .map_err(|e| Error::Input(format!("invalid chat template: {}", describe(&e))))
    }

    /// The template `model` ships (in tokenizer_config.json or its GGUF file), with its
    /// bos and eos tokens.
    pub fn for_model(model: &Model) -> Result<ChatTemplate> {
        Self::for_tokenizer(&model.tokenizer, &model.config)
    }

    /// As [`ChatTemplate::for_model`], from a model's tokenizer and config alone.
    pub fn for_tokenizer(tokenizer: &Tokenizer, config: &ModelConfig) -> Result<ChatTemplate> {
        let origin = tokenizer.template_path();
        let source = tokenizer
            .chat_template
            .as_deref()
            .ok_or_else(|| Error::config(origin, "the model has no chat_template to chat with"))?;
        let token_text = |id: Option<&u32>| match id {
            Some(&id) => tokenizer.decode(&[id], false),
            None => Ok(String::new()),
        };
        let bos = token_text(config.bos_token_id.as_ref())?;
        let eos_ids = &tokenizer.eos_token_ids;
        let eos = token_text(eos_ids.first().or(config.eos_token_ids.first()))?;
        Self::compile(source, &bos, &eos)
            .map_err(|e| Error::config(origin, format!("chat_template: {}", describe(&e))))
    }

    fn compile(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> std::result::Result<ChatTemplate, minijinja::Error> {
        let mut env = Environment::new();
        // transformers compiles chat templates with these two options on.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.set_fuel(Some(FUEL));
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            reads_tools: source.contains("tools"),
        })
    }

    /// The conversation as the model reads it; with `add_generation_prompt`, followed by
    /// the opening of the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// As [`ChatTemplate::render`], with the tools the model may call: the template's
    /// `tools` variable, or, when it has no such variable, LFM2's
    /// `List of tools: <|tool_list_start|>[…]<|tool_list_end|>` at the end of the
    /// system turn (one is added when there is none) and `tool` messages wrapped in
    /// `<|tool_response_start|>…<|tool_response_end|>`.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&Tools>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tools = tools.filter(|t| !t.is_empty()).map(Tools::to_json);
        let mut messages = messages.to_vec();
        if !self.reads_tools {
            for m in messages.iter_mut().filter(|m| m.role == "tool") {
                m.content = format!("{TOOL_RESPONSE_START}{}{TOOL_RESPONSE_END}", m.content);
            }
            if let Some(tools) = &tools {
                list_tools_in_system_turn(&mut messages, tools);
            }
        }
        let tools =
            (tools.filter(|_| self.reads_tools)).map(|t| Value::from(minijinja::value::Serde(t)));
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let context = context! {
            messages,
            tools,
            add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        let mut out = Capped::default();
        let rendered = self
            .env
            .get_template(TEMPLATE_NAME)
            .and_then(|template| template.render_captured_to(context, &mut out));
        if let Err(e) = rendered {
            let message = match e.kind() {
                _ if out.full => format!("its output passed {MAX_OUTPUT} bytes"),
                ErrorKind::OutOfFuel => format!("it used up its fuel of {FUEL} steps"),
                _ => return Err(Error::Input(format!("chat template: {}", describe(&e)))),
            };
            return Err(Error::Input(format!(
                "the chat template ran too long: {message}{}",
                at_line(&e)
            )));
        }
        String::from_utf8(out.bytes)
            .map_err(|e| Error::Input(format!("chat template: output is not UTF-8: {e}")))
    }
}

/// LFM2's rendering of tools, for a template without it: the list after the system
/// prompt (on its own line), in a system turn made for it when there is none.
fn list_tools_in_system_turn(messages: &mut Vec<Message>, tools: &[serde_json::Value]) {
    let listed: Vec<String> = tools.iter().map(python_json).collect();
    let list = format!(
        "List of tools: {TOOL_LIST_START}[{}]{TOOL_LIST_END}",
        listed.join(", ")
    );
    match messages.first_mut() {
        Some(system) if system.role == "system" => {
            if !system.content.is_empty() {
                system.content.push('\n');
            }
            system.content += &list;
        }
        _ => messages.insert(0, Message::new("system", list)),
    }
}

/// JSON as Python's `json.dumps` writes it by default: `", "` between items, `": "`
/// after keys, keys in their order, non-ASCII text as it is.
pub fn python_json(value: &serde_json::Value) -> String {
    python_json_indented(value, None)
}

fn python_json_indented(value: &serde_json::Value, indent: Option<usize>) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let indent = vec![b' '; n];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&indent);
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, formatter,
            ))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonSpacing,
        )),
    };
    // Serialising a JSON value into memory cannot fail, and gives UTF-8.
    debug_assert!(written.is_ok());
    String::from_utf8(out).unwrap_or_default()
}

/// `json.dumps`'s default separators.
struct PythonSpacing;

impl serde_json::ser::Formatter for PythonSpacing {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        // The same ", " between keys as between array values.
        self.begin_array_value(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=indent)`,
/// unlike Jinja's, which HTML-escapes and sorts keys.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let json = serde_json::to_value(value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(python_json_indented(&json, indent)))
}

/// The rendered text, refused once it would pass `MAX_OUTPUT` bytes.
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.full = true;
            return Err(std::io::Error::other("the output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A template error in one short line: its kind, the start of its detail and its line,
/// never the template (which may be long) or the context.
fn describe(e: &minijinja::Error) -> String {
    const MAX_DETAIL: usize = 160;
    let mut text = e.kind().to_string();
    if let Some(detail) = e.detail() {
        let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
        text.push_str(": ");
        text.extend(detail.chars().take(MAX_DETAIL));
        if detail.chars().nth(MAX_DETAIL).is_some() {
            text.push('…');
        }
    }
    text + &at_line(e)
}

fn at_line(e: &minijinja::Error) -> String {
    e.line()
        .map(|n| format!(" at line {n}"))
        .unwrap_or_default()
}

/// HF templates call this to refuse a conversation (e.g. roles that do not alternate).
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of LFM2's published template: a namespace, slicing off the system
    /// message, string tests, Python string methods, and the generation prompt.
    const LFM2_LIKE: &str = r#"{{- bos_token -}}
{%- set ns = namespace(system_prompt="") -%}
{%- if messages[0]["role"] == "system" -%}
    {%- set ns.system_prompt = messages[0]["content"].strip() -%}
    {%- set messages = messages[1:] -%}
{%- endif -%}
{%- if ns.system_prompt -%}
    {{- "<|im_start|>system\n" + ns.system_prompt + "<|im_end|>\n" -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message["role"] not in ["user", "assistant", "tool"] -%}
        {{- raise_exception("unknown role " + message["role"]) -}}
    {%- endif -%}
    {{- "<|im_start|>" + message["role"] + "\n" + message["content"] + "<|im_end|>\n" -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- "<|im_start|>assistant\n" -}}
{%- endif -%}"#;

    fn template() -> ChatTemplate {
        ChatTemplate::new(LFM2_LIKE, "<|startoftext|>", "<|im_end|>").unwrap()
    }

    #[test]
    fn renders_system_turns_and_generation_prompt() {
        let messages = [
            Message::new("system", "  Be brief. "),
            Message::new("user", "Hi"),
        ];
        assert_eq!(
            template().render(&messages, true).unwrap(),
            "<|startoftext|><|im_start|>system\nBe brief.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!template()
            .render(&messages, false)
            .unwrap()
            .ends_with("assistant\n"));
    }

    #[test]
    fn raise_exception_becomes_an_input_error() {
        let err = template()
            .render(&[Message::new("robot", "beep")], true)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Input(m) if m.contains("unknown role robot")),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(err.to_string().contains("invalid chat template"), "{err}");
    }

    /// Qwen3's and Ministral 3's published templates (llama.cpp's models/templates copies
    /// in fixtures/templates) render as transformers' apply_chat_template renders them
    /// (rendered.json, by scripts/make_template_references.py), refusals included.
    #[test]
    fn qwen3_and_ministral3_templates_render_as_transformers_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/templates");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let reference: serde_json::Value = serde_json::from_str(&read("rendered.json")).unwrap();
        let text = |value: &serde_json::Value| value.as_str().unwrap().to_owned();
        let messages = |case: &serde_json::Value| -> Vec<Message> {
            let messages = case["messages"].as_array().unwrap();
            messages
                .iter()
                .map(|m| Message::new(text(&m["role"]), text(&m["content"])))
                .collect()
        };
        for case in reference["rendered"].as_array().unwrap() {
            // Template kwargs (Qwen3's enable_thinking) are not ours to pass yet.
            if !case["kwargs"].as_object().unwrap().is_empty() {
                continue;
            }
            let source = read(case["template"].as_str().unwrap());
            let template = ChatTemplate::new(
                &source,
                &text(&case["bos_token"]),
                &text(&case["eos_token"]),
            );
            let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
            let rendered = template
                .unwrap()
                .render(&messages(case), add_generation_prompt);
            assert_eq!(rendered.unwrap(), text(&case["text"]), "{}", case["name"]);
        }
        for case in reference["refused"].as_array().unwrap() {
            let source = read(case["template"].as_str().unwrap());
            let template = ChatTemplate::new(&source, "<s>", "</s>").unwrap();
            let err = template.render(&messages(case), true).unwrap_err();
            let expected = text(&case["error"]);
            assert!(
                matches!(&err, Error::Input(m) if m.contains(&expected)),
                "{err}"
            );
        }
    }

    #[test]
    fn trims_blocks_like_transformers() {
        let t = ChatTemplate::new("{% if true %}\n  x\n{% endif %}\n", "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "  x\n");
    }
}
