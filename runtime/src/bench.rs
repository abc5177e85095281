//! `lfm-edge bench`: prefill and decode speed of a model on its adapter, measured as
//! llama.cpp's `llama-bench` measures them, so that the two compare on one device:
//! a prompt of random tokens fed from an empty cache (its `pp` test), and tokens
//! generated one at a time from an empty cache (its `tg` test), each `repeat` times
//! after a warm-up, reported as mean ± standard deviation of tokens per second. With a
//! depth (its `-d`), both start from a cache already holding that many tokens.
//!
//! Decode is memory-bound: its ceiling is the adapter's memory bandwidth over the bytes
//! of weights a token reads. A copy kernel measures that bandwidth on the same adapter,
//! so decode can be reported as a fraction of it, and decode's matvec alone on one
//! large matrix measures what the projections could reach (`probe`).

mod probe;
mod profile;

pub use probe::{copy_bandwidth, matvec_bandwidth, MatvecProbe};
pub use profile::{
    profile, profile_prefill, profile_prefill_timed, profile_timed, FamilyTime, PrefillProfile,
    Profile,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::generate::sampled_step;
use crate::model::Model;
use crate::sampler::{Sampler, SamplerConfig};
use crate::session::{KvDtype, Session, SessionOptions};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub repeat: usize,
    /// Tokens in the cache before each test (llama-bench's `-d`), fed once, untimed.
    pub depth: usize,
    /// The KV cache type (llama-bench's `-ctk`/`-ctv`, f16 by default in both).
    pub kv_dtype: KvDtype,
}

/// Tokens per second over the repetitions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub mean: f64,
    pub stddev: f64,
}

impl Rate {
    fn of(tokens: usize, times: &[Duration]) -> Rate {
        let rates: Vec<f64> = times
            .iter()
            .map(|t| tokens as f64 / t.as_secs_f64())
            .collect();
        let n = rates.len() as f64;
        let mean = rates.iter().sum::<f64>() / n;
        let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Rate {
            mean,
            stddev: variance.sqrt(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub prefill: Rate,
    pub decode: Rate,
    /// Decoding with [`SAMPLED`]: each token's candidates picked on the GPU and read
    /// back, the sampler's chain on the CPU.
    pub sampled_decode: Rate,
    /// Bytes of weights one decoded token reads (`Model::decode_weight_bytes`).
    pub decode_weight_bytes: u64,
    /// Bytes of GPU memory allocated while the benchmark ran: weights and the session.
    pub weight_vram_bytes: u64,
    pub session_vram_bytes: u64,
}

impl BenchReport {
    /// Bytes per second decode reads weights at.
    pub fn decode_bandwidth(&self) -> f64 {
        self.decode.mean * self.decode_weight_bytes as f64
    }

    pub fn peak_vram_bytes(&self) -> u64 {
        self.weight_vram_bytes + self.session_vram_bytes
    }
}

/// The sampling `bench` times beside greedy decoding: a chain its candidates decide.
pub const SAMPLED: SamplerConfig = SamplerConfig {
    temperature: 0.8,
    top_k: 40,
    seed: 1,
    ..SamplerConfig::GREEDY
};

/// Token ids spread over the vocabulary, the same every run (llama-bench feeds random
/// ids too: the speed of a dense model does not depend on which).
fn prompt(len: usize, vocab: usize) -> Vec<u32> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect()
}

/// Back to a cache holding `depth` tokens, as they were first fed (empty for 0).
fn back_to_depth(session: &mut Session, depth: usize) -> Result<()> {
    if depth == 0 {
        session.reset();
        return Ok(());
    }
    session.rewind(depth)
}

/// Feeds the prompt in one pass (up to 512 tokens, llama-bench's micro-batch) from an
/// empty cache, and generates `gen_tokens` from an empty cache, greedily and then
/// sampled with [`SAMPLED`]; with a depth, from a cache holding `depth` tokens instead
/// (the session rewound to them before each run).
pub fn bench(model: &Arc<Model>, options: &BenchOptions) -> Result<BenchReport> {
    if options.prompt_tokens == 0 || options.gen_tokens == 0 || options.repeat == 0 {
        return Err(Error::Input(
            "bench needs at least one prompt token, one generated token and one repeat".into(),
        ));
    }
    // Checked before anything is sized from them: the run must fit the context.
    let longest = options.depth + options.prompt_tokens.max(options.gen_tokens);
    let positions = model.config.max_position_embeddings;
    if longest >= positions {
        return Err(Error::Input(format!(
            "bench: {longest} tokens do not fit the model's context of {positions} \
             (max_position_embeddings)"
        )));
    }
    let batch = options.prompt_tokens.min(512);
    let mut session = Session::new(
        model.clone(),
        &SessionOptions {
            max_context: longest + 1,
            batch,
            // Batches end on snapshot boundaries: keep the prompt's passes whole.
            snapshot_interval: batch,
            kv_dtype: options.kv_dtype,
            ..SessionOptions::default()
        },
    )?;
    if session.max_context() <= longest {
        return Err(Error::Input(format!(
            "bench: {longest} tokens do not fit the context of {} that the VRAM budget leaves",
            session.max_context()
        )));
    }
    let ids = prompt(
        options.depth + options.prompt_tokens,
        model.config.vocab_size,
    );
    let (context, tokens) = ids.split_at(options.depth);
    if !context.is_empty() {
        session.feed(context)?;
    }
    let start_over = |session: &mut Session| back_to_depth(session, options.depth);
    let prefill = |session: &mut Session| -> Result<Duration> {
        start_over(session)?;
        let start = Instant::now();
        session.feed(tokens)?;
        Ok(start.elapsed())
    };
    let decode = |session: &mut Session, n: usize| -> Result<Duration> {
        start_over(session)?;
        let start = Instant::now();
        let mut next = tokens[0];
        for _ in 0..n {
            next = session.step_greedy_ahead(next)?;
        }
        let elapsed = start.elapsed();
        session.settle()?;
        Ok(elapsed)
    };
    let sampled_decode = |session: &mut Session, n: usize| -> Result<Duration> {
        start_over(session)?;
        let mut sampler = Sampler::with_config(SAMPLED);
        let start = Instant::now();
        let mut next = tokens[0];
        for _ in 0..n {
            next = sampled_step(session, &mut sampler, next)?;
        }
        Ok(start.elapsed())
    };
    // Warm-up: first launches pay for driver-side compilation and page faults.
    prefill(&mut session)?;
    decode(&mut session, 2)?;
    sampled_decode(&mut session, 2)?;
    let prefill_times = (0..options.repeat)
        .map(|_| prefill(&mut session))
        .collect::<Result<Vec<_>>>()?;
    let decode_times = (0..options.repeat)
        .map(|_| decode(&mut session, options.gen_tokens))
        .collect::<Result<Vec<_>>>()?;
    let sampled_times = (0..options.repeat)
        .map(|_| sampled_decode(&mut session, options.gen_tokens))
        .collect::<Result<Vec<_>>>()?;
    Ok(BenchReport {
        prefill: Rate::of(options.prompt_tokens, &prefill_times),
        decode: Rate::of(options.gen_tokens, &decode_times),
        sampled_decode: Rate::of(options.gen_tokens, &sampled_times),
        decode_weight_bytes: model.decode_weight_bytes(),
        weight_vram_bytes: model.weight_bytes(),
        session_vram_bytes: session.gpu_bytes(),
    })
}
