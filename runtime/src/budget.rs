//! Planning GPU memory within a budget (`--vram-budget 1.5GiB`): the weights, then per
//! session the activations of a batch and the cache, which grows with the context.
//! The plan is made before anything is allocated, from the weight files and the config,
//! and again from the loaded model's exact weight bytes; the cache gets what the weights
//! and the scratch leave, and the context is however many tokens that holds.

use std::path::Path;

use crate::config::{LayerKind, ModelConfig};
use crate::error::{Error, Result};
use crate::kv_pool::{blocks_for, KvPool};
use crate::ops;
use crate::session::options::SessionOptions;
use crate::state::{State, StateShape};
use crate::units::format_size;
use crate::vram::VramBudget;

/// Bytes of the attention KV cache per token of context: only the attention layers
/// have one (LFM2's conv layers carry a fixed-size state instead).
pub fn kv_bytes_per_token(c: &ModelConfig, options: &SessionOptions) -> u64 {
    let attention = c
        .layers
        .iter()
        .filter(|k| **k == LayerKind::Attention)
        .count();
    (attention * 2 * c.kv_dim() * options.kv_dtype.bytes()) as u64
}

/// Bytes of the tensors in a model's weight files (safetensors data sections, or a
/// GGUF file's data section): what the weights take in VRAM, read before loading.
pub fn weight_file_bytes(path: &Path) -> Result<u64> {
    if path.is_file() {
        let file = crate::gguf::GgufFile::open(path)?;
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        return Ok(len.saturating_sub(file.data_offset()));
    }
    let mut total = 0;
    for file in crate::safetensors::weight_files(path)? {
        // Each file: an 8-byte header length, the JSON header, then the tensor data.
        let mut header_len = [0u8; 8];
        let mut f = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
        std::io::Read::read_exact(&mut f, &mut header_len).map_err(|e| Error::io(&file, e))?;
        let len = f.metadata().map_err(|e| Error::io(&file, e))?.len();
        total += len.saturating_sub(8 + u64::from_le_bytes(header_len));
    }
    Ok(total)
}

/// How a budget divides between weights, per-session scratch and cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub budget: u64,
    pub weights: u64,
    pub sessions: usize,
    /// Per session: activations of a batch, logits, their readback, conv state.
    pub session_fixed: u64,
    /// Per session and token of context: KV cache, RoPE table, conv snapshots.
    pub per_token: u64,
    /// KV cache alone, per token.
    pub kv_per_token: u64,
    /// The context each session gets (at most the model's and the requested one).
    pub context: usize,
    /// KV blocks for `sessions` sessions of `context` tokens: the size of a shared
    /// [`KvPool`] for them (sessions that share a prefix through `fork` need fewer).
    pub kv_blocks: usize,
    /// Bytes the plan uses: weights + sessions · session bytes at `context`.
    pub total: u64,
}

/// Bytes of each of a session's two readback buffers for greedy picks (the copy's
/// alignment rounds the 4-byte id up).
pub(crate) const ID_READBACK_BYTES: u64 = 16;

/// Bytes one session allocates with `options` at a context of `context` tokens, besides
/// its KV cache: activations of a batch, logits and their readback, conv state and
/// snapshots, the RoPE table.
pub(crate) fn session_scratch_bytes(
    c: &ModelConfig,
    options: &SessionOptions,
    context: usize,
) -> u64 {
    let shape = shape_at(c, options, context);
    let logits = (if shape.all_logits { shape.batch } else { 1 } * c.vocab_size * 4) as u64;
    // The readback buffer holds the logits or the top logits' record; the record has
    // a buffer of its own too (`Session::step_top`), greedy picks two of their own,
    // and the picks a mask and their chunks' picks.
    let readback = logits.max(ops::TOP_RECORD_BYTES)
        + 2 * ID_READBACK_BYTES
        + ops::TOP_RECORD_BYTES
        + ops::allowed_bytes(c.vocab_size)
        + ops::picks_scratch_bytes(c.vocab_size);
    State::planned_bytes(c, &shape) + readback
}

/// Bytes one session with a KV pool of its own allocates at a context of `context`.
fn session_bytes(c: &ModelConfig, options: &SessionOptions, context: usize) -> u64 {
    let shape = shape_at(c, options, context);
    let kv = KvPool::bytes(c, shape.kv_dtype, blocks_for(shape.max_context));
    session_scratch_bytes(c, options, context) + kv
}

fn shape_at(c: &ModelConfig, options: &SessionOptions, context: usize) -> StateShape {
    SessionOptions {
        max_context: context,
        ..options.clone()
    }
    .shape(c.max_position_embeddings)
}

/// The largest context in `1..=cap` for which `fits` holds (bytes grow with the
/// context, so it holds for every smaller one), or `None` when not even one token fits.
fn largest_context(cap: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    if !fits(1) {
        return None;
    }
    let (mut fits_up_to, mut over) = (1, cap + 1);
    while over - fits_up_to > 1 {
        let mid = fits_up_to + (over - fits_up_to) / 2;
        if fits(mid) {
            fits_up_to = mid;
        } else {
            over = mid;
        }
    }
    Some(fits_up_to)
}

/// `options` with the largest context (at most the requested one) that what `budget`
/// has left holds for a session, with a KV pool of its own or not.
pub(crate) fn fit_session(
    c: &ModelConfig,
    options: &SessionOptions,
    budget: &VramBudget,
    own_pool: bool,
) -> Result<SessionOptions> {
    let available = budget.available();
    let bytes = |context| match own_pool {
        true => session_bytes(c, options, context),
        false => session_scratch_bytes(c, options, context),
    };
    let cap = options.shape(c.max_position_embeddings).max_context;
    let context = largest_context(cap, |context| bytes(context) <= available).ok_or_else(|| {
        Error::Budget {
            budget: budget.total(),
            message: format!(
                "a session of even one token needs {} bytes, and {available} bytes ({}) are left",
                bytes(1),
                format_size(available)
            ),
        }
    })?;
    Ok(SessionOptions {
        max_context: context,
        ..options.clone()
    })
}

