//! A session as apps hold it, over the library's generation stack: a prompt goes in
//! through `Session::prefill` / `Session::prefill_text` (whatever the cache already
//! holds is kept), and `TokenStream` samples, streams and feeds. Two modes share it:
//! raw generation, where each call continues the text of the previous one, and chat,
//! where each turn renders the whole conversation with the model's template and only
//! what differs from the cache is fed. Chat turns may list tools the model calls
//! (`ToolUse`, the library's, as the command line's): the calls of the last reply are
//! kept, parsed, for the app to run.

use std::path::Path;

use lfm_edge::tools::{calls_to_json, ToolCall, ToolUse};
use lfm_edge::{
    ChatTemplate, Error, Flow, GenerateOptions, Message, Session, StopReason, TokenStream,
};

use crate::error::{FfiError, FfiResult};
use crate::session_file::{self, AppState, SavedMessage};

/// How a call streams: `on_token` gets each piece of text and its token (possibly
/// empty text: UTF-8 characters are never split; no token for text held back for a
/// stop string and let go at the end) and returns whether to go on; `cancelled` is
/// polled before each forward pass.
pub struct Stream<'a> {
    pub cancelled: &'a dyn Fn() -> bool,
    pub on_token: &'a mut dyn FnMut(&str, Option<u32>) -> bool,
}

/// How a call went.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Tokens of the prompt that the cache did not hold already.
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// The generated ids (the last one possibly not fed yet), end-of-sequence left out.
    pub tokens: Vec<u32>,
    /// What was streamed, concatenated.
    pub text: String,
    pub stop: StopReason,
}

/// `lfm_stop_reason`, Java's `StopReason` (ABI, never renumber).
pub fn stop_code(stop: StopReason) -> i32 {
    match stop {
        StopReason::MaxTokens => 0,
        StopReason::EndOfSequence => 1,
        StopReason::Callback => 2,
        StopReason::Cancelled => 3,
        StopReason::ContextFull => 4,
        StopReason::StopString => 5,
    }
}

pub struct ChatSession {
    session: Session,
    /// The last generated token when the session does not hold it yet: raw generation
    /// feeds it before what comes next (so ending a generation costs no forward pass).
    pending: Option<u32>,
    messages: Vec<Message>,
    /// Compiled on the first chat turn: raw generation never needs it.
    template: Option<ChatTemplate>,
    /// The tools chat turns list, and the choice they decode under; `None`: no tools.
    tools: Option<ToolUse>,
    /// The calls in the last chat reply.
    calls: Vec<ToolCall>,
}

impl ChatSession {
    pub fn new(session: Session) -> ChatSession {
        ChatSession {
            session,
            pending: None,
            messages: Vec::new(),
            template: None,
            tools: None,
            calls: Vec::new(),
        }
    }

    /// Tokens the session holds: those in the cache and the pending one.
    pub fn tokens_held(&self) -> usize {
        self.session.position() + usize::from(self.pending.is_some())
    }

    pub fn capacity(&self) -> usize {
        self.session.max_context()
    }

    /// Forgets the cache and the conversation (and so the last reply's calls); the tools
    /// stay.
    pub fn reset(&mut self) {
        self.session.reset();
        self.pending = None;
        self.messages.clear();
        self.calls.clear();
    }

    /// The tools later chat turns list (a JSON array in OpenAI's shape; `None` or `[]`:
    /// none) and the choice they decode under (`auto`, `required`, `none` or a tool's
    /// name), checked together as the library checks them; on an error nothing changes.
    pub fn set_tools(&mut self, tools: Option<&str>, choice: &str) -> FfiResult<()> {
        let tokenizer = &self.session.model().tokenizer;
        let tool_use = ToolUse::from_json(tools.unwrap_or("[]"), choice, tokenizer)?;
        self.tools = (!tool_use.tools().is_empty()).then_some(tool_use);
        Ok(())
    }

    /// The calls in the last chat reply (none when it made none, or when a call it opened
    /// did not parse: cut off by `max_tokens`, or written freely under `none`).
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// [`ChatSession::tool_calls`] as one JSON array, `[{"name": …, "arguments": {…}}]`:
    /// what `lfm-edge generate --print-tool-calls` prints.
    pub fn tool_calls_json(&self) -> String {
        calls_to_json(&self.calls)
    }

    /// Writes the session to `path` (`session_file`): its cache and its conversation.
    pub fn save(&self, path: &Path) -> FfiResult<()> {
        let app = AppState {
            messages: self.messages.iter().map(SavedMessage::from).collect(),
            pending: self.pending,
        };
        session_file::write(path, &app, &self.session.save_state()?)
    }

