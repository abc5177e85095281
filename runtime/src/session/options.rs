//! How a session is sized and what it does when full.

use std::str::FromStr;

use crate::dtype::KvDtype;
use crate::state::StateShape;

/// What feeding does when the context is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContextOverflow {
    /// Refuse the tokens with [`Error::ContextFull`].
    #[default]
    Error,
    /// Drop the oldest tokens after the first `shift_keep` (half of the rest, or as
    /// many as the batch needs), as llama.cpp's context shift does: cached keys are
    /// moved and rotated to their new positions, conv state needs nothing.
    Shift,
}

impl FromStr for ContextOverflow {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(ContextOverflow::Error),
            "shift" => Ok(ContextOverflow::Shift),
            other => Err(format!("unknown context overflow {other:?} (error, shift)")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Tokens the KV cache holds (capped at the model's max_position_embeddings).
    pub max_context: usize,
    /// Most tokens per forward pass; longer prompts are fed in several passes.
    pub batch: usize,
    /// Return logits for every fed token, not only the last.
    pub all_logits: bool,
    pub kv_dtype: KvDtype,
    pub overflow: ContextOverflow,
    /// Tokens a context shift keeps at the start (the bos token, a system prompt).
    pub shift_keep: usize,
    /// Tokens between two conv-state snapshots: the most a rewind feeds again.
    pub snapshot_interval: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_context: 4096,
            batch: 128,
            all_logits: false,
            kv_dtype: KvDtype::default(),
            overflow: ContextOverflow::default(),
            shift_keep: 1,
            snapshot_interval: 128,
        }
    }
}

impl SessionOptions {
    /// The sizes a session of `model` allocates for these options.
    pub(crate) fn shape(&self, max_position_embeddings: usize) -> StateShape {
        let max_context = self.max_context.min(max_position_embeddings).max(1);
        StateShape {
            batch: self.batch.clamp(1, max_context),
            max_context,
            all_logits: self.all_logits,
            kv_dtype: self.kv_dtype,
            snapshot_interval: self.snapshot_interval.max(1),
        }
    }
}
