//! Picks the next token from a row of logits, on the CPU.
//!
//! The chain follows HF transformers' `generate` (its logits processors, then its
//! warpers, in that order), with OpenAI's presence and frequency penalties added. Under a
//! constraint (a JSON schema, regex or grammar), the generation loop has set the logits
//! of the tokens it forbids to −∞ before the chain (`Guide::mask` in `constraint/`):
//! every step below keeps them out, penalties included (−∞ stays −∞).
//!
//! 1. penalties over the recent tokens: repetition (HF: a seen token's logit is divided
//!    by the penalty when positive, multiplied when negative), then frequency and
//!    presence (OpenAI, llama.cpp: `logit -= count · frequency + [count > 0] · presence`);
//! 2. temperature 0 (or below) stops here: greedy, the first maximum as `torch.argmax`;
//! 3. temperature: logits / T;
//! 4. top-k: keep the k largest (ties with the k-th kept, as HF);
//! 5. top-p: keep the most probable tokens until their mass reaches p;
//! 6. min-p: keep tokens at least min_p × the top probability;
//! 7. a draw from the softmax of what is left, with a seeded generator (same seed,
//!    same tokens).
//!
//! llama.cpp's default chain differs in one place: it applies the temperature after
//! top-k/top-p/min-p, so its top-p and min-p see the untempered distribution.

/// Sampling settings; the defaults are greedy with no penalties.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 is greedy.
    pub temperature: f32,
    /// 0 keeps every token.
    pub top_k: usize,
    /// 1 keeps every token.
    pub top_p: f32,
    /// 0 keeps every token.
    pub min_p: f32,
    /// 1 is none; above 1 discourages tokens already seen.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already seen.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was seen.
    pub frequency_penalty: f32,
    /// How many of the latest tokens the penalties look at (0: all of them).
    pub penalty_window: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_window: 0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// A message naming the first setting out of range.
    pub fn validate(&self) -> Result<(), String> {
        let finite = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repetition_penalty", self.repetition_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ];
        if let Some((name, value)) = finite.iter().find(|(_, v)| !v.is_finite()) {
            return Err(format!("{name} {value} is not a finite number"));
        }
        if self.temperature < 0.0 {
            return Err(format!("temperature {} is below 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p {} is not in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p {} is not in [0, 1]", self.min_p));
        }
        if self.repetition_penalty <= 0.0 {
            return Err(format!(
                "repetition_penalty {} is not above 0",
                self.repetition_penalty
            ));
        }
        Ok(())
    }

    /// Whether the chain is a plain argmax: greedy with no penalties (the generation
    /// loop then takes the argmax on the GPU and reads back one id, not the row).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && !self.has_penalties()
    }

    fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

pub struct Sampler {
    config: SamplerConfig,
    rng: SplitMix64,
    /// Tokens the penalties look at: the prompt (see [`Sampler::accept`]) and every
    /// token sampled.
    history: Vec<u32>,
}

impl Sampler {
    /// Temperature sampling alone (0 is greedy), seeded.
    pub fn new(temperature: f32, seed: u64) -> Sampler {
        Sampler::with_config(SamplerConfig {
            temperature,
            seed,
            ..SamplerConfig::default()
        })
    }

