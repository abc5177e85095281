//! The generation loop every binding shares: feed the prompt in the session's batches
//! (so a cancel lands between them), then sample, stream and feed one token at a time
//! until a stop condition.

use std::sync::Arc;

use lfm_edge::generate::end_of_sequence_ids;
use lfm_edge::{Error, Model, Sampler, Session, TextStream};

use crate::error::{FfiError, FfiResult};

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f32,
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            temperature: 0.0,
            seed: 0,
            ignore_eos: false,
        }
    }
}

impl GenerateParams {
    pub fn validate(&self) -> FfiResult<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(FfiError::InvalidArgument(format!(
                "temperature {} is not a finite number >= 0",
                self.temperature
            )));
        }
        Ok(())
    }
}

/// Why a generation ended (`lfm_stop_reason`; ABI, never renumber).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens = 0,
    /// The model produced an end-of-sequence token (which is neither streamed nor kept).
    EndOfSequence = 1,
    /// The token callback asked to stop.
    Callback = 2,
    /// The cancel flag was set.
    Cancelled = 3,
    /// The cache has no room for another token.
    ContextFull = 4,
}

#[derive(Clone, Debug)]
pub struct Generation {
    /// Tokens fed before the first sample (the prompt, and the token a previous call left).
    pub prompt_tokens: usize,
    /// False only when a cancel landed while the prompt was being fed.
    pub prompt_complete: bool,
    pub tokens: Vec<u32>,
    /// What was streamed, concatenated.
    pub text: String,
    pub stop: StopReason,
}

/// How a call streams: `on_token` gets each token and the text it completes (possibly
/// empty: UTF-8 characters are never split) and returns whether to go on; `cancelled`
/// is polled before each forward pass.
pub struct Stream<'a> {
    pub cancelled: &'a dyn Fn() -> bool,
    pub on_token: &'a mut dyn FnMut(&str, u32) -> bool,
}

pub struct Generator {
    session: Session,
    /// The last generated token, streamed but not yet fed: the next call feeds it first,
    /// so ending a generation costs no forward pass and the cache still ends up holding
    /// every generated token.
    pending: Option<u32>,
    eos: Vec<u32>,
}

impl Generator {
    /// Generates in `session`, feeding prompts in the session's batches.
    pub fn new(session: Session) -> Generator {
        Generator {
            eos: end_of_sequence_ids(session.model()),
            session,
            pending: None,
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        self.session.model()
    }

    /// Tokens the session holds: those in the cache and the pending one.
    pub fn tokens_held(&self) -> usize {
        self.session.position() + usize::from(self.pending.is_some())
    }

    pub fn capacity(&self) -> usize {
        self.session.max_context()
    }

    pub fn reset(&mut self) {
        self.session.reset();
        self.pending = None;
    }

    /// The last generated token, streamed but not fed yet.
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// The session's state as `Session::save_state` writes it.
    pub fn save_state(&self) -> FfiResult<Vec<u8>> {
        Ok(self.session.save_state()?)
    }

    /// Replaces the session's state with `state` and the pending token with `pending`.
    pub fn restore(&mut self, state: &[u8], pending: Option<u32>) -> FfiResult<()> {
        let vocab = self.model().config.vocab_size;
        if let Some(id) = pending.filter(|&id| id as usize >= vocab) {
            return Err(FfiError::InvalidArgument(format!(
                "the saved pending token {id} is out of range: vocab_size is {vocab}"
            )));
        }
        self.session.restore_state(state)?;
        self.pending = pending;
        Ok(())
    }

    /// Feeds `prompt` after what the session holds, then generates into `stream`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        stream: Stream,
    ) -> FfiResult<Generation> {
        params.validate()?;
        // All of it, before any chunk is fed.
        if !prompt.is_empty() {
            self.session.check_tokens(prompt)?;
        }
        let held = self.session.position();
        let feed: Vec<u32> = self.pending.iter().chain(prompt).copied().collect();
        if feed.is_empty() {
            return Err(FfiError::InvalidArgument(
                "the prompt is empty and there is no generated token to continue from".into(),
            ));
        }
        if held + feed.len() > self.capacity() {
            return Err(FfiError::ContextFull {
                held,
                new: feed.len(),
                capacity: self.capacity(),
            });
        }
        let mut generation = Generation {
            prompt_tokens: 0,
            prompt_complete: false,
            tokens: Vec::new(),
            text: String::new(),
            stop: StopReason::Cancelled,
        };
        let mut logits = Vec::new();
        for chunk in feed.chunks(self.session.options().batch) {
            if (stream.cancelled)() {
                return Ok(generation);
            }
            logits = self.session.feed(chunk)?;
            self.pending = None; // it went in with the first chunk
            generation.prompt_tokens += chunk.len();
        }
        generation.prompt_complete = true;
        generation.stop = self.sample_loop(logits, params, stream, &mut generation)?;
        Ok(generation)
    }

    fn sample_loop(
        &mut self,
        mut logits: Vec<f32>,
        params: &GenerateParams,
        stream: Stream,
        generation: &mut Generation,
    ) -> FfiResult<StopReason> {
        let model = self.model().clone();
        let mut sampler = Sampler::new(params.temperature, params.seed);
        let mut text_stream = TextStream::new();
        loop {
            if generation.tokens.len() == params.max_tokens {
                return Ok(StopReason::MaxTokens);
            }
            if (stream.cancelled)() {
                return Ok(StopReason::Cancelled);
            }
            // Room for the pending token and the one about to be sampled.
            if self.tokens_held() >= self.capacity() {
                return Ok(StopReason::ContextFull);
            }
            if let Some(id) = self.pending {
                logits = match self.session.step(id) {
                    // A shared KV pool with no block left: the pending token stays.
                    Err(Error::KvPoolFull { .. }) => return Ok(StopReason::ContextFull),
                    fed => fed?,
                };
                self.pending = None;
            }
            let id = sampler.sample(&logits);
            if !params.ignore_eos && self.eos.contains(&id) {
                return Ok(StopReason::EndOfSequence);
            }
            let text = text_stream.push(&model.tokenizer, id)?;
            generation.tokens.push(id);
            generation.text.push_str(&text);
            self.pending = Some(id);
            if !(stream.on_token)(&text, id) {
                return Ok(StopReason::Callback);
            }
        }
    }
}
