//! How a text is cut and scored, as llama.cpp's `llama-perplexity` does: tokenized
//! once (bos first when the model adds one), cut into `n_ctx`-token chunks, each
//! chunk's first token replaced by bos, and only positions `n_ctx/2 … n_ctx−2` scored,
//! each predicting the token after it.

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// The chunks of a tokenized text and which of their positions are scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunking {
    /// Tokens per chunk (llama.cpp's `n_ctx`).
    pub context: usize,
    /// Chunks evaluated.
    pub chunks: usize,
}

impl Chunking {
    /// The chunks of `n_tokens` tokens at `context` tokens each, at most `max_chunks`
    /// of them: at least 2 must fit, as llama.cpp requires.
    pub fn new(n_tokens: usize, context: usize, max_chunks: Option<usize>) -> Result<Chunking> {
        if context < 4 {
            return Err(Error::Input(format!(
                "a context of {context} tokens scores nothing: perplexity needs at least 4"
            )));
        }
        if n_tokens < 2 * context {
            return Err(Error::Input(format!(
                "the text is {n_tokens} tokens, too short for 2 chunks of {context} \
                 (at least {} tokens are needed)",
                2 * context
            )));
        }
        let available = n_tokens / context;
        let chunks = match max_chunks {
            Some(0) => return Err(Error::Input("no chunks to evaluate (0 asked for)".into())),
            Some(n) => n.min(available),
            None => available,
        };
        Ok(Chunking { context, chunks })
    }

    /// The first scored position (the model has seen half the chunk by then).
    pub fn first(&self) -> usize {
        self.context / 2
    }

    /// Positions scored per chunk: `first … context−2`.
    pub fn scored_per_chunk(&self) -> usize {
        self.context - 1 - self.first()
    }

    pub fn tokens_scored(&self) -> usize {
        self.chunks * self.scored_per_chunk()
    }

    /// The tokens the chunks cover, as they are in the text.
    pub fn covered<'a>(&self, tokens: &'a [u32]) -> &'a [u32] {
        &tokens[..self.chunks * self.context]
    }

    /// Chunk `i` as it is fed: the text's tokens with the first replaced by `bos`.
    pub fn input(&self, tokens: &[u32], i: usize, bos: Option<u32>) -> Vec<u32> {
        let mut chunk = tokens[i * self.context..(i + 1) * self.context].to_vec();
        if let Some(bos) = bos {
            chunk[0] = bos;
        }
        chunk
    }
}

/// The token the tokenizer puts before a text, if it adds one: its post-processor's
/// bos, found by encoding a text with and without special tokens.
pub fn added_bos(tokenizer: &Tokenizer) -> Result<Option<u32>> {
    let probe = "a";
    let with = tokenizer.encode_with(probe, true)?;
    let without = tokenizer.encode_with(probe, false)?;
    let bos = with
        .first()
        .copied()
        .filter(|_| with.len() > without.len() && with[1..].starts_with(&without));
    Ok(bos)
}

/// The text's tokens as llama.cpp tokenizes it for perplexity: bos (when the model
/// adds one) and the text, with no other special token added.
pub fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut tokens: Vec<u32> = added_bos(tokenizer)?.into_iter().collect();
    tokens.extend(tokenizer.encode_with(text, false)?);
    Ok(tokens)
}

/// UTF-8 bytes of the text that a chunk (its tokens as in the text) scores: what its
/// scored tokens add to the chunk's decoded text, i.e. the decoded length of the whole
/// chunk less that of the tokens before the first scored one. Decoding in sequence, not
/// token by token, counts a byte-level or byte-fallback token that holds part of a
/// character by the bytes it adds, not as a replacement character. Only a character
/// split across the start of the scored span is off: its first part decodes alone as
/// U+FFFD, so the count is at most 2 bytes short for that chunk.
pub fn scored_bytes(tokenizer: &Tokenizer, chunk: &[u32], first: usize) -> Result<usize> {
    let before = tokenizer.decode(&chunk[..first + 1], false)?.len();
    let all = tokenizer.decode(chunk, false)?.len();
    Ok(all.saturating_sub(before))
}
