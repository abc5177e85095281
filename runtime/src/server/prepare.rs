//! From an OpenAI request to a [`Task`] for the GPU: the conversation rendered through
//! the model's chat template (tools included), sampling options checked against
//! OpenAI's ranges, `response_format` as a constraint and `tools` with `tool_choice` as
//! the library's [`ToolUse`]. Every refusal names the field at fault.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use serde_json::Value;

use super::api::{
    ChatMessage, ChatRequest, CompletionRequest, Content, PromptIn, ResponseFormat, Sampling, Stop,
};
use super::error::ApiError;
use super::job::{Input, Task};
use super::Shared;
use crate::chat::Message;
use crate::constraint::{Constraint, Grammar};
use crate::generate::GenerateOptions;
use crate::sampler::SamplerConfig;
use crate::tools::{write_tool_calls, ToolCall, ToolChoice, ToolUse, Tools};

/// OpenAI's limit on stop sequences.
const MAX_STOP: usize = 4;
/// `/v1/completions` writes this many tokens unless told otherwise, as OpenAI's does.
const COMPLETION_MAX_TOKENS: usize = 16;

pub struct Plan {
    pub task: Task,
    pub stream: bool,
    pub include_usage: bool,
}

pub fn chat(shared: &Shared, request: ChatRequest, sampling: Sampling) -> Result<Plan, ApiError> {
    let sampling = &sampling;
    if request.logprobs == Some(true) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported"));
    }
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let template = shared.template.as_ref().map_err(|why| {
        ApiError::bad_request(format!("{why}: use /v1/completions with this model"))
    })?;
    let messages = (request.messages.iter().enumerate())
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = match request.tools {
        Some(list) if !list.is_empty() => Some(
            Tools::from_value(Value::Array(list))
                .map_err(|e| ApiError::invalid("tools", e.to_string()))?,
        ),
        _ => None,
    };
    let choice = match &request.tool_choice {
        None => ToolChoice::Auto,
        Some(choice) => ToolChoice::from_openai(choice)
            .map_err(|e| ApiError::invalid("tool_choice", e.to_string()))?,
    };
    // Without tools, the choice has nothing to choose from and is not held against them.
    let tool_use = match tools {
        Some(tools) => {
            (choice.check(&tools)).map_err(|e| ApiError::invalid("tool_choice", e.to_string()))?;
            Some(
                ToolUse::new(tools, choice, &shared.model.tokenizer)
                    .map_err(|e| ApiError::invalid("tools", e.to_string()))?,
            )
        }
        None => None,
    };
    let format_constraint = response_format(request.response_format.as_ref())?;
    if tool_use.as_ref().is_some_and(ToolUse::constrains) && format_constraint.is_some() {
        return Err(ApiError::invalid(
            "response_format",
            "response_format with tools the model may call is not supported",
        ));
    }
    let text = template
        .render_with_tools(&messages, tool_use.as_ref().map(ToolUse::tools), true)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let max_tokens = request.max_completion_tokens.or(sampling.max_tokens);
    let param = match request.max_completion_tokens {
        Some(_) => "max_completion_tokens",
        None => "max_tokens",
    };
    let mut options = options(sampling)?;
    options.constraint = format_constraint;
    Ok(Plan {
        task: Task {
            input: Input::Chat(text),
            prompt_field: "messages",
            max_tokens: max_tokens.map(|n| positive(param, n)).transpose()?,
            options,
            tools: tool_use,
        },
        stream: sampling.stream.unwrap_or(false),
        include_usage: include_usage(sampling),
    })
}

pub fn completion(request: CompletionRequest, sampling: Sampling) -> Result<Plan, ApiError> {
    let sampling = &sampling;
    if request.echo == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "suffix is not supported"));
    }
    if request.logprobs.is_some() {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported"));
    }
    if request.best_of.is_some_and(|n| n > 1) {
        return Err(ApiError::invalid(
            "best_of",
            "best_of above 1 is not supported",
        ));
    }
    let one = || ApiError::invalid("prompt", "one prompt per request is supported");
    let input = match request.prompt {
        PromptIn::Text(text) => Input::Text(text),
        PromptIn::Texts(mut texts) if texts.len() == 1 => Input::Text(texts.remove(0)),
        PromptIn::Ids(ids) => Input::Ids(ids),
        PromptIn::Batch(mut batch) if batch.len() == 1 => Input::Ids(batch.remove(0)),
        PromptIn::Texts(_) | PromptIn::Batch(_) => return Err(one()),
    };
    let max_tokens = match sampling.max_tokens {
        Some(n) => positive("max_tokens", n)?,
        None => COMPLETION_MAX_TOKENS,
    };
    Ok(Plan {
        task: Task {
            input,
            prompt_field: "prompt",
            max_tokens: Some(max_tokens),
            options: options(sampling)?,
            tools: None,
        },
        stream: sampling.stream.unwrap_or(false),
        include_usage: include_usage(sampling),
    })
}

