//! Tool calls in LFM2's format. Tools, in OpenAI's shape, go into the prompt through the
//! chat template ([`ChatTemplate::render_with_tools`](crate::ChatTemplate::render_with_tools));
//! the model answers `<|tool_call_start|>[name(arg="v", n=1), …]<|tool_call_end|>`,
//! which [`parse_tool_calls`] turns into [`ToolCall`]s; results go back as `tool`
//! messages. [`ToolChoice`] says whether decoding is constrained to calls that parse and
//! whose arguments validate against the tools' parameter schemas. [`ToolUse`] holds the
//! tools and the choice of a conversation, checked together, and is what every front
//! end (the command line, the C ABI and the app bindings) runs a turn with:
//!
//! ```no_run
//! # fn demo(model: &lfm_edge::Model, session: &mut lfm_edge::Session) -> lfm_edge::Result<()> {
//! use lfm_edge::tools::{calls_to_json, ToolUse};
//! use lfm_edge::{generate, ChatTemplate, Flow, GenerateOptions, Message};
//! let tools = r#"[{"type": "function", "function": {"name": "get_time",
//!     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]"#;
//! let tool_use = ToolUse::from_json(tools, "required", &model.tokenizer)?;
//! let messages = [Message::new("user", "What time is it in Paris?")];
//! let template = ChatTemplate::for_model(model)?;
//! let prompt = template.render_with_tools(&messages, Some(tool_use.tools()), true)?;
//! let mut options = GenerateOptions::default();
//! tool_use.constrain(&mut options)?;
//! let logits = session.prefill_text(&prompt)?;
//! let generated = generate(session, logits, &options, |_| Flow::Continue)?;
//! let answer = tool_use.answer(&generated.tokens, &model.tokenizer)?;
//! println!("{}", calls_to_json(&answer.calls)); // [{"name":"get_time","arguments":{…}}]
//! // The answer joins the conversation with its markers; the result goes back as "tool".
//! # Ok(()) }
//! ```

mod grammar;
mod parse;
mod turn;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::constraint::{Constraint, Grammar};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
pub use parse::{parse_tool_calls, ParsedAnswer};
pub use turn::{ToolAnswer, ToolUse};

pub const TOOL_CALL_START: &str = "<|tool_call_start|>";
pub const TOOL_CALL_END: &str = "<|tool_call_end|>";
pub const TOOL_LIST_START: &str = "<|tool_list_start|>";
pub const TOOL_LIST_END: &str = "<|tool_list_end|>";
pub const TOOL_RESPONSE_START: &str = "<|tool_response_start|>";
pub const TOOL_RESPONSE_END: &str = "<|tool_response_end|>";

/// One function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The JSON schema of its arguments (an object schema; `{}` when it takes none).
    pub parameters: Value,
    /// The tool as given, `{"type": "function", "function": {…}}`: what the template sees.
    pub json: Value,
}

/// The tools of a conversation, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tools(pub Vec<Tool>);

/// A call the model made: the tool's name and its arguments by name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

/// Whether and how the model must call a tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model chooses; once it opens a call, the call is constrained.
    Auto,
    /// The answer is one or more calls.
    Required,
    /// The tools are listed but decoding is not constrained.
    None,
    /// The answer is calls of this tool.
    Named(String),
}

impl std::str::FromStr for ToolChoice {
    type Err = std::convert::Infallible;

    /// `auto`, `required`, `none`, or a tool's name.
    fn from_str(text: &str) -> std::result::Result<ToolChoice, Self::Err> {
        Ok(match text {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => ToolChoice::None,
            name => ToolChoice::Named(name.to_owned()),
        })
    }
}