/// Sessions sharing one KV pool in what `budget` has left (a server's): the largest
/// context (at most the requested one) for which `sessions` sessions' scratch and a
/// pool holding one whole context fit; and the pool's blocks: `sessions` whole
/// contexts, or as many as are left, sessions then competing for them.
pub fn fit_shared_pool(
    c: &ModelConfig,
    options: &SessionOptions,
    budget: &VramBudget,
    sessions: usize,
) -> Result<(SessionOptions, usize)> {
    let available = budget.available();
    let sessions = sessions.max(1);
    let scratch = |context| sessions as u64 * session_scratch_bytes(c, options, context);
    let per_block = KvPool::bytes(c, options.kv_dtype, 1);
    let bytes = |context| scratch(context) + blocks_for(context) as u64 * per_block;
    let cap = options.shape(c.max_position_embeddings).max_context;
    let context = largest_context(cap, |context| bytes(context) <= available).ok_or_else(|| {
        Error::Budget {
            budget: budget.total(),
            message: format!(
                "{sessions} session(s) sharing a pool of even one token need {} bytes, and \
                 {available} bytes ({}) are left",
                bytes(1),
                format_size(available)
            ),
        }
    })?;
    let whole = sessions * blocks_for(context);
    let blocks = match per_block {
        0 => whole,
        _ => (((available - scratch(context)) / per_block) as usize).min(whole),
    };
    let options = SessionOptions {
        max_context: context,
        ..options.clone()
    };
    Ok((options, blocks))
}

impl MemoryPlan {
    /// Plans `sessions` sessions of `options` next to `weights` bytes of weights in
    /// `budget`: the context is the most tokens that fit, capped at `options.max_context`.
    pub fn new(
        c: &ModelConfig,
        weights: u64,
        budget: u64,
        options: &SessionOptions,
        sessions: usize,
    ) -> Result<MemoryPlan> {
        let sessions = sessions.max(1);
        let fail = |message: String| Err(Error::Budget { budget, message });
        if weights > budget {
            return fail(format!(
                "the weights alone need {weights} bytes ({}), {} more than the budget",
                format_size(weights),
                format_size(weights - budget)
            ));
        }
        let total = |context| weights + sessions as u64 * session_bytes(c, options, context);
        let cap = options.max_context.min(c.max_position_embeddings).max(1);
        let Some(fits) = largest_context(cap, |context| total(context) <= budget) else {
            return fail(format!(
                "{weights} bytes of weights and {sessions} session(s) of even one token need {} bytes",
                total(1)
            ));
        };
        let fixed = session_bytes(c, options, 0);
        let per_token = (session_bytes(c, options, fits) - fixed) / fits as u64;
        Ok(MemoryPlan {
            budget,
            weights,
            sessions,
            session_fixed: fixed,
            per_token,
            kv_per_token: kv_bytes_per_token(c, options),
            context: fits,
            kv_blocks: sessions * blocks_for(fits),
            total: total(fits),
        })
    }

    /// `options` with the planned context.
    pub fn apply(&self, options: &SessionOptions) -> SessionOptions {
        SessionOptions {
            max_context: self.context,
            ..options.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_size;

    fn config() -> ModelConfig {
        // LFM2-1.2B's shapes.
        ModelConfig::from_json(
            r#"{"model_type": "lfm2", "vocab_size": 65536, "hidden_size": 2048,
                "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "block_ff_dim": 12288,
                "block_multiple_of": 256, "block_ffn_dim_multiplier": 1.0,
                "block_auto_adjust_ff_dim": true, "max_position_embeddings": 128000,
                "full_attn_idxs": [2, 5, 8, 10, 12, 14]}"#,
        )
        .unwrap()
    }

    #[test]
    fn lfm2_1b2_kv_cache_is_12_kib_per_token_in_f16() {
        let c = config();
        assert_eq!(
            kv_bytes_per_token(&c, &SessionOptions::default()),
            12 * 1024
        );
        let f32_cache = SessionOptions {
            kv_dtype: crate::dtype::KvDtype::F32,
            ..SessionOptions::default()
        };
        assert_eq!(kv_bytes_per_token(&c, &f32_cache), 24 * 1024);
    }

    #[test]
    fn the_context_is_what_the_budget_leaves() {
        let c = config();
        let options = SessionOptions {
            max_context: 1 << 20,
            ..SessionOptions::default()
        };
        let weights = 2_340_000_000;
        let budget = parse_size("3GiB").unwrap();
        let plan = MemoryPlan::new(&c, weights, budget, &options, 1).unwrap();
        assert!(plan.total <= budget);
        assert!(weights + session_bytes(&c, &options, plan.context + 1) > budget);
        assert!(plan.context > 10_000, "{plan:?}");
        // Two sessions share what is left.
        let two = MemoryPlan::new(&c, weights, budget, &options, 2).unwrap();
        assert!(two.context < plan.context / 2 + 1, "{two:?}");
        // The requested context caps it.
        let small = SessionOptions {
            max_context: 100,
            ..options
        };
        assert_eq!(
            MemoryPlan::new(&c, weights, budget, &small, 1)
                .unwrap()
                .context,
            100
        );
    }

    #[test]
    fn weights_over_budget_name_the_numbers() {
        let err = MemoryPlan::new(&config(), 2000, 1000, &SessionOptions::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1000") && err.contains("2000"), "{err}");
    }
}
