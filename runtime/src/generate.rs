//! The generation loop every front end shares (the command line's `generate` and
//! `chat`, the example): from the logits of the last token a session holds, sample,
//! stream and feed one token at a time until a stop condition.
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

use crate::error::Result;
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
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
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop_strings: Vec::new(),
            ignore_eos: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    /// An end-of-sequence token (`eos`, `<|im_end|>`), which is not kept.
    EndOfSequence,
    /// A stop string appeared in the text.
    StopString,
    /// The callback returned [`Flow::Stop`].
    Callback,
    /// The context is full and the session does not shift it.
    ContextFull,
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
    /// Sampled tokens (an end-of-sequence token excluded). All but the last are in the
    /// session; the last is fed by whatever comes next (`Session::prefill` of the next
    /// turn, or `Session::feed`).
    pub tokens: Vec<u32>,
    /// Everything streamed, concatenated.
    pub text: String,
    pub stop: StopReason,
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
    mut logits: Vec<f32>,
    options: &GenerateOptions,
    mut on_chunk: impl FnMut(Chunk<'_>) -> Flow,
) -> Result<Generation> {
    let model = session.model().clone();
    let eos = if options.ignore_eos {
        Vec::new()
    } else {
        end_of_sequence_ids(&model)
    };
    let mut sampler = Sampler::with_config(options.sampler.clone());
    sampler.accept(session.tokens());
    let mut text = TextStream::new(&model.tokenizer);
    let mut stops = StopStrings::new(&options.stop_strings);
    let mut out = Generation {
        tokens: Vec::new(),
        text: String::new(),
        stop: StopReason::MaxTokens,
    };
    out.stop = loop {
        if out.tokens.len() >= options.max_tokens {
            break StopReason::MaxTokens;
        }
        let id = sampler.sample(&logits);
        if eos.contains(&id) {
            break StopReason::EndOfSequence;
        }
        out.tokens.push(id);
        let released = stops.push(&text.push(id)?);
        out.text.push_str(&released.text);
        let flow = on_chunk(Chunk {
            text: &released.text,
            token: Some(id),
        });
        if released.stopped {
            break StopReason::StopString;
        }
        if flow == Flow::Stop {
            break StopReason::Callback;
        }
        if out.tokens.len() == options.max_tokens {
            break StopReason::MaxTokens;
        }
        if !session.has_room(1) {
            break StopReason::ContextFull;
        }
        logits = session.feed(&[id])?;
    };
    let held = stops.finish();
    if !held.is_empty() && out.stop != StopReason::StopString {
        out.text.push_str(&held);
        on_chunk(Chunk {
            text: &held,
            token: None,
        });
    }
    Ok(out)
}
