//! A session as apps hold it: raw generation, and multi-turn chat through the model's
//! template that keeps the cache across turns. Each turn renders the whole conversation
//! and, when the rendering starts with the text the cache already holds, feeds only
//! what the new turn adds; otherwise (a template that rewrites earlier turns, or raw
//! generation in between) it starts the cache over from the rendered conversation.
//! Starting over is the only fallback: the conv layers' state cannot be rolled back to
//! a shorter prefix.

use std::path::Path;

use lfm_edge::{ChatTemplate, Error, Message};

use crate::error::{FfiError, FfiResult};
use crate::generator::{GenerateParams, Generation, Generator, Stream};
use crate::session_file::{self, AppState, SavedMessage};

pub struct ChatSession {
    generator: Generator,
    messages: Vec<Message>,
    /// The text of the tokens the session holds, when it holds a rendered conversation.
    cached_text: Option<String>,
    /// Compiled on the first chat turn: raw generation never needs it.
    template: Option<ChatTemplate>,
}

impl ChatSession {
    pub fn new(generator: Generator) -> ChatSession {
        ChatSession {
            generator,
            messages: Vec::new(),
            cached_text: None,
            template: None,
        }
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// Writes the session to `path` (`session_file`): its cache and its conversation.
    pub fn save(&self, path: &Path) -> FfiResult<()> {
        let app = AppState {
            messages: self.messages.iter().map(SavedMessage::from).collect(),
            cached_text: self.cached_text.clone(),
            pending: self.generator.pending(),
        };
        session_file::write(path, &app, &self.generator.save_state()?)
    }

    /// Replaces the session with the one saved at `path`, for the same model (its
    /// context must hold the saved tokens); on an error nothing changes.
    pub fn load(&mut self, path: &Path) -> FfiResult<()> {
        let (app, state) = session_file::read(path)?;
        self.generator
            .restore(&state, app.pending)
            .map_err(|e| match e {
                FfiError::Runtime(Error::SessionFile { message, .. }) => {
                    FfiError::Runtime(Error::SessionFile {
                        origin: path.display().to_string(),
                        message,
                    })
                }
                other => other,
            })?;
        self.messages = app.messages.into_iter().map(Message::from).collect();
        self.cached_text = app.cached_text;
        Ok(())
    }

    /// Forgets the cache and the conversation.
    pub fn reset(&mut self) {
        self.generator.reset();
        self.messages.clear();
        self.cached_text = None;
    }

    /// Continues the session with `prompt`: tokenized as `Tokenizer.encode` (bos
    /// included) when the session is empty, without special tokens when it continues.
    pub fn generate_text(
        &mut self,
        prompt: &str,
        params: &GenerateParams,
        stream: Stream,
    ) -> FfiResult<Generation> {
        let add_special_tokens = self.generator.tokens_held() == 0;
        let ids = self
            .generator
            .model()
            .tokenizer
            .encode_with(prompt, add_special_tokens)?;
        self.generate_tokens(&ids, params, stream)
    }

    pub fn generate_tokens(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        stream: Stream,
    ) -> FfiResult<Generation> {
        // The cache now holds text the conversation does not describe.
        self.cached_text = None;
        self.generator.generate(prompt, params, stream)
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
        params: &GenerateParams,
        stream: Stream,
    ) -> FfiResult<Generation> {
        params.validate()?;
        let model = self.generator.model().clone();
        let template = match &mut self.template {
            Some(template) => template,
            empty => empty.insert(ChatTemplate::for_model(&model)?),
        };
        self.messages.push(Message::new(role, content));
        let rendered = match template.render(&self.messages, true) {
            Ok(text) => text,
            Err(e) => {
                self.messages.pop();
                return Err(e.into());
            }
        };
        let new_text = match &self.cached_text {
            Some(cached) if rendered.starts_with(cached.as_str()) => &rendered[cached.len()..],
            _ => {
                log::debug!("chat: the cache does not hold this conversation; starting over");
                self.generator.reset();
                &rendered
            }
        };
        self.cached_text = None;
        let generated = model
            .tokenizer
            .encode_with(new_text, false)
            .map_err(Into::into)
            .and_then(|ids| self.generator.generate(&ids, params, stream));
        let generation = match generated {
            Ok(generation) => generation,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        if generation.prompt_complete {
            // Special tokens included: exactly what the cache holds. Should decoding
            // fail, the next turn merely starts over.
            let reply = model.tokenizer.decode(&generation.tokens, false);
            self.cached_text = reply.ok().map(|reply| rendered + &reply);
        }
        self.messages
            .push(Message::new("assistant", generation.text.as_str()));
        Ok(generation)
    }
}
