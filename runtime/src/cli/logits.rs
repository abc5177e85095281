//! `lfm-edge logits`: the logits of every position, as a NumPy array.

use std::path::Path;

use lfm_edge::{npy, Result};

use super::ids;
use super::model::ModelArgs;

/// How the tokens go through the model.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// The whole prompt in one pass.
    Prefill,
    /// One token at a time through the cache.
    Decode,
}

pub fn run(args: &ModelArgs, tokens: &str, out: &Path, mode: Mode) -> Result<()> {
    let ids = ids::parse(tokens)?;
    let model = args.load()?;
    let vocab = model.config.vocab_size;
    let logits = match mode {
        Mode::Prefill => args.session(&model, true)?.feed(&ids)?,
        Mode::Decode => {
            let mut session = args.session(&model, false)?;
            let mut all = Vec::with_capacity(ids.len() * vocab);
            for &id in &ids {
                all.extend(session.step(id)?);
            }
            all
        }
    };
    npy::write_f32(out, ids.len(), vocab, &logits)
}
