//! Tools in a conversation, as every front end uses them (the command line's `generate
//! --tools` and `chat`'s `/tools`, the C ABI, JNI, Kotlin and Swift): the tools and the
//! choice checked together once, the constraint a turn decodes under, and the calls read
//! from the tokens it generated. The tools reach the prompt through
//! [`ChatTemplate::render_with_tools`](crate::ChatTemplate::render_with_tools) with
//! [`ToolUse::tools`].

use super::{parse_tool_calls, ToolCall, ToolChoice, Tools};
use crate::constraint::Constraint;
use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::tokenizer::Tokenizer;

/// The tools a conversation lists and how the model must use them.
#[derive(Clone, Debug)]
pub struct ToolUse {
    tools: Tools,
    choice: ToolChoice,
    /// What the choice constrains decoding to, checked against the tokenizer once.
    constraint: Option<Constraint>,
}

/// An answer given tools, read from its tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolAnswer {
    /// The answer decoded with its special tokens, the call markers included: the
    /// assistant turn that joins the conversation, so that the next rendering holds
    /// what the model wrote.
    pub text: String,
    /// The text outside the calls, trimmed, for a front end that shows the calls apart
    /// (the server's `content`); `text` as it is when no calls were read.
    pub content: String,
    pub calls: Vec<ToolCall>,
    /// Why no calls could be read from a call the answer opened: one cut off by
    /// `max_tokens`, or one written freely under [`ToolChoice::None`] that does not parse.
    pub unparsed: Option<String>,
}

impl ToolUse {
    /// `tools` under `choice` for a model with `tokenizer`. A choice naming no tool, or
    /// `required` without tools, is an error; so is a tool whose parameter schema does not
    /// compile into a grammar (named by what fails), before any prompt.
    pub fn new(tools: Tools, choice: ToolChoice, tokenizer: &Tokenizer) -> Result<ToolUse> {
        choice.check(&tools)?;
        let constraint = tools.constraint(&choice, tokenizer)?;
        if let Some(constraint) = &constraint {
            constraint.check(tokenizer)?;
        }
        Ok(ToolUse {
            tools,
            choice,
            constraint,
        })
    }

    /// As [`ToolUse::new`], from a JSON array of tools in OpenAI's shape and a choice
    /// written `auto`, `required`, `none` or a tool's name.
    pub fn from_json(tools: &str, choice: &str, tokenizer: &Tokenizer) -> Result<ToolUse> {
        let Ok(choice) = choice.parse();
        Self::new(Tools::from_json(tools)?, choice, tokenizer)
    }

