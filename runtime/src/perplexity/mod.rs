//! What a model variant loses: perplexity, bits per byte, and against a baseline's saved
//! log-probabilities the KL divergence, top-1 agreement and Δp, as llama.cpp's
//! `llama-perplexity` (with `--kl-divergence`) measures them, on the same chunks of the
//! same tokens (`chunks.rs`), with its baseline file format (`baseline.rs`) and its
//! statistics (`stats.rs`).
//!
//! Each chunk runs from an empty session of exactly `context` tokens, returning the
//! logits of every position; only the scored rows are read on the CPU.

mod baseline;
mod chunks;
mod stats;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::session::{Session, SessionOptions};

pub use baseline::{quantize_row, BaseRow, BaselineHeader, BaselineReader, BaselineWriter};
pub use chunks::{added_bos, scored_bytes, tokenize, Chunking};
pub use stats::{Comparison, Divergence, Estimate, Perplexity, TokenScore};

use stats::score;

/// llama-perplexity's default context.
pub const DEFAULT_CONTEXT: usize = 512;

/// How the text is chunked and fed.
#[derive(Clone, Debug)]
pub struct PerplexityOptions {
    /// Tokens per chunk (`n_ctx`).
    pub context: usize,
    /// The most chunks to evaluate [default: all the text holds, or the baseline's].
    pub chunks: Option<usize>,
    /// Tokens per forward pass [default: the context].
    pub batch: Option<usize>,
    /// The session's other options (its KV cache type); its context, batch and logits
    /// are set from the above.
    pub session: SessionOptions,
}

/// What to do with a baseline's log-probabilities.
#[derive(Clone, Copy, Debug)]
pub enum Baseline<'a> {
    None,
    /// Write the model's, to compare variants with later.
    Save(&'a Path),
    /// Compare the model with the ones saved in this file.
    Compare(&'a Path),
}

/// Where the evaluation is: chunks done out of all.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: usize,
    pub chunks: usize,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub chunking: Chunking,
    /// Tokens in the whole text (bos included).
    pub text_tokens: usize,
    /// UTF-8 bytes of the scored tokens' text.
    pub bytes_scored: usize,
    /// Every scored position, chunk by chunk.
    pub tokens: Vec<TokenScore>,
    pub perplexity: Perplexity,
    /// Present when compared with a baseline.
    pub comparison: Option<Comparison>,
}

impl Report {
    pub fn tokens_scored(&self) -> usize {
        self.tokens.len()
    }

    /// The model's negative log-likelihood in bits per byte of the scored text.
    pub fn bits_per_byte(&self) -> f64 {
        bits_per_byte(self.perplexity.nll_sum, self.bytes_scored)
    }

    /// The baseline's, when compared with one.
    pub fn bits_per_byte_base(&self) -> Option<f64> {
        let c = self.comparison.as_ref()?;
        Some(bits_per_byte(c.base.nll_sum, self.bytes_scored))
    }
}

fn bits_per_byte(nll_nats: f64, bytes: usize) -> f64 {
    nll_nats / std::f64::consts::LN_2 / bytes.max(1) as f64
}

/// Evaluates `model` on `text`, as `llama-perplexity -f text -c context` does, and
/// saves or compares a baseline. `progress` hears after each chunk.
pub fn evaluate(
    model: &Arc<Model>,
    text: &str,
    options: &PerplexityOptions,
    baseline: Baseline,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report> {
    check_context(model, options.context)?;
    let tokens = tokenize(&model.tokenizer, text)?;
    let bos = added_bos(&model.tokenizer)?;
    let vocab = model.config.vocab_size;
    let mut base = match baseline {
        Baseline::Compare(path) => Some(BaselineReader::open(path)?),
        _ => None,
    };
    let max_chunks = options.chunks.or(base.as_ref().map(|b| b.header.chunks));
    let chunking = Chunking::new(tokens.len(), options.context, max_chunks)?;
    if let (Some(reader), Baseline::Compare(path)) = (&base, baseline) {
        check_baseline(path, &reader.header, &chunking, vocab, &tokens)?;
    }
    let mut session = session(model, options)?;
    let mut writer = match baseline {
        Baseline::Save(path) => Some(BaselineWriter::create(
            path,
            &BaselineHeader {
                context: chunking.context,
                vocab,
                chunks: chunking.chunks,
                tokens: chunking.covered(&tokens).to_vec(),
            },
        )?),
        _ => None,
    };
    let mut scores = Vec::with_capacity(chunking.tokens_scored());
    let mut bytes_scored = 0;
    for i in 0..chunking.chunks {
        let text_chunk = &tokens[i * chunking.context..(i + 1) * chunking.context];
        bytes_scored += scored_bytes(&model.tokenizer, text_chunk, chunking.first())?;
        if let Some(reader) = &mut base {
            reader.next_chunk()?;
        }
        let chunk = Chunk {
            input: chunking.input(&tokens, i, bos),
            text: text_chunk,
            first: chunking.first(),
        };
        chunk.score(&mut session, writer.as_mut(), base.as_ref(), &mut scores)?;
        progress(Progress {
            done: i + 1,
            chunks: chunking.chunks,
        });
    }
    if let Some(writer) = writer {
        writer.finish()?;
    }
    let perplexity = Perplexity::of(scores.iter().map(|s| s.nll));
    let versus: Vec<(f64, Divergence)> = scores
        .iter()
        .filter_map(|s| Some((s.nll, s.versus_base?)))
        .collect();
    let comparison = base.map(|_| Comparison::of(&versus, &perplexity));
    Ok(Report {
        chunking,
        text_tokens: tokens.len(),
        bytes_scored,
        tokens: scores,
        perplexity,
        comparison,
    })
}

/// One chunk: what is fed, the text's tokens it predicts, where scoring starts.
struct Chunk<'a> {
    input: Vec<u32>,
    text: &'a [u32],
    first: usize,
}

