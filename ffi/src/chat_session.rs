//! A session as apps hold it, over the library's generation stack: a prompt goes in
//! through `Session::prefill` / `Session::prefill_text` (whatever the cache already
//! holds is kept), and `TokenStream` samples, streams and feeds. Two modes share it:
//! raw generation, where each call continues the text of the previous one, and chat,
//! where each turn renders the whole conversation with the model's template and only
//! what differs from the cache is fed.

use std::path::Path;

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
}

impl ChatSession {
    pub fn new(session: Session) -> ChatSession {
        ChatSession {
            session,
            pending: None,
            messages: Vec::new(),
            template: None,
        }
    }

    /// Tokens the session holds: those in the cache and the pending one.
    pub fn tokens_held(&self) -> usize {
        self.session.position() + usize::from(self.pending.is_some())
    }

    pub fn capacity(&self) -> usize {
        self.session.max_context()
    }

    /// Forgets the cache and the conversation.
    pub fn reset(&mut self) {
        self.session.reset();
        self.pending = None;
        self.messages.clear();
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
    /// however it ended (an end-of-sequence, the token limit, a cancel).
    pub fn chat(
        &mut self,
        role: &str,
        content: &str,
        options: &GenerateOptions,
        stream: Stream,
    ) -> FfiResult<Outcome> {
        let model = self.session.model().clone();
        let template = match &mut self.template {
            Some(template) => template,
            empty => empty.insert(ChatTemplate::for_model(&model)?),
        };
        self.messages.push(Message::new(role, content));
        let outcome = template
            .render(&self.messages, true)
            .map_err(FfiError::from)
            .and_then(|rendered| {
                // The rendered reply holds the pending token's text.
                self.pending = None;
                self.run(options, stream, |session, cancelled| {
                    session.prefill_text_until(&rendered, cancelled)
                })
            });
        match outcome {
            Ok(outcome) => {
                let reply = Message::new("assistant", outcome.text.as_str());
                self.messages.push(reply);
                Ok(outcome)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
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
        outcome.text = generation.text;
        outcome.stop = generation.stop;
        Ok(outcome)
    }
}
