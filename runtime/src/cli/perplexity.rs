//! `lfm-edge perplexity`: what `lfm_edge::perplexity` measured, as a summary in
//! llama-perplexity's terms and, with `--json`, one JSON object on the last line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use lfm_edge::perplexity::{self, Baseline, Estimate, PerplexityOptions, Progress, Report};
use lfm_edge::{Error, Result};
use serde_json::{json, Map, Value};

use super::model::ModelArgs;

/// The command's own options (the model and memory ones are in `ModelArgs`).
#[derive(clap::Args)]
pub struct Options {
    /// The text to score (UTF-8).
    #[arg(long)]
    pub file: PathBuf,
    /// The most chunks to evaluate [default: all the text holds, or the baseline's].
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Tokens per forward pass [default: the context].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Save the model's log-probabilities of the scored positions as a baseline, in
    /// llama.cpp's --kl-divergence-base format.
    #[arg(long, conflicts_with = "kl_base")]
    pub save_logits: Option<PathBuf>,
    /// Compare the model with a baseline saved by --save-logits or by llama.cpp.
    #[arg(long)]
    pub kl_base: Option<PathBuf>,
    /// Also print the results as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ModelArgs, options: &Options) -> Result<()> {
    let text = std::fs::read_to_string(&options.file).map_err(|e| Error::io(&options.file, e))?;
    let context = args.memory.context.unwrap_or(perplexity::DEFAULT_CONTEXT);
    let evaluation = PerplexityOptions {
        context,
        chunks: options.chunks,
        batch: options.batch,
        session: args.memory.session_options(true),
    };
    let baseline = match (&options.save_logits, &options.kl_base) {
        (Some(path), _) => Baseline::Save(path),
        (None, Some(path)) => Baseline::Compare(path),
        (None, None) => Baseline::None,
    };
    let model = args.load()?;
    let mut bar = ProgressBar::new();
    let report = perplexity::evaluate(&model, &text, &evaluation, baseline, &mut |p| bar.show(p));
    bar.clear();
    let report = report?;
    outln!("model: {}", model.path.display())?;
    summary(&report, &options.file)?;
    if let Some(path) = &options.save_logits {
        outln!("baseline saved: {}", path.display())?;
    }
    if options.json {
        outln!("{}", json_line(&report))?;
    }
    Ok(())
}

/// `12.3456 ± 0.0123`
fn pm(e: Estimate, digits: usize) -> String {
    format!("{:.digits$} ± {:.digits$}", e.value, e.error)
}

fn percent(e: Estimate) -> String {
    format!("{:.3} ± {:.3} %", 100.0 * e.value, 100.0 * e.error)
}

fn summary(report: &Report, file: &Path) -> Result<()> {
    let c = &report.chunking;
    outln!(
        "text: {}, {} tokens; {} chunks of {}, {} tokens scored (positions {}..={} of each)",
        file.display(),
        report.text_tokens,
        c.chunks,
        c.context,
        report.tokens_scored(),
        c.first(),
        c.context - 2
    )?;
    outln!("PPL: {}", pm(report.perplexity.ppl, 4))?;
    outln!(
        "bits per byte: {:.4} ({} bytes scored)",
        report.bits_per_byte(),
        report.bytes_scored
    )?;
    let Some(k) = &report.comparison else {
        return Ok(());
    };
    outln!("PPL(base): {}", pm(k.base.ppl, 4))?;
    if let Some(bpb) = report.bits_per_byte_base() {
        outln!("bits per byte (base): {bpb:.4}")?;
    }
    outln!("ln(PPL/PPL(base)): {}", pm(k.ln_ppl_ratio, 6))?;
    outln!("mean KLD: {}", pm(k.kld, 6))?;
    outln!(
        "KLD median {:.6}, 99% {:.6}, 99.9% {:.6}, max {:.6}",
        k.kld_median,
        k.kld_p99,
        k.kld_p999,
        k.kld_max
    )?;
    outln!("same top token: {}", percent(k.top1_agree))?;
    outln!("mean Δp: {}", percent(k.delta_p))?;
    outln!("RMS Δp: {}", percent(k.delta_p_rms))?;
    Ok(())
}

fn json_line(report: &Report) -> Value {
    let c = &report.chunking;
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| out.insert(key.to_string(), value);
    put("context", json!(c.context));
    put("chunks", json!(c.chunks));
    put("text_tokens", json!(report.text_tokens));
    put("tokens_scored", json!(report.tokens_scored()));
    put("bytes_scored", json!(report.bytes_scored));
    put("nll_mean", json!(report.perplexity.nll.value));
    put("ppl", json!(report.perplexity.ppl.value));
    put("ppl_error", json!(report.perplexity.ppl.error));
    put("bits_per_byte", json!(report.bits_per_byte()));
    if let Some(k) = &report.comparison {
        put("ppl_base", json!(k.base.ppl.value));
        put("ppl_base_error", json!(k.base.ppl.error));
        put("bits_per_byte_base", json!(report.bits_per_byte_base()));
        put("ln_ppl_ratio", json!(k.ln_ppl_ratio.value));
        put("ln_ppl_ratio_error", json!(k.ln_ppl_ratio.error));
        put("kld_mean", json!(k.kld.value));
        put("kld_error", json!(k.kld.error));
        put("kld_median", json!(k.kld_median));
        put("kld_p99", json!(k.kld_p99));
        put("kld_p999", json!(k.kld_p999));
        put("kld_max", json!(k.kld_max));
        put("top1_agree", json!(k.top1_agree.value));
        put("delta_p_mean", json!(k.delta_p.value));
        put("delta_p_rms", json!(k.delta_p_rms.value));
    }
    Value::Object(out)
}

/// A bar on stderr while chunks are evaluated, when stderr is a terminal.
struct ProgressBar {
    shown: bool,
    terminal: bool,
}

impl ProgressBar {
    const WIDTH: usize = 30;

    fn new() -> ProgressBar {
        ProgressBar {
            shown: false,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, p: Progress) {
        if !self.terminal {
            return;
        }
        let filled = Self::WIDTH * p.done / p.chunks.max(1);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(Self::WIDTH - filled));
        // Progress is a courtesy: a failed write to stderr is not the command's error.
        let _ = write!(std::io::stderr(), "\r[{bar}] chunk {}/{}", p.done, p.chunks);
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r{}\r", " ".repeat(Self::WIDTH + 40));
        }
    }
}
