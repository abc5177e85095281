//! What each scored position costs the model, and against a baseline, what it loses:
//! the statistics of llama.cpp's `perplexity` and `kl_divergence`, in f64 from the f32
//! logits (the baseline's log-probabilities are its quantized f32 values).

use super::baseline::BaseRow;

/// Below this log-probability a baseline's token adds nothing to the KL divergence:
/// llama.cpp stores 16 nats below the top and skips the rest.
const BASE_FLOOR: f32 = -16.0;

/// One scored position: predicting the token after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenScore {
    /// The model's negative log-likelihood of the token, in nats.
    pub nll: f64,
    /// Against the baseline, when there is one.
    pub versus_base: Option<Divergence>,
}

/// What the model loses against the baseline at one position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Divergence {
    /// KL(base ‖ model), in nats.
    pub kld: f64,
    /// The baseline's negative log-likelihood of the token.
    pub nll_base: f64,
    /// Whether both put the same token first (the first of equal maxima).
    pub same_top: bool,
    /// The model's probability of the token minus the baseline's.
    pub delta_p: f64,
}

/// Scores one row of logits (not empty) for the `target` token (within it), against
/// `base` if given (a row of the same vocabulary).
pub(crate) fn score(logits: &[f32], target: usize, base: Option<BaseRow>) -> TokenScore {
    let (top, max) =
        logits.iter().enumerate().fold(
            (0, logits[0]),
            |(i, m), (j, &l)| if l > m { (j, l) } else { (i, m) },
        );
    let max = max as f64;
    let sum_exp: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_z = max + sum_exp.ln();
    let nll = log_z - logits[target] as f64;
    let versus_base = base.map(|base| {
        let mut kld = 0.0;
        let (mut top_base, mut max_base) = (0, base.log_prob(0));
        for (i, &l) in logits.iter().enumerate() {
            let log_p_base = base.log_prob(i);
            if log_p_base > max_base {
                (top_base, max_base) = (i, log_p_base);
            }
            if log_p_base > BASE_FLOOR {
                let log_p_base = log_p_base as f64;
                kld += log_p_base.exp() * (log_p_base - (l as f64 - log_z));
            }
        }
        let nll_base = -(base.log_prob(target) as f64);
        Divergence {
            kld,
            nll_base,
            same_top: top == top_base,
            delta_p: (-nll).exp() - (-nll_base).exp(),
        }
    });
    TokenScore { nll, versus_base }
}

/// A mean and its standard error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub error: f64,
}

/// Sums of a sample and of its squares, as llama.cpp keeps them.
#[derive(Clone, Copy, Default)]
struct Sums {
    sum: f64,
    sum2: f64,
    count: usize,
}

impl Sums {
    fn of(values: impl Iterator<Item = f64>) -> Sums {
        values.fold(Sums::default(), |s, v| Sums {
            sum: s.sum + v,
            sum2: s.sum2 + v * v,
            count: s.count + 1,
        })
    }

    /// The mean and its standard error (llama.cpp's `mean_and_uncertainty`: none
    /// from 10 values or fewer).
    fn estimate(&self) -> Estimate {
        if self.count == 0 {
            return Estimate {
                value: 0.0,
                error: 0.0,
            };
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        let variance = self.sum2 / n - mean * mean;
        let error = match variance > 0.0 && self.count > 10 {
            true => (variance / (n - 1.0)).sqrt(),
            false => 0.0,
        };
        Estimate { value: mean, error }
    }
}

/// exp of an estimate of a log, its error carried to first order.
fn exp(log: Estimate) -> Estimate {
    let value = log.value.exp();
    Estimate {
        value,
        error: value * log.error,
    }
}

/// The value at `fraction` of sorted `values`, interpolated as llama.cpp does (0 for
/// none).
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = fraction * (sorted.len() - 1) as f64;
    let (i, t) = (at as usize, at.fract());
    (1.0 - t) * sorted[i] + t * sorted[(i + 1).min(sorted.len() - 1)]
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n % 2 {
        _ if n == 0 => 0.0,
        0 => 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]),
        _ => sorted[n / 2],
    }
}

/// The model's own numbers over the scored tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// Mean negative log-likelihood, nats per token.
    pub nll: Estimate,
    pub ppl: Estimate,
    /// Total negative log-likelihood, nats.
    pub nll_sum: f64,
}

impl Perplexity {
    pub fn of(nlls: impl Iterator<Item = f64>) -> Perplexity {
        let sums = Sums::of(nlls);
        let nll = sums.estimate();
        Perplexity {
            nll,
            ppl: exp(nll),
            nll_sum: sums.sum,
        }
    }
}

/// The model against the baseline, over the scored tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub base: Perplexity,
    /// ln(PPL(model) / PPL(base)), its error from both and their covariance.
    pub ln_ppl_ratio: Estimate,
    /// KL(base ‖ model): mean, median, 99th and 99.9th percentiles, maximum.
    pub kld: Estimate,
    pub kld_median: f64,
    pub kld_p99: f64,
    pub kld_p999: f64,
    pub kld_max: f64,
    /// The fraction of positions whose top tokens agree.
    pub top1_agree: Estimate,
    /// Δp: its mean, and its root mean square.
    pub delta_p: Estimate,
    pub delta_p_rms: Estimate,
}

impl Comparison {
    /// The statistics of `scores`; `nll` is the model's.
    pub fn of(scores: &[(f64, Divergence)], nll: &Perplexity) -> Comparison {
        let base = Perplexity::of(scores.iter().map(|(_, d)| d.nll_base));
        let n = scores.len() as f64;
        // llama.cpp's covariance of the two mean log-likelihoods: none below 10 values.
        let cov = match scores.len() >= 10 {
            true => {
                let sum_ab: f64 = scores.iter().map(|(a, d)| a * d.nll_base).sum();
                let mean_a = nll.nll_sum / n;
                let mean_b = base.nll_sum / n;
                (sum_ab / n - mean_a * mean_b) / (n - 1.0)
            }
            false => 0.0,
        };
        let (ea, eb) = (nll.nll.error, base.nll.error);
        let ln_ppl_ratio = Estimate {
            value: nll.nll.value - base.nll.value,
            error: (ea * ea + eb * eb - 2.0 * cov).max(0.0).sqrt(),
        };
        let mut klds: Vec<f64> = scores.iter().map(|(_, d)| d.kld).collect();
        let kld = Sums::of(klds.iter().copied()).estimate();
        klds.sort_by(f64::total_cmp);
        let same = scores.iter().filter(|(_, d)| d.same_top).count() as f64;
        let agree = same / n;
        let top1_agree = Estimate {
            value: agree,
            error: match scores.len() > 1 {
                true => (agree * (1.0 - agree) / (n - 1.0)).sqrt(),
                false => 0.0,
            },
        };
        let delta_p = Sums::of(scores.iter().map(|(_, d)| d.delta_p)).estimate();
        let squares = Sums::of(scores.iter().map(|(_, d)| d.delta_p * d.delta_p)).estimate();
        let rms = squares.value.sqrt();
        let delta_p_rms = Estimate {
            value: rms,
            error: if rms > 0.0 {
                0.5 / rms * squares.error
            } else {
                0.0
            },
        };
        Comparison {
            base,
            ln_ppl_ratio,
            kld,
            kld_median: median(&klds),
            kld_p99: percentile(&klds, 0.99),
            kld_p999: percentile(&klds, 0.999),
            kld_max: klds.last().copied().unwrap_or(0.0),
            top1_agree,
            delta_p,
            delta_p_rms,
        }
    }
}