    /// Replaces the session with the one saved at `path`, for the same model (its
    /// context must hold the saved tokens); on an error nothing changes.
    pub fn load(&mut self, path: &Path) -> FfiResult<()> {
        let (app, state) = session_file::read(path, self.session.max_state_bytes())?;
        let vocab = self.session.model().config.vocab_size;
        if let Some(id) = app.pending.filter(|&id| id as usize >= vocab) {
            return Err(FfiError::InvalidArgument(format!(
                "{}: the saved pending token {id} is out of range: vocab_size is {vocab}",
                path.display()
            )));
        }
        self.session.restore_state(&state).map_err(|e| match e {
            Error::SessionFile { message, .. } => Error::SessionFile {
                origin: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        self.pending = app.pending;
        self.messages = app.messages.into_iter().map(Message::from).collect();
        self.calls.clear();
        Ok(())
    }

    /// Continues the session with `prompt`: tokenized as `Tokenizer.encode` (bos
    /// included) when the session is empty, without special tokens when it continues.
    pub fn generate_text(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        stream: Stream,
    ) -> FfiResult<Outcome> {
        let add_special_tokens = self.tokens_held() == 0;
        let ids = self
            .session
            .model()
            .tokenizer
            .encode_with(prompt, add_special_tokens)?;
        self.generate_tokens(&ids, options, stream)
    }

    /// Continues the session with `prompt`, ids fed as they are.
    pub fn generate_tokens(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        stream: Stream,
    ) -> FfiResult<Outcome> {
        if !prompt.is_empty() {
            self.session.check_tokens(prompt)?;
        }
        let new: Vec<u32> = self.pending.iter().chain(prompt).copied().collect();
        if new.is_empty() {
            return Err(FfiError::InvalidArgument(
                "the prompt is empty and there is no generated token to continue from".into(),
            ));
        }
        let mut all = self.session.tokens().to_vec();
        all.extend(new);
        self.run(options, stream, |session, cancelled| {
            session.prefill_until(&all, cancelled)
        })
    }

    /// Adds a turn (a system prompt, an earlier exchange) without running the model.
    pub fn add_message(&mut self, role: &str, content: &str) {
        self.messages.push(Message::new(role, content));
    }

    /// Adds a turn and generates the assistant's reply, which joins the conversation
    /// however it ended (an end-of-sequence, the token limit, a cancel). With tools, the
    /// conversation is rendered with them, the reply decodes under the tool choice's
    /// constraint, and it joins with its call markers, its calls kept.
    pub fn chat(
        &mut self,
        role: &str,
        content: &str,
        options: &GenerateOptions,
        stream: Stream,
    ) -> FfiResult<Outcome> {
        self.calls.clear();
        self.messages.push(Message::new(role, content));
        let replied = self.prepare_turn(options).and_then(|(rendered, options)| {
            // The rendered reply holds the pending token's text.
            self.pending = None;
            let outcome = self.run(&options, stream, |session, cancelled| {
                session.prefill_text_until(&rendered, cancelled)
            })?;
            let reply = self.read_reply(&outcome)?;
            Ok((outcome, reply))
        });
        match replied {
            Ok((outcome, reply)) => {
                self.messages.push(Message::new("assistant", reply));
                Ok(outcome)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }

    /// The conversation rendered for the next reply, and the options it decodes under.
    fn prepare_turn(&mut self, options: &GenerateOptions) -> FfiResult<(String, GenerateOptions)> {
        let model = self.session.model().clone();
        let template = match &mut self.template {
            Some(template) => template,
            empty => empty.insert(ChatTemplate::for_model(&model)?),
        };
        let listed = self.tools.as_ref().map(ToolUse::tools);
        let rendered = template.render_with_tools(&self.messages, listed, true)?;
        let mut options = options.clone();
        if let Some(tools) = &self.tools {
            tools.constrain(&mut options)?;
        }
        Ok((rendered, options))
    }

    /// The text of a reply as it joins the conversation; with tools, its calls are kept.
    fn read_reply(&mut self, outcome: &Outcome) -> FfiResult<String> {
        let Some(tools) = &self.tools else {
            return Ok(outcome.text.clone());
        };
        let answer = tools.answer(&outcome.tokens, &self.session.model().tokenizer)?;
        if let Some(why) = answer.unparsed {
            log::info!("no tool calls read from the reply: {why}");
        }
        self.calls = answer.calls;
        Ok(answer.text)
    }

    /// Makes the cache hold the prompt with `prefill`, then generates into `stream`.
    fn run(
        &mut self,
        options: &GenerateOptions,
        stream: Stream,
        prefill: impl FnOnce(&mut Session, &dyn Fn() -> bool) -> lfm_edge::Result<Vec<f32>>,
    ) -> FfiResult<Outcome> {
        options
            .sampler
            .validate()
            .map_err(FfiError::InvalidArgument)?;
        // A constraint that does not compile is refused before the prompt is fed, so
        // that the session (its pending token included) is left as it was.
        if let Some(constraint) = &options.constraint {
            constraint.check(&self.session.model().tokenizer)?;
        }
        let before = self.session.tokens().to_vec();
        let prefilled = prefill(&mut self.session, stream.cancelled);
        let kept = before
            .iter()
            .zip(self.session.tokens())
            .take_while(|(a, b)| a == b)
            .count();
        let mut outcome = Outcome {
            prompt_tokens: self.session.position() - kept,
            generated_tokens: 0,
            tokens: Vec::new(),
            text: String::new(),
            stop: StopReason::Cancelled,
        };
        let logits = match prefilled {
            Err(Error::Cancelled) => return Ok(outcome),
            fed => fed?,
        };
        self.pending = None;
        let on_token = stream.on_token;
        let generation = TokenStream::new(&mut self.session, logits, options)
            .cancel_when(stream.cancelled)
            .run(|chunk| match on_token(chunk.text, chunk.token) {
                true => Flow::Continue,
                false => Flow::Stop,
            })?;
        // A token the context has no room for is streamed, but never held.
        self.pending = generation.unfed.filter(|_| self.session.has_room(1));
        outcome.generated_tokens = generation.tokens.len();
        outcome.tokens = generation.tokens;
        outcome.text = generation.text;
        outcome.stop = generation.stop;
        Ok(outcome)
    }
}
