//! Streamed answers as OpenAI sends them: server-sent events, each `data:` a chunk of
//! JSON; for a chat, a first chunk with the role, one per piece of text, a last one
//! with the finish reason (and the tool calls), the usage on a chunk of its own when
//! asked for, then `data: [DONE]`. An error after the stream began is one last
//! `data: {"error": …}`.

use std::convert::Infallible;

use axum::response::sse::{Event as Sse, Sse as SseResponse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{
    AssistantMessage, ChatChoice, ChatChunk, ChunkChoice, Delta, FinishReason, FunctionCallOut,
    Header, TextChoice, TextCompletion, ToolCallOut, Usage,
};
use super::job::{Done, Event, Started};
use super::request_log::Tokens;
use crate::tools::ToolCall;

/// Where a stream is.
enum Phase {
    /// The answer's events, until it ends.
    Answer,
    /// The usage chunk, then `[DONE]`.
    Usage(Usage),
    Done,
    Ended,
}

/// What turns a stream's events into chunks.
trait Chunks {
    fn text(&self, text: String) -> Vec<String>;
    fn end(&self, done: Done) -> Vec<String>;
    fn usage(&self, usage: Usage) -> String;
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A stream between its events and its chunks.
struct Stream<C> {
    events: UnboundedReceiver<Event>,
    phase: Phase,
    chunks: C,
    tokens: Tokens,
    prompt_tokens: usize,
    cached_tokens: usize,
    include_usage: bool,
}

impl<C: Chunks> Stream<C> {
    /// The next chunks, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Vec<String>> {
        let (out, next) = match std::mem::replace(&mut self.phase, Phase::Ended) {
            Phase::Answer => match self.events.recv().await {
                Some(Event::Text(text)) => (self.chunks.text(text), Phase::Answer),
                Some(Event::Done(done)) => {
                    let usage = Usage::new(
                        self.prompt_tokens,
                        self.cached_tokens,
                        done.completion_tokens,
                    );
                    self.tokens.set(usage);
                    let next = match self.include_usage {
                        true => Phase::Usage(usage),
                        false => Phase::Done,
                    };
                    (self.chunks.end(done), next)
                }
                Some(Event::Failed(e)) => (vec![e.json()], Phase::Ended),
                Some(Event::Started { .. }) => (Vec::new(), Phase::Answer),
                None => (Vec::new(), Phase::Ended),
            },
            Phase::Usage(usage) => (vec![self.chunks.usage(usage)], Phase::Done),
            Phase::Done => (vec!["[DONE]".to_owned()], Phase::Ended),
            Phase::Ended => return None,
        };
        self.phase = next;
        Some(out)
    }
}

fn respond(
    started: Started,
    include_usage: bool,
    tokens: Tokens,
    first: Option<String>,
    chunks: impl Chunks + Send + 'static,
) -> Response {
    let state = Stream {
        events: started.events,
        phase: Phase::Answer,
        chunks,
        tokens,
        prompt_tokens: started.prompt_tokens,
        cached_tokens: started.cached_tokens,
        include_usage,
    };
    let body = stream::unfold(state, |mut state| async move {
        let out = state.next().await?;
        Some((out, state))
    });
    let body = stream::iter(first)
        .chain(body.flat_map(stream::iter))
        .map(|data| Ok::<_, Infallible>(Sse::default().data(data)));
    SseResponse::new(body).into_response()
}

struct ChatChunks {
    header: Header,
}

impl ChatChunks {
    fn chunk(&self, delta: Delta, finish_reason: Option<FinishReason>) -> String {
        json(&ChatChunk {
            header: self.header.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        })
    }
}

impl Chunks for ChatChunks {
    fn text(&self, text: String) -> Vec<String> {
        let delta = Delta {
            content: Some(text),
            ..Delta::default()
        };
        vec![self.chunk(delta, None)]
    }

    fn end(&self, done: Done) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(content) = done.content.filter(|c| !c.is_empty()) {
            out.extend(self.text(content));
        }
        if !done.calls.is_empty() {
            let delta = Delta {
                tool_calls: Some(tool_calls(&done.calls, true)),
                ..Delta::default()
            };
            out.push(self.chunk(delta, None));
        }
        out.push(self.chunk(Delta::default(), Some(done.finish)));
        out
    }

    fn usage(&self, usage: Usage) -> String {
        json(&ChatChunk {
            header: self.header.clone(),
            choices: Vec::new(),
            usage: Some(usage),
        })
    }
}

/// A streamed chat answer; `header` is the response's (its object is set here).
pub fn chat(started: Started, header: Header, include_usage: bool, tokens: Tokens) -> Response {
    let chunks = ChatChunks {
        header: Header {
            object: "chat.completion.chunk",
            ..header
        },
    };
    let role = Delta {
        role: Some("assistant"),
        content: Some(String::new()),
        ..Delta::default()
    };
    let first = chunks.chunk(role, None);
    respond(started, include_usage, tokens, Some(first), chunks)
}

struct TextChunks {
    header: Header,
}

impl TextChunks {
    fn chunk(&self, text: String, finish_reason: Option<FinishReason>) -> String {
        json(&TextCompletion {
            header: self.header.clone(),
            choices: vec![TextChoice {
                index: 0,
                text,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
        })
    }
}

impl Chunks for TextChunks {
    fn text(&self, text: String) -> Vec<String> {
        vec![self.chunk(text, None)]
    }

    fn end(&self, done: Done) -> Vec<String> {
        vec![self.chunk(String::new(), Some(done.finish))]
    }

    fn usage(&self, usage: Usage) -> String {
        json(&TextCompletion {
            header: self.header.clone(),
            choices: Vec::new(),
            usage: Some(usage),
        })
    }
}

/// A streamed completion.
pub fn completion(
    started: Started,
    header: Header,
    include_usage: bool,
    tokens: Tokens,
) -> Response {
    respond(started, include_usage, tokens, None, TextChunks { header })
}

/// The calls in OpenAI's shape: ids, arguments as JSON text; `indexed` in a stream.
pub fn tool_calls(calls: &[ToolCall], indexed: bool) -> Vec<ToolCallOut> {
    (calls.iter().enumerate())
        .map(|(i, call)| ToolCallOut {
            index: indexed.then_some(i),
            id: format!("call_{i}"),
            kind: "function",
            function: FunctionCallOut {
                name: call.name.clone(),
                arguments: serde_json::Value::Object(call.arguments.clone()).to_string(),
            },
        })
        .collect()
}

/// A whole chat answer's one choice.
pub fn chat_choice(text: String, done: Done) -> ChatChoice {
    let content = done.content.unwrap_or(text);
    let tool_calls = tool_calls(&done.calls, false);
    ChatChoice {
        index: 0,
        message: AssistantMessage {
            role: "assistant",
            // OpenAI's: null beside tool calls, when the answer has no text.
            content: match tool_calls.is_empty() || !content.is_empty() {
                true => Some(content),
                false => None,
            },
            refusal: None,
            tool_calls,
        },
        logprobs: None,
        finish_reason: done.finish,
    }
}
