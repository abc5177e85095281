//! Sampling options shared by `generate` and `chat`, and the constraints on what they
//! write (`--json-schema`, `--regex`, `--grammar`, `--tools`).

use std::path::{Path, PathBuf};

use clap::Args;
use lfm_edge::{Constraint, Error, GenerateOptions, Result, SamplerConfig, ToolChoice, Tools};

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
            constraint: None,
        })
    }
}

/// What the output of `generate` must be; one at most.
#[derive(Args, Clone, Default)]
pub struct ConstraintArgs {
    /// Output a JSON value valid against the JSON schema in FILE.
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub json_schema: Option<PathBuf>,
    /// Output text that the regex RE matches whole.
    #[arg(long, value_name = "RE", group = "constraint")]
    pub regex: Option<String>,
    /// Output a sentence of the Lark grammar in FILE (llguidance's dialect).
    #[arg(long, value_name = "FILE.lark", group = "constraint")]
    pub grammar: Option<PathBuf>,
}

impl ConstraintArgs {
    pub fn constraint(&self) -> Result<Option<Constraint>> {
        if let Some(path) = &self.json_schema {
            return json_schema(path).map(Some);
        }
        if let Some(regex) = &self.regex {
            return Ok(Some(Constraint::regex(regex)));
        }
        match &self.grammar {
            Some(path) => Ok(Some(Constraint::lark(&read(path)?))),
            None => Ok(None),
        }
    }
}

/// The JSON schema in `path`; an error names the file.
pub fn json_schema(path: &Path) -> Result<Constraint> {
    Constraint::json_schema(&read(path)?)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

/// The tools in `path`, a JSON array in OpenAI's shape; an error names the file.
pub fn tools(path: &Path) -> Result<Tools> {
    Tools::from_json(&read(path)?).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

/// `--tools` with its options.
pub struct ToolArgs {
    pub tools: Tools,
    pub choice: ToolChoice,
    /// Print the parsed calls as one JSON array on the last line.
    pub print_calls: bool,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}