    pub fn with_config(config: SamplerConfig) -> Sampler {
        Sampler {
            rng: SplitMix64(config.seed),
            config,
            history: Vec::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Records tokens the penalties should count without sampling them: the prompt,
    /// as HF's repetition penalty counts every input id.
    pub fn accept(&mut self, tokens: &[u32]) {
        if self.config.has_penalties() {
            self.history.extend_from_slice(tokens);
        }
    }

    /// The next token; it joins the history the penalties look at.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let id = self.pick(logits);
        self.accept(&[id]);
        id
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        let c = &self.config;
        let mut logits = std::borrow::Cow::Borrowed(logits);
        if c.has_penalties() {
            let window = match c.penalty_window {
                0 => &self.history[..],
                n => &self.history[self.history.len().saturating_sub(n)..],
            };
            apply_penalties(logits.to_mut(), window, c);
        }
        if c.temperature <= 0.0 {
            return argmax(&logits);
        }
        let candidates = candidates(&logits, c);
        let total: f64 = candidates.iter().map(|&(_, p)| p).sum();
        let mut target = self.rng.next_f64() * total;
        for &(id, p) in &candidates {
            target -= p;
            if target < 0.0 {
                return id;
            }
        }
        // Rounding left a sliver of mass: the least likely candidate takes it.
        candidates
            .last()
            .map_or_else(|| argmax(&logits), |&(id, _)| id)
    }
}

/// Repetition (HF), then frequency and presence (OpenAI) penalties, in place.
fn apply_penalties(logits: &mut [f32], seen: &[u32], c: &SamplerConfig) {
    let mut counts = std::collections::HashMap::<u32, u32>::new();
    for &id in seen {
        *counts.entry(id).or_default() += 1;
    }
    for (&id, &count) in &counts {
        let Some(l) = logits.get_mut(id as usize) else {
            continue;
        };
        if *l > 0.0 {
            *l /= c.repetition_penalty;
        } else {
            *l *= c.repetition_penalty;
        }
        *l -= count as f32 * c.frequency_penalty + c.presence_penalty;
    }
}

/// The tokens left after temperature, top-k, top-p and min-p, most probable first,
/// with their (unnormalised) probabilities.
pub fn candidates(logits: &[f32], c: &SamplerConfig) -> Vec<(u32, f64)> {
    let mut order: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| logits[i as usize] > f32::NEG_INFINITY)
        .collect();
    // Stable: among equal logits the lower id comes first.
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    if c.top_k > 0 && c.top_k < order.len() {
        let kth = logits[order[c.top_k - 1] as usize];
        order.retain(|&i| logits[i as usize] >= kth);
    }
    let Some(&best) = order.first() else {
        return Vec::new();
    };
    let max = logits[best as usize] as f64;
    let t = c.temperature as f64;
    let mut kept: Vec<(u32, f64)> = order
        .into_iter()
        .map(|i| (i, ((logits[i as usize] as f64 - max) / t).exp()))
        .collect();
    let total: f64 = kept.iter().map(|&(_, p)| p).sum();
    if c.top_p < 1.0 {
        // Keep a token while the mass of the tokens above it is still below p.
        let mut above = 0.0;
        let keep = kept
            .iter()
            .take_while(|&&(_, p)| {
                let keep = above < c.top_p as f64 * total;
                above += p;
                keep
            })
            .count();
        kept.truncate(keep.max(1));
    }
    if c.min_p > 0.0 {
        // The top probability is exp(0) = 1 in these unnormalised units.
        kept.retain(|&(_, p)| p >= c.min_p as f64);
    }
    kept
}

