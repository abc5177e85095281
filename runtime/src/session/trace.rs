//! The debug mode: a batch fed as usual, with the forward pass's named intermediates
//! read back on the way, to diff layer by layer against HF transformers (hooks on the
//! modules of the same names; scripts/make_fixtures.py's `trace`). It costs a readback
//! buffer and a split compute pass per call, so it stays off the hot path.

use super::Session;
use crate::error::{Error, Result};

/// One intermediate: (n_tokens, hidden) values, row-major.
#[derive(Clone, Debug)]
pub struct Intermediate {
    /// The HF module whose output this is: `model.embed_tokens`, `model.layers.{i}`
    /// (the residual stream after the layer), `model.layers.{i}.operator` (after its
    /// conv or attention, residual included), `model.embedding_norm`.
    pub name: String,
    pub values: Vec<f32>,
}

/// What a traced batch gave: its logits, as `feed` returns them, and the intermediates
/// in the order the forward pass computes them.
#[derive(Clone, Debug)]
pub struct Trace {
    pub logits: Vec<f32>,
    pub intermediates: Vec<Intermediate>,
}

impl Session {
    /// Feeds `tokens` as one batch, as [`Session::feed`] does, reading back every named
    /// intermediate of the forward pass.
    pub fn trace(&mut self, tokens: &[u32]) -> Result<Trace> {
        self.settle()?;
        self.check_tokens(tokens)?;
        let (n, pos) = (tokens.len(), self.position());
        let interval = self.options.snapshot_interval;
        let fits = n <= self.options.batch
            && pos + n <= self.max_context()
            && pos % interval + n <= interval;
        if !fits {
            // Whatever would make `feed` split the batch or shift the context.
            return Err(Error::Input(format!(
                "a trace feeds one batch: {n} tokens at position {pos} do not fit (batch {}, context {}, snapshot interval {interval})",
                self.options.batch,
                self.max_context()
            )));
        }
        let hidden = self.model.config.hidden_size;
        let taps = &self.graph.taps;
        let gpu = self.model.gpu.clone();
        let out = gpu.zeros("trace", taps.len() * n * hidden)?;
        let names: Vec<String> = taps.iter().map(|t| t.name.clone()).collect();
        let logits: Vec<f32> = self.run_batch(tokens, Some(&out), super::Readback::Logits)?;
        let values = gpu.read_f32(&out, names.len() * n * hidden)?;
        let intermediates = names
            .into_iter()
            .zip(values.chunks(n * hidden))
            .map(|(name, v)| Intermediate {
                name,
                values: v.to_vec(),
            })
            .collect();
        Ok(Trace {
            logits,
            intermediates,
        })
    }
}
