//! One request's turn on the GPU, on a blocking thread of its own: take the session
//! that already holds the most of the prompt, feed the rest, and stream the answer as
//! events to the HTTP side. Polled before every forward pass, prompt batches included:
//! a client that went away or a server shutting down ends the answer there, and a
//! pool with no block left for the next token takes one from an idle session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::OwnedSemaphorePermit;

use super::api::FinishReason;
use super::error::ApiError;
use super::slots::{Prompt, Slots};
use crate::error::Error;
use crate::generate::{GenerateOptions, StopReason, TokenStream};
use crate::model::Model;
use crate::tools::{ToolCall, ToolUse};

/// A prompt as it comes to the GPU thread.
pub enum Input {
    /// A conversation rendered through the chat template (special tokens as text).
    Chat(String),
    /// A completion's text prompt, encoded with the tokenizer's special tokens.
    Text(String),
    /// A completion's token ids.
    Ids(Vec<u32>),
}

/// A request, checked and ready for the GPU.
pub struct Task {
    pub input: Input,
    /// The request field the prompt came from, for errors about it.
    pub prompt_field: &'static str,
    /// `None`: as many as the context leaves.
    pub max_tokens: Option<usize>,
    /// Its constraint is `response_format`'s, checked here; the tools add theirs.
    pub options: GenerateOptions,
    /// Tools were offered (their constraint checked already): the answer is held back
    /// and split into text and calls.
    pub tools: Option<ToolUse>,
}

/// A request that has its prompt in a session's cache, its answer on the way.
pub struct Started {
    pub events: UnboundedReceiver<Event>,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
}

/// What the HTTP side hears, in this order: `Started`, any `Text`, then `Done`; or
/// `Failed` at any point.
pub enum Event {
    /// The prompt is in the cache.
    Started {
        prompt_tokens: usize,
        cached_tokens: usize,
    },
    Text(String),
    Done(Done),
    Failed(ApiError),
}

pub struct Done {
    pub finish: FinishReason,
    pub completion_tokens: usize,
    /// With tools: the answer's text outside its calls (sent whole, not as `Text`).
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
}

/// Runs `task` on a session of `slots` (the permit says one is idle), telling
/// `events`. The session goes back before the last event is sent, so that a client's
/// next request finds it.
pub fn run(
    model: &Model,
    slots: &Arc<Slots>,
    permit: OwnedSemaphorePermit,
    task: Task,
    events: UnboundedSender<Event>,
    stopping: &AtomicBool,
) {
    let last = match answer(model, slots, permit, task, &events, stopping) {
        Ok(done) => Event::Done(done),
        Err(e) => Event::Failed(e),
    };
    // The client may have gone: nobody to tell.
    let _ = events.send(last);
}

fn answer(
    model: &Model,
    slots: &Arc<Slots>,
    permit: OwnedSemaphorePermit,
    task: Task,
    events: &UnboundedSender<Event>,
    stopping: &AtomicBool,
) -> Result<Done, ApiError> {
    if stopping.load(Ordering::Acquire) {
        return Err(ApiError::busy("the server is shutting down"));
    }
    let tokenizer = &model.tokenizer;
    let (prompt, whole) = match task.input {
        Input::Chat(text) => {
            let ids = tokenizer.encode_with(&text, false)?;
            (Prompt::Text(text), ids)
        }
        Input::Text(text) => {
            let ids = tokenizer.encode(&text)?;
            (Prompt::Ids(ids.clone()), ids)
        }
        Input::Ids(ids) => (Prompt::Ids(ids.clone()), ids),
    };
    let lease = slots.take(&prompt, &whole, permit)?;
    let mut session = lease.session();
    let ids = match &prompt {
        Prompt::Text(text) => session.encode_continuation(text)?,
        Prompt::Ids(ids) => ids.clone(),
    };
    session
        .check_tokens(&ids)
        .map_err(|e| ApiError::invalid(task.prompt_field, e.to_string()))?;
    let context = session.max_context();
    if ids.len() >= context {
        return Err(ApiError::invalid(
            task.prompt_field,
            format!(
                "the prompt is {} tokens, and the context holds {context} with room for the answer",
                ids.len()
            ),
        )
        .code("context_length_exceeded"));
    }
    if let Some(constraint) = &task.options.constraint {
        (constraint.check(tokenizer))
            .map_err(|e| ApiError::invalid("response_format", e.to_string()))?;
    }
    let cancelled = || events.is_closed() || stopping.load(Ordering::Acquire);
    let held = crate::kv_pool::blocks_for(session.position());
    let needed = crate::kv_pool::blocks_for(ids.len()).saturating_sub(held);
    if !slots.make_room(needed) {
        return Err(ApiError::busy(
            "the KV cache is full, and every session holding it is busy",
        ));
    }
    let cached_tokens = session.reusable_prefix(&ids);
    let logits = match session.prefill_until(&ids, &cancelled) {
        Err(Error::Cancelled) => {
            return Err(ApiError::busy(
                "cancelled: the client left, or the server is shutting down",
            ))
        }
        logits => logits?,
    };
    let _ = events.send(Event::Started {
        prompt_tokens: ids.len(),
        cached_tokens,
    });
    // Before each forward pass of the answer: a block for the next token if the pool
    // has none left (most tokens need none), then whether to go on at all.
    let before_pass = || {
        if slots.pool().free_blocks() == 0 {
            slots.make_room(1);
        }
        cancelled()
    };
    let mut options = GenerateOptions {
        max_tokens: task
            .max_tokens
            .unwrap_or(usize::MAX)
            .min(context - ids.len()),
        ..task.options
    };
    if let Some(tool_use) = &task.tools {
        (tool_use.constrain(&mut options))
            .map_err(|e| ApiError::invalid("tools", e.to_string()))?;
    }
    let mut stream = TokenStream::new(&mut session, logits, &options).cancel_when(&before_pass);
    let mut text = String::new();
    for piece in &mut stream {
        let piece = piece?;
        match task.tools {
            Some(_) => text.push_str(&piece.text),
            None if !piece.text.is_empty() => {
                let _ = events.send(Event::Text(piece.text));
            }
            None => {}
        }
    }
    let tokens = stream.tokens().to_vec();
    let mut finish = match stream.stop_reason() {
        Some(StopReason::EndOfSequence | StopReason::StopString | StopReason::Callback) => {
            FinishReason::Stop
        }
        // A shutdown's cut is an answer cut short too.
        Some(StopReason::MaxTokens | StopReason::ContextFull | StopReason::Cancelled) | None => {
            FinishReason::Length
        }
    };
    drop(stream);
    drop(session);
    drop(lease);
    let (content, calls) = match &task.tools {
        Some(tool_use) => {
            let answer = tool_use.answer(&tokens, tokenizer)?;
            if !answer.calls.is_empty() {
                finish = FinishReason::ToolCalls;
            }
            match answer.unparsed {
                // Cut off by max_tokens, or written freely (tool_choice none): the answer
                // as streamed (without the markers, special tokens).
                Some(why) => {
                    log::debug!("the answer's tool call does not parse ({why}); sent as text");
                    (Some(text), Vec::new())
                }
                None => (Some(answer.content), answer.calls),
            }
        }
        None => (None, Vec::new()),
    };
    Ok(Done {
        finish,
        completion_tokens: tokens.len(),
        content,
        calls,
    })
}