impl Chunk<'_> {
    /// Feeds the chunk from an empty session and scores its positions `first …
    /// len−2`, each row also written to `writer` or compared with `base`'s.
    fn score(
        &self,
        session: &mut Session,
        mut writer: Option<&mut BaselineWriter>,
        base: Option<&BaselineReader>,
        scores: &mut Vec<TokenScore>,
    ) -> Result<()> {
        let vocab = session.model().config.vocab_size;
        let batch = session.options().batch;
        session.reset();
        for (b, slice) in self.input.chunks(batch).enumerate() {
            let logits = session.feed(slice)?;
            for (j, row) in logits.chunks_exact(vocab).enumerate() {
                let pos = b * batch + j;
                if pos < self.first || pos + 1 >= self.input.len() {
                    continue;
                }
                if let Some(writer) = writer.as_deref_mut() {
                    writer.write_row(row)?;
                }
                let base_row = match base {
                    Some(reader) => Some(reader.row(pos - self.first).ok_or_else(|| {
                        Error::Input(format!("the baseline has no row for position {pos}"))
                    })?),
                    None => None,
                };
                scores.push(score(row, self.text[pos + 1] as usize, base_row));
            }
        }
        Ok(())
    }
}

/// Fails on a context past the model's positions.
fn check_context(model: &Model, context: usize) -> Result<()> {
    let positions = model.config.max_position_embeddings;
    if context > positions {
        return Err(Error::Input(format!(
            "a context of {context} tokens is above the model's max_position_embeddings \
             of {positions}"
        )));
    }
    Ok(())
}

/// A session of exactly `context` tokens returning every position's logits: an error
/// if the VRAM budget holds fewer.
fn session(model: &Arc<Model>, options: &PerplexityOptions) -> Result<Session> {
    let context = options.context;
    if options.batch == Some(0) {
        return Err(Error::Input("a batch of 0 tokens feeds nothing".into()));
    }
    let session_options = SessionOptions {
        max_context: context,
        // As llama-perplexity caps n_batch at n_ctx.
        batch: options.batch.unwrap_or(context).min(context),
        all_logits: true,
        // Each chunk starts from empty and is never rewound: no batch ends early.
        snapshot_interval: context,
        ..options.session.clone()
    };
    let session = Session::new(model.clone(), &session_options)?;
    if session.max_context() < context {
        return Err(Error::Input(format!(
            "a context of {context} tokens does not fit: the VRAM budget holds {}",
            session.max_context()
        )));
    }
    Ok(session)
}

/// Refuses a baseline made from other tokens, another vocabulary or another context.
fn check_baseline(
    path: &Path,
    header: &BaselineHeader,
    chunking: &Chunking,
    vocab: usize,
    tokens: &[u32],
) -> Result<()> {
    let name = path.display();
    let differs = |what: String| Err(Error::Input(format!("baseline {name}: {what}")));
    if header.context != chunking.context {
        return differs(format!(
            "made with a context of {} tokens, this run uses {}",
            header.context, chunking.context
        ));
    }
    if header.vocab != vocab {
        return differs(format!(
            "made with a vocabulary of {} tokens, this model has {vocab}",
            header.vocab
        ));
    }
    if header.chunks != chunking.chunks {
        return differs(format!(
            "holds {} chunks, this run evaluates {}",
            header.chunks, chunking.chunks
        ));
    }
    let covered = chunking.covered(tokens);
    if let Some(i) = (0..covered.len()).find(|&i| covered[i] != header.tokens[i]) {
        return differs(format!(
            "made from other tokens: token {i} is {} there and {} in this text",
            header.tokens[i], covered[i]
        ));
    }
    Ok(())
}
