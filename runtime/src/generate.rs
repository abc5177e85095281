//! The generation loop every front end shares (the command line's `generate` and
//! `chat`, the example): from the logits of the last token a session holds, sample,
//! stream and feed one token at a time until a stop condition. [`TokenStream`] is the
//! loop as an iterator; [`generate`] drives it with a callback.
//!
//! ```no_run
//! # fn demo(session: &mut lfm_edge::Session, prompt: &[u32]) -> lfm_edge::Result<()> {
//! use lfm_edge::generate::{generate, Flow, GenerateOptions};
//! let logits = session.prefill(prompt)?;
//! let options = GenerateOptions { max_tokens: 64, ..GenerateOptions::default() };
//! let done = generate(session, logits, &options, |chunk| {
//!     print!("{}", chunk.text);
//!     Flow::Continue
//! })?;
//! println!("\n({} tokens, {:?})", done.tokens.len(), done.stop);
//! # Ok(()) }
//! ```

use crate::constraint::{Constraint, Guide, NextTokens};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig, TopLogits};
use crate::session::Session;
use crate::stop::StopStrings;
use crate::tokenizer::TextStream;

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Text that ends the generation; it is neither streamed nor part of the result.
    pub stop_strings: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// What the output must be (a JSON schema, a regex, a grammar): the tokens it
    /// forbids are masked before the sampling chain, and end-of-sequence tokens are
    /// allowed only where it may end.
    pub constraint: Option<Constraint>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop_strings: Vec::new(),
            ignore_eos: false,
            constraint: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` ran out ("length"); under a constraint the output may be
    /// incomplete ([`Generation::grammar_complete`]).
    MaxTokens,
    /// An end-of-sequence token (`eos`, `<|im_end|>`), which is not kept; or, under a
    /// constraint with `ignore_eos`, a grammar that allows nothing more.
    EndOfSequence,
    /// A stop string appeared in the text.
    StopString,
    /// The callback returned [`Flow::Stop`].
    Callback,
    /// The context is full and the session does not shift it, or the shared KV pool
    /// has no block left for the next token.
    ContextFull,
    /// The cancel hook ([`TokenStream::cancel_when`]) said so before a forward pass.
    Cancelled,
}

/// Whether the generation goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What the callback sees after each sampled token.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// The new text: possibly empty, never half a UTF-8 character, never part of a
    /// stop string.
    pub text: &'a str,
    /// The token just sampled; `None` for text held back until the end.
    pub token: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Generation {
    /// Sampled tokens (an end-of-sequence token excluded).
    pub tokens: Vec<u32>,
    /// The last of `tokens` when the session does not hold it yet: whatever comes next
    /// feeds it (`Session::prefill` of the next turn, or `Session::feed`).
    pub unfed: Option<u32>,
    /// Everything streamed, concatenated.
    pub text: String,
    pub stop: StopReason,
    /// Under a constraint: whether the output is a whole sentence of its grammar (with a
    /// trigger: whether it is not inside one). `None` without a constraint.
    pub grammar_complete: Option<bool>,
}

/// The tokens that end a generation: the config's and tokenizer's end-of-sequence
/// tokens, and `<|im_end|>`, which closes a chat turn.
pub fn end_of_sequence_ids(model: &Model) -> Vec<u32> {
    let mut ids = model.config.eos_token_ids.clone();
    ids.extend(&model.tokenizer.eos_token_ids);
    ids.extend(model.tokenizer.token_id("<|im_end|>"));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Samples up to `options.max_tokens` tokens after `logits`, the logits of the last
/// token `session` holds (what `feed` or `prefill` returned), streaming text to
/// `on_chunk`. Penalties count every token the session holds, as HF's do.
pub fn generate(
    session: &mut Session,
    logits: Vec<f32>,
    options: &GenerateOptions,
    on_chunk: impl FnMut(Chunk<'_>) -> Flow,
) -> Result<Generation> {
    TokenStream::new(session, logits, options).run(on_chunk)
}

/// One sampled decode step: feeds `token` and picks the next one from the candidates
/// the GPU picked (`Session::step_top`, its next step recorded while the GPU runs this
/// one), reading the row back only where they cannot decide; the pick joins the
/// history the sampler's penalties look at.
pub(crate) fn sampled_step(
    session: &mut Session,
    sampler: &mut Sampler,
    token: u32,
) -> Result<u32> {
    let top = session.step_top_ahead(token, sampler.config().temperature)?;
    sample_candidates(session, sampler, &top, &NextTokens::Any)
}

/// The sampler's pick from the candidates the GPU picked among the tokens `next`
/// allows, or, where they cannot decide, from the row read back and masked by `next`.
fn sample_candidates(
    session: &Session,
    sampler: &mut Sampler,
    top: &TopLogits,
    next: &NextTokens,
) -> Result<u32> {
    match sampler.sample_top(top) {
        Some(id) => Ok(id),
        None => {
            let mut row = session.last_logits()?;
            next.apply(&mut row);
            Ok(sampler.sample(&row))
        }
    }
}

/// A piece of streamed text, as [`TokenStream`] yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Possibly empty, never half a UTF-8 character, never part of a stop string.
    pub text: String,
    /// The token just sampled; `None` for text held back until the end.
    pub token: Option<u32>,
}

/// The generation loop as an iterator: each `next` feeds the previous token, samples
/// one and yields its text; dropping the stream ends the generation (the last sampled
/// token is then not in the session, as after [`generate`]).
///
/// ```no_run
/// # fn demo(session: &mut lfm_edge::Session, prompt: &[u32]) -> lfm_edge::Result<()> {
/// use lfm_edge::generate::{GenerateOptions, TokenStream};
/// let logits = session.prefill(prompt)?;
/// let mut stream = TokenStream::new(session, logits, &GenerateOptions::default());
/// for piece in &mut stream {
///     print!("{}", piece?.text);
/// }
/// println!("\n({:?})", stream.stop_reason());
/// # Ok(()) }
/// ```
pub struct TokenStream<'s> {
    session: &'s mut Session,
    logits: Vec<f32>,
    /// The next token, where the step picked it from what the GPU picked (its argmax,
    /// or its candidates); `logits` are then stale.
    picked: Option<u32>,
    max_tokens: usize,
    eos: Vec<u32>,
    sampler: Sampler,
    text: TextStream,
    stops: StopStrings,
    /// Sampled so far (an end-of-sequence token excluded).
    tokens: Vec<u32>,
    /// The last sampled token, not fed yet: the next `next` feeds it.
    unfed: Option<u32>,
    /// Why the stream ends, set by the step that finds it (a stop string: with the
    /// last piece).
    stop: Option<StopReason>,
    /// Nothing more to yield.
    done: bool,
    /// Polled before each forward pass.
    cancelled: Option<&'s dyn Fn() -> bool>,
    /// The constraint's parser, when there is one.
    guide: Option<Guide>,
    /// A constraint that did not compile: the first `next` returns it, before any token.
    refused: Option<Error>,
}