/// Index of the largest logit; the first one on ties, as torch.argmax.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A small, well-mixed generator; enough for sampling and fully reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probabilities 0.4, 0.3, 0.2, 0.1 at temperature 1, for ids 0..4.
    fn known() -> Vec<f32> {
        [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect()
    }

    fn sampling(config: SamplerConfig) -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            ..config
        }
    }

    fn support(config: SamplerConfig) -> Vec<u32> {
        let mut ids: Vec<u32> = candidates(&known(), &sampling(config))
            .iter()
            .map(|&(id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    /// Empirical frequency of each id over many draws.
    fn frequencies(config: SamplerConfig, logits: &[f32], draws: usize) -> Vec<f64> {
        let mut sampler = Sampler::with_config(config);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..draws {
            counts[sampler.sample(logits) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(Sampler::new(0.0, 1).sample(&[0.5, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_draws_and_follows_distribution() {
        let logits = [0.0f32, (3.0f32).ln(), f32::NEG_INFINITY];
        let draw = |seed| {
            let mut s = Sampler::new(1.0, seed);
            (0..4000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let draws = draw(7);
        assert!(!draws.contains(&2));
        let ones = draws.iter().filter(|&&t| t == 1).count() as f64 / draws.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
    }

    #[test]
    fn top_k_keeps_the_k_largest() {
        let top = |k| {
            support(SamplerConfig {
                top_k: k,
                ..Default::default()
            })
        };
        assert_eq!(top(1), [0]);
        assert_eq!(top(2), [0, 1]);
        assert_eq!(top(0), [0, 1, 2, 3]);
        assert_eq!(top(9), [0, 1, 2, 3]);
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let c = sampling(SamplerConfig {
            top_k: 1,
            ..Default::default()
        });
        let ids: Vec<u32> = candidates(&[1.0, 3.0, 3.0, 0.0], &c)
            .iter()
            .map(|&(i, _)| i)
            .collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        let top = |p| {
            support(SamplerConfig {
                top_p: p,
                ..Default::default()
            })
        };
        assert_eq!(top(0.3), [0]);
        assert_eq!(top(0.35), [0]);
        assert_eq!(top(0.5), [0, 1]);
        assert_eq!(top(0.65), [0, 1]);
        assert_eq!(top(0.75), [0, 1, 2]);
        assert_eq!(top(0.95), [0, 1, 2, 3]);
        assert_eq!(top(1.0), [0, 1, 2, 3]);
    }

    #[test]
    fn min_p_is_relative_to_the_top_probability() {
        let min = |p| {
            support(SamplerConfig {
                min_p: p,
                ..Default::default()
            })
        };
        // 0.4 · 0.45 = 0.18: id 2 (0.2) stays, id 3 (0.1) goes.
        assert_eq!(min(0.45), [0, 1, 2]);
        assert_eq!(min(0.6), [0, 1]);
        assert_eq!(min(1.0), [0]);
        assert_eq!(min(0.2), [0, 1, 2, 3]);
    }

    #[test]
    fn draws_follow_the_renormalised_support() {
        let config = sampling(SamplerConfig {
            top_p: 0.75,
            seed: 3,
            ..Default::default()
        });
        let f = frequencies(config, &known(), 20000);
        assert_eq!(f[3], 0.0);
        for (id, expected) in [(0, 0.4 / 0.9), (1, 0.3 / 0.9), (2, 0.2 / 0.9)] {
            assert!((f[id] - expected).abs() < 0.015, "{id}: {f:?}");
        }
    }

    #[test]
    fn temperature_sharpens_before_top_p() {
        // At T = 0.5 the probabilities are 16 : 9 : 4 : 1 (/30): 0.53 alone covers 0.5.
        let c = SamplerConfig {
            temperature: 0.5,
            top_p: 0.5,
            ..Default::default()
        };
        let ids: Vec<u32> = candidates(&known(), &c).iter().map(|&(i, _)| i).collect();
        assert_eq!(ids, [0]);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let c = SamplerConfig {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let mut logits = [4.0f32, -1.0, 3.0];
        apply_penalties(&mut logits, &[0, 1, 0], &c);
        assert_eq!(logits, [2.0, -2.0, 3.0]);
        // Greedy follows: 3.0 now wins over the penalised 4.0.
        let mut sampler = Sampler::with_config(c);
        sampler.accept(&[0]);
        assert_eq!(sampler.sample(&[4.0, -1.0, 3.0]), 2);
    }

    #[test]
    fn frequency_and_presence_penalties_count_occurrences() {
        let c = SamplerConfig {
            frequency_penalty: 0.5,
            presence_penalty: 1.0,
            ..Default::default()
        };
        let mut logits = [0.0f32; 3];
        apply_penalties(&mut logits, &[0, 0, 0, 1], &c);
        assert_eq!(logits, [-2.5, -1.5, 0.0]);
    }

    #[test]
    fn penalty_window_forgets_older_tokens() {
        let c = SamplerConfig {
            presence_penalty: 10.0,
            penalty_window: 1,
            ..Default::default()
        };
        let mut sampler = Sampler::with_config(c);
        sampler.accept(&[0, 1]);
        // Only id 1 is in the window: id 0 keeps its lead.
        assert_eq!(sampler.sample(&[1.0, 1.5, 0.0]), 0);
        // Now id 0 is the window.
        assert_eq!(sampler.sample(&[1.0, 1.5, 0.0]), 1);
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let bad = SamplerConfig {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("top_p"));
        let nan = SamplerConfig {
            temperature: f32::NAN,
            ..Default::default()
        };
        assert!(nan.validate().unwrap_err().contains("temperature"));
        assert!(SamplerConfig::default().validate().is_ok());
    }
}