    /// The tools, for the chat template.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    pub fn choice(&self) -> &ToolChoice {
        &self.choice
    }

    /// Whether the choice constrains decoding at all (not `none`, and there are tools).
    pub fn constrains(&self) -> bool {
        self.constraint.is_some()
    }

    /// Sets the constraint of `options` for a turn. A constraint `options` already has
    /// applies to the whole answer: it stays, and `auto` (which constrains only the calls
    /// the model opens) gives way to it; `required` or a name, which constrain the whole
    /// answer to calls, cannot take one too (an error). `none` leaves `options` as it is.
    pub fn constrain(&self, options: &mut GenerateOptions) -> Result<()> {
        match (&options.constraint, &self.constraint) {
            (_, None) => Ok(()),
            (None, Some(calls)) => {
                options.constraint = Some(calls.clone());
                Ok(())
            }
            (Some(_), Some(_)) if self.choice == ToolChoice::Auto => Ok(()),
            (Some(_), Some(_)) => Err(Error::Input(format!(
                "tool choice {} makes the whole answer tool calls: it cannot also follow a \
                 constraint of its own (leave the constraint out, or choose auto)",
                self.choice
            ))),
        }
    }

    /// The answer `tokens` make (the generated ids, as `Generation::tokens`), with its
    /// calls. Without tools nothing is parsed: its text is `tokens` decoded as they are.
    pub fn answer(&self, tokens: &[u32], tokenizer: &Tokenizer) -> Result<ToolAnswer> {
        // The markers are special tokens of LFM2's tokenizer, which streamed text leaves out.
        let text = tokenizer.decode(tokens, false)?;
        let parsed = match self.tools.is_empty() {
            true => Ok(None),
            false => parse_tool_calls(&text).map(Some),
        };
        let (content, calls, unparsed) = match parsed {
            Ok(Some(parsed)) => (parsed.content, parsed.calls, None),
            Ok(None) => (text.clone(), Vec::new(), None),
            Err(why) => (text.clone(), Vec::new(), Some(why)),
        };
        Ok(ToolAnswer {
            text,
            content,
            calls,
            unparsed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str = r#"[{"type": "function", "function": {"name": "ping",
        "parameters": {"type": "object", "properties": {"host": {"type": "string"}},
        "required": ["host"]}}}]"#;

    fn tokenizer() -> Tokenizer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/lfm2-demo");
        Tokenizer::from_dir(&dir).unwrap()
    }

    #[test]
    fn choices_are_checked_against_the_tools() {
        let tokenizer = tokenizer();
        let e = ToolUse::from_json(PING, "pong", &tokenizer).unwrap_err();
        assert!(
            e.to_string().contains(
                "tool choice \"pong\" is not auto, required, none or a tool's name (the tools are ping)"
            ),
            "{e}"
        );
        let e = ToolUse::from_json("[]", "required", &tokenizer).unwrap_err();
        assert!(e.to_string().contains("required with no tools"), "{e}");
        let e = ToolUse::from_json("[{", "auto", &tokenizer).unwrap_err();
        assert!(e.to_string().starts_with("tools: invalid JSON"), "{e}");
        for choice in ["auto", "required", "none", "ping"] {
            let used = ToolUse::from_json(PING, choice, &tokenizer).unwrap();
            assert_eq!(used.choice().to_string(), choice);
        }
    }

    #[test]
    fn a_constraint_of_the_callers_stays_and_conflicts_with_required() {
        let tokenizer = tokenizer();
        let schema = Constraint::regex("[a-z]+");
        for (choice, kept) in [("auto", true), ("none", true), ("required", false)] {
            let used = ToolUse::from_json(PING, choice, &tokenizer).unwrap();
            let mut options = GenerateOptions {
                constraint: Some(schema.clone()),
                ..GenerateOptions::default()
            };
            assert_eq!(used.constrain(&mut options).is_ok(), kept, "{choice}");
            let mut free = GenerateOptions::default();
            used.constrain(&mut free).unwrap();
            assert_eq!(free.constraint.is_some(), choice != "none", "{choice}");
        }
    }

    #[test]
    fn answers_are_read_with_their_calls() {
        let tokenizer = tokenizer();
        let used = ToolUse::from_json(PING, "auto", &tokenizer).unwrap();
        let text = "<|tool_call_start|>[ping(host=\"a\")]<|tool_call_end|>";
        let ids = tokenizer.encode_with(text, false).unwrap();
        let answer = used.answer(&ids, &tokenizer).unwrap();
        assert_eq!(answer.text, text);
        assert_eq!(answer.content, "");
        assert_eq!(answer.calls.len(), 1);
        assert_eq!(answer.calls[0].name, "ping");
        assert_eq!(answer.unparsed, None);
        let cut = tokenizer
            .encode_with("<|tool_call_start|>[ping(", false)
            .unwrap();
        let answer = used.answer(&cut, &tokenizer).unwrap();
        assert!(answer.calls.is_empty() && answer.unparsed.is_some());
    }

    #[test]
    fn openais_choices_and_calls_given_back() {
        use super::super::{parse_tool_calls, write_tool_calls};
        use serde_json::json;
        let read = |v: serde_json::Value| ToolChoice::from_openai(&v);
        assert_eq!(read(json!("required")).unwrap(), ToolChoice::Required);
        let named = json!({"type": "function", "function": {"name": "ping"}});
        assert_eq!(read(named).unwrap(), ToolChoice::Named("ping".into()));
        // A bare string is a mode, never a name, as OpenAI reads it.
        let e = read(json!("ping")).unwrap_err().to_string();
        assert!(e.contains("\"ping\" is not none, auto or required"), "{e}");
        assert!(read(json!({"function": {}})).is_err());
        assert!(read(json!(3)).is_err());

        let call = ToolCall {
            name: "ping".into(),
            arguments: json!({"host": "a \"b\"", "n": 1, "up": true, "tags": ["x"]})
                .as_object()
                .unwrap()
                .clone(),
        };
        let written = write_tool_calls(&[call.clone(), call.clone()]);
        let parsed = parse_tool_calls(&written).unwrap();
        assert_eq!(parsed.calls, [call.clone(), call]);
        assert_eq!(parsed.content, "");
    }
}