impl<'s> TokenStream<'s> {
    pub fn new(session: &'s mut Session, logits: Vec<f32>, options: &GenerateOptions) -> Self {
        let model = session.model().clone();
        let eos = if options.ignore_eos {
            Vec::new()
        } else {
            end_of_sequence_ids(&model)
        };
        let mut sampler = Sampler::with_config(options.sampler.clone());
        sampler.accept(session.tokens());
        let (guide, refused) = match &options.constraint {
            Some(constraint) => match Guide::new(constraint, &model.tokenizer, &eos) {
                Ok(guide) => (Some(guide), None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        };
        TokenStream {
            session,
            logits,
            picked: None,
            max_tokens: options.max_tokens,
            eos,
            sampler,
            text: TextStream::new(),
            stops: StopStrings::new(&options.stop_strings),
            tokens: Vec::new(),
            unfed: None,
            stop: None,
            done: false,
            cancelled: None,
            guide,
            refused,
        }
    }

    /// Ends the stream with [`StopReason::Cancelled`] before the first forward pass
    /// after `cancelled` returns true (an app's cancel button, a closed connection).
    pub fn cancel_when(mut self, cancelled: &'s dyn Fn() -> bool) -> Self {
        self.cancelled = Some(cancelled);
        self
    }

    /// Drives the stream to its end, handing each piece to `on_chunk`, which may stop
    /// it ([`StopReason::Callback`]); the text held back for a stop string still goes
    /// out, as a last chunk without a token.
    pub fn run(mut self, mut on_chunk: impl FnMut(Chunk<'_>) -> Flow) -> Result<Generation> {
        let mut text = String::new();
        let mut stopped = false;
        while let Some(piece) = self.next() {
            let piece = piece?;
            text.push_str(&piece.text);
            let flow = on_chunk(Chunk {
                text: &piece.text,
                token: piece.token,
            });
            if flow == Flow::Stop && piece.token.is_some() {
                stopped = self.stop.is_none();
                break;
            }
        }
        if stopped {
            let held = self.finish();
            self.stop = Some(StopReason::Callback);
            if !held.is_empty() {
                text.push_str(&held);
                on_chunk(Chunk {
                    text: &held,
                    token: None,
                });
            }
        }
        // The session as the generation leaves it: its last token unfed.
        self.session.settle()?;
        Ok(Generation {
            grammar_complete: self.guide.as_mut().map(Guide::is_complete),
            stop: self.stop.unwrap_or(StopReason::MaxTokens),
            unfed: self.unfed,
            tokens: self.tokens,
            text,
        })
    }

    /// Why the stream ends; `None` while it runs (or after an error).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// The tokens sampled so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Ends the stream where it is and returns the text held back (for a possible stop
    /// string, or the bytes of an unfinished character; empty when there is none).
    pub fn finish(&mut self) -> String {
        self.done = true;
        let tokenizer = &self.session.model().tokenizer;
        // The ids decoded before; decoding them again cannot fail.
        let tail = self.text.finish(tokenizer).unwrap_or_default();
        let released = self.stops.push(&tail);
        if released.stopped {
            self.stop = Some(StopReason::StopString);
            return released.text;
        }
        released.text + &self.stops.finish()
    }

    /// The next sampled piece, or `None` once a stop condition holds (recorded in
    /// `self.stop`).
    fn step(&mut self) -> Result<Option<Piece>> {
        if let Some(e) = self.refused.take() {
            return Err(e);
        }
        if self.stop.is_some() {
            return Ok(None);
        }
        if self.tokens.len() >= self.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let mut next = NextTokens::Any;
        if let Some(id) = self.unfed {
            if self.cancelled.is_some_and(|cancelled| cancelled()) {
                self.stop = Some(StopReason::Cancelled);
                return Ok(None);
            }
            if !self.session.has_room(1) {
                self.stop = Some(StopReason::ContextFull);
                return Ok(None);
            }
            match self.feed(id) {
                // A pool shared with other sessions has no block left: the token
                // stays unfed, for a later call once they give blocks back.
                Err(Error::KvPoolFull { .. }) => {
                    self.stop = Some(StopReason::ContextFull);
                    return Ok(None);
                }
                stepped => (self.picked, next) = stepped?,
            }
            self.unfed = None;
        } else if let Some(guide) = &mut self.guide {
            next = guide.next_tokens(self.logits.len())?;
        }
        if next == NextTokens::Nothing {
            self.stop = Some(StopReason::EndOfSequence);
            return Ok(None);
        }
        let id = match self.picked.take() {
            Some(id) => id,
            None => {
                // Forbidden tokens go before the sampling chain sees the logits.
                next.apply(&mut self.logits);
                self.sampler.sample(&self.logits)
            }
        };
        if !next.allows(id) {
            return Err(Error::Input(format!(
                "constrained decoding: no token the grammar allows has a finite logit (picked {id})"
            )));
        }
        if self.eos.contains(&id) {
            self.stop = Some(StopReason::EndOfSequence);
            return Ok(None);
        }
        if let Some(guide) = &mut self.guide {
            guide.accept(id)?;
        }
        self.tokens.push(id);
        self.unfed = Some(id);
        let piece = self.text.push(&self.session.model().tokenizer, id)?;
        let released = self.stops.push(&piece);
        if released.stopped {
            self.stop = Some(StopReason::StopString);
        }
        Ok(Some(Piece {
            text: released.text,
            token: Some(id),
        }))
    }
}

impl TokenStream<'_> {
    /// Feeds `token`; the next token where the GPU picked it (`None`: the row is in
    /// `self.logits`), and the tokens the grammar allows next. A plain argmax brings
    /// back one id, a sampled chain the candidates it can decide from. The step that
    /// feeds a greedy pick is under way when it comes back; under a grammar, the mask is
    /// computed while the GPU runs the step, and the pick keeps to it.
    fn feed(&mut self, token: u32) -> Result<(Option<u32>, NextTokens)> {
        let config = self.sampler.config();
        let session = &mut *self.session;
        let Some(guide) = &mut self.guide else {
            let picked = match () {
                _ if config.is_greedy() => Some(session.step_greedy_ahead(token)?),
                _ if config.samples_from_top() => {
                    let id = sampled_step(session, &mut self.sampler, token)?;
                    return Ok((Some(id), NextTokens::Any));
                }
                _ => {
                    self.logits = session.step(token)?;
                    None
                }
            };
            self.sampler.accept(picked.as_slice());
            return Ok((picked, NextTokens::Any));
        };
        session.submit_step(token)?;
        let next = guide.next_tokens(session.model().config.vocab_size)?;
        let allowed = match &next {
            // Nothing may follow: the generation ends.
            NextTokens::Nothing => return Ok((None, next)),
            NextTokens::Any => None,
            NextTokens::Only(allowed) => Some(&allowed[..]),
        };
        let picked = match () {
            _ if config.is_greedy() => {
                let id = session.pick_greedy_ahead(allowed)?;
                self.sampler.accept(&[id]);
                Some(id)
            }
            _ if config.samples_from_top() => {
                let top = session.pick_top(config.temperature, allowed)?;
                Some(sample_candidates(session, &mut self.sampler, &top, &next)?)
            }
            _ => {
                self.logits = session.last_logits()?;
                None
            }
        };
        Ok((picked, next))
    }
}

impl Iterator for TokenStream<'_> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(piece)) => Some(Ok(piece)),
            Ok(None) => {
                // Ended: what was held back for a stop string goes out last.
                let held = match self.stop {
                    Some(StopReason::StopString) => String::new(),
                    _ => self.finish(),
                };
                self.done = true;
                (!held.is_empty()).then_some(Ok(Piece {
                    text: held,
                    token: None,
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