impl ToolChoice {
    /// OpenAI's `tool_choice`: `"auto"`, `"required"`, `"none"`, or the object
    /// `{"type": "function", "function": {"name": …}}` that names a tool. Unlike
    /// [`ToolChoice::from_str`](std::str::FromStr), a bare string is never a name.
    pub fn from_openai(value: &Value) -> Result<ToolChoice> {
        let name = value.get("function").and_then(|f| f.get("name"));
        match (value, name) {
            (Value::String(mode), _) => match mode.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => Err(Error::Input(format!(
                    "tool_choice {other:?} is not none, auto or required"
                ))),
            },
            (Value::Object(_), Some(Value::String(name))) => Ok(ToolChoice::Named(name.clone())),
            _ => Err(Error::Input(format!(
                "tool_choice {value} is not none, auto, required or \
                 {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
            ))),
        }
    }

    /// Whether `tools` allow this choice: a name must be one of theirs, and `required`
    /// needs some.
    pub fn check(&self, tools: &Tools) -> Result<()> {
        match self {
            ToolChoice::Named(name) if tools.get(name).is_none() => {
                let names: Vec<&str> = tools.0.iter().map(|t| t.name.as_str()).collect();
                let listed = match names.is_empty() {
                    true => "there are no tools".to_owned(),
                    false => format!("the tools are {}", names.join(", ")),
                };
                Err(Error::Input(format!(
                    "tool choice {name:?} is not auto, required, none or a tool's name ({listed})"
                )))
            }
            ToolChoice::Required if tools.is_empty() => Err(Error::Input(
                "tool choice required with no tools: list some, or choose auto or none".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for ToolChoice {
    /// As [`ToolChoice::from_str`](std::str::FromStr) reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ToolChoice::Auto => "auto",
            ToolChoice::Required => "required",
            ToolChoice::None => "none",
            ToolChoice::Named(name) => name,
        })
    }
}

impl Tools {
    /// A JSON array of tools in OpenAI's shape (`{"type": "function", "function":
    /// {"name", "description", "parameters"}}`), or of the bare function objects.
    pub fn from_json(text: &str) -> Result<Tools> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::Input(format!("tools: invalid JSON: {e}")))?;
        Tools::from_value(value)
    }

    /// As [`Tools::from_json`], from the JSON already read (a request's `tools`).
    pub fn from_value(value: Value) -> Result<Tools> {
        let fail = |message: String| Error::Input(format!("tools: {message}"));
        let Value::Array(items) = value else {
            return Err(fail("expected a JSON array of tools".into()));
        };
        let mut tools = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let function = match item.get("function") {
                Some(function) => function.clone(),
                None => item.clone(),
            };
            let name = match function.get("name") {
                Some(Value::String(name)) if is_name(name) => name.clone(),
                Some(Value::String(name)) => {
                    return Err(fail(format!("[{i}]: {name:?} is not a function name")))
                }
                _ => return Err(fail(format!("[{i}] has no \"name\" string"))),
            };
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => return Err(fail(format!("[{i}] {name}: parameters is not an object"))),
            };
            if tools.iter().any(|t: &Tool| t.name == name) {
                return Err(fail(format!("[{i}]: {name} is listed twice")));
            }
            let json = match item.get("function") {
                Some(_) => item,
                None => serde_json::json!({"type": "function", "function": item}),
            };
            tools.push(Tool {
                name,
                parameters,
                json,
            });
        }
        Ok(Tools(tools))
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.0.iter().find(|t| t.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tools as the chat template's `tools` variable holds them.
    pub fn to_json(&self) -> Vec<Value> {
        self.0.iter().map(|t| t.json.clone()).collect()
    }

    /// The constraint `choice` asks for when generating with `tokenizer`: `None` for
    /// [`ToolChoice::None`] (or no tools); calls from the first token for `Required`
    /// and a name; for `Auto`, calls from when the model writes `<|tool_call_start|>`
    /// until it closes them.
    pub fn constraint(
        &self,
        choice: &ToolChoice,
        tokenizer: &Tokenizer,
    ) -> Result<Option<Constraint>> {
        if self.is_empty() || *choice == ToolChoice::None {
            return Ok(None);
        }
        let vocab = tokenizer.constraint_vocabulary()?;
        let chosen: Vec<&Tool> = match choice {
            ToolChoice::Named(name) => match self.get(name) {
                Some(tool) => vec![tool],
                None => {
                    return Err(Error::Input(format!(
                        "tool choice {name:?}: no such tool (there are {})",
                        self.0
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            },
            _ => self.0.iter().collect(),
        };
        let auto = *choice == ToolChoice::Auto;
        let lark = grammar::calls_grammar(&vocab, &chosen, auto);
        let constraint = Constraint::new(Grammar::Lark(lark));
        Ok(Some(match auto {
            true => constraint.after(TOOL_CALL_START),
            false => constraint,
        }))
    }
}

/// A function name as LFM2 writes calls: a Python identifier, dots allowed.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// The calls as LFM2 writes them, `<|tool_call_start|>[name(key=value, …), …]
/// <|tool_call_end|>` with the values in JSON (which [`parse_tool_calls`] reads back):
/// an assistant turn's calls, given back in OpenAI's shape, as the template expects them.
pub fn write_tool_calls(calls: &[ToolCall]) -> String {
    let written: Vec<String> = (calls.iter())
        .map(|call| {
            let arguments: Vec<String> = (call.arguments.iter())
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            format!("{}({})", call.name, arguments.join(", "))
        })
        .collect();
    format!("{TOOL_CALL_START}[{}]{TOOL_CALL_END}", written.join(", "))
}

/// The calls as one JSON array, `[{"name": …, "arguments": {…}}, …]`.
pub fn calls_to_json(calls: &[ToolCall]) -> String {
    serde_json::to_string(calls).unwrap_or_else(|_| "[]".into())
}
