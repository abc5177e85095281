//! Sampling options shared by `generate` and `chat`.

use clap::Args;
use lfm_edge::{Error, GenerateOptions, Result, SamplerConfig};

#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the most likely tokens up to this probability mass (1: all).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep tokens at least this fraction of the most likely one's probability.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Above 1 discourages tokens already in the context (HF's repetition penalty).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Subtracted from the logit of every token already in the context.
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it is in the context.
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Penalties look at the last N tokens only (0: the whole context).
    #[arg(long, default_value_t = 0)]
    pub penalty_window: usize,
    /// Stop when this text is produced (repeatable; it is not printed).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn options(&self, max_tokens: usize, ignore_eos: bool) -> Result<GenerateOptions> {
        let sampler = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_window: self.penalty_window,
            seed: self.seed,
        };
        sampler.validate().map_err(Error::Input)?;
        Ok(GenerateOptions {
            max_tokens,
            sampler,
            stop_strings: self.stop.clone(),
            ignore_eos,
        })
    }
}