fn include_usage(sampling: &Sampling) -> bool {
    (sampling.stream_options.as_ref()).is_some_and(|o| o.include_usage == Some(true))
}

fn positive(param: &str, n: u64) -> Result<usize, ApiError> {
    match n {
        0 => Err(ApiError::invalid(
            param,
            format!("{param} must be at least 1"),
        )),
        n => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// A chat message as the template reads it.
fn message(i: usize, m: &ChatMessage) -> Result<Message, ApiError> {
    let param = format!("messages[{i}]");
    let role = match m.role.as_str() {
        // OpenAI's newer name for the system prompt.
        "developer" => "system",
        role @ ("system" | "user" | "assistant" | "tool") => role,
        other => {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!("role {other:?} is not system, developer, user, assistant or tool"),
            ))
        }
    };
    let mut content = match &m.content {
        None => String::new(),
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.kind.as_str(), &part.text) {
                    ("text", Some(piece)) => text.push_str(piece),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            &format!("{param}.content[{j}]"),
                            format!("content of type {kind:?} is not supported, only text"),
                        ))
                    }
                }
            }
            text
        }
    };
    if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
        let mut read = Vec::new();
        for (j, call) in calls.iter().enumerate() {
            let at = format!("{param}.tool_calls[{j}].function.arguments");
            let arguments = serde_json::from_str(&call.function.arguments).map_err(|e| {
                ApiError::invalid(&at, format!("the arguments are not a JSON object: {e}"))
            })?;
            read.push(ToolCall {
                name: call.function.name.clone(),
                arguments,
            });
        }
        content += &write_tool_calls(&read);
    }
    Ok(Message::new(role, content))
}

/// `response_format` as a constraint: any JSON object, or a schema.
fn response_format(format: Option<&ResponseFormat>) -> Result<Option<Constraint>, ApiError> {
    Ok(match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Constraint::new(Grammar::JsonSchema(
            serde_json::json!({"type": "object"}),
        ))),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema.schema.clone().ok_or_else(|| {
                ApiError::invalid(
                    "response_format.json_schema.schema",
                    "the schema is missing",
                )
            })?;
            Some(Constraint::new(Grammar::JsonSchema(schema)))
        }
    })
}

/// The sampling options, in OpenAI's ranges (its defaults: temperature 1, top_p 1,
/// no penalties, a fresh seed per request).
fn options(s: &Sampling) -> Result<GenerateOptions, ApiError> {
    if s.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n",
            "one choice per request (n = 1) is supported",
        ));
    }
    let within = |param: &str, value: Option<f32>, low: f32, high: f32, default: f32| {
        let value = value.unwrap_or(default);
        match value.is_finite() && (low..=high).contains(&value) {
            true => Ok(value),
            false => Err(ApiError::invalid(
                param,
                format!("{param} {value} is not between {low} and {high}"),
            )),
        }
    };
    let sampler = SamplerConfig {
        temperature: within("temperature", s.temperature, 0.0, 2.0, 1.0)?,
        top_p: within("top_p", s.top_p, 0.0, 1.0, 1.0)?,
        top_k: s.top_k.unwrap_or(0) as usize,
        min_p: within("min_p", s.min_p, 0.0, 1.0, 0.0)?,
        repetition_penalty: within("repetition_penalty", s.repetition_penalty, 0.01, 10.0, 1.0)?,
        presence_penalty: within("presence_penalty", s.presence_penalty, -2.0, 2.0, 0.0)?,
        frequency_penalty: within("frequency_penalty", s.frequency_penalty, -2.0, 2.0, 0.0)?,
        penalty_window: 0,
        // Any integer OpenAI takes; without one, a fresh draw each request.
        seed: match s.seed {
            Some(seed) => seed as u64,
            None => RandomState::new().hash_one(std::time::SystemTime::now()),
        },
    };
    sampler.validate().map_err(ApiError::bad_request)?;
    let stop_strings = match &s.stop {
        None => Vec::new(),
        Some(Stop::One(text)) => vec![text.clone()],
        Some(Stop::Many(texts)) => texts.clone(),
    };
    if stop_strings.len() > MAX_STOP {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "at most {MAX_STOP} stop sequences, not {}",
                stop_strings.len()
            ),
        ));
    }
    Ok(GenerateOptions {
        max_tokens: usize::MAX,
        sampler,
        stop_strings: stop_strings.into_iter().filter(|s| !s.is_empty()).collect(),
        ignore_eos: false,
        constraint: None,
    })
}
