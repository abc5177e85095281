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
//!
//! Steps 3–7 run on a row's leading tokens, most likely first: the candidates the GPU
//! picked (`TopLogits`: every logit above the row's 256th largest, that bound and the
//! row's softmax mass), or the same found on the CPU from a row read back. They decide
//! the pick unless it may lie among the tokens left out (a draw or a top-p cut past
//! them, or too close to call against the mass, which the GPU sums in f32); then the
//! whole row, sorted, decides. Either way the pick is the one the sorted row gives.

use std::collections::HashMap;

use crate::ops::TOP_RANK;

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
        SamplerConfig::GREEDY
    }
}

impl SamplerConfig {
    /// The default: greedy, no penalties.
    pub const GREEDY: SamplerConfig = SamplerConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        penalty_window: 0,
        seed: 0,
    };

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

    /// Whether a decode step brings back the GPU's candidates ([`TopLogits`]) instead of
    /// the row: a sampled chain [`Sampler::sample_top`] can decide from them, unless the
    /// draw falls among the tokens they leave out. Penalties change the row's mass, so
    /// with them top-p and plain temperature need the row.
    pub fn samples_from_top(&self) -> bool {
        // A top-k of TOP_RANK or more reaches past the candidates.
        let decided_without_mass =
            self.temperature <= 0.0 || self.top_k > 0 || self.top_p >= 1.0 && self.min_p > 0.0;
        !self.is_greedy()
            && self.penalties_only_lower()
            && self.top_k < TOP_RANK
            && (!self.has_penalties() || decided_without_mass)
    }

    /// Whether the penalties can only lower a logit, so that a token outside the GPU's
    /// candidates stays outside.
    fn penalties_only_lower(&self) -> bool {
        self.repetition_penalty >= 1.0
            && self.presence_penalty >= 0.0
            && self.frequency_penalty >= 0.0
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

    /// The next token from a decode step's candidates (`Session::step_top`): the one
    /// [`Sampler::sample`] would pick from the whole row, or `None` where the candidates
    /// cannot tell (the draw falls among the tokens they leave out, a penalty could
    /// raise one of those, a setting reaches past them). The generator is then as it
    /// was, so that `sample` on the row draws the same number.
    pub fn sample_top(&mut self, top: &TopLogits) -> Option<u32> {
        let c = &self.config;
        if !c.penalties_only_lower() {
            return None;
        }
        let seen = c.has_penalties().then(|| counts(self.window()));
        let ranked = Ranked::top(top, seen.as_ref(), c);
        let id = match c.temperature <= 0.0 {
            true => ranked.leading.first()?.0,
            false => {
                let mut rng = self.rng.clone();
                let id = ranked.chain(c, rng.next_f64())?;
                self.rng = rng;
                id
            }
        };
        self.accept(&[id]);
        Some(id)
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        let c = &self.config;
        let mut logits = std::borrow::Cow::Borrowed(logits);
        if c.has_penalties() {
            apply_penalties(logits.to_mut(), self.window(), c);
        }
        if c.temperature <= 0.0 {
            return argmax(&logits);
        }
        let u = self.rng.next_f64();
        // The row's leading tokens, found in linear time, decide almost every draw; a
        // sort of the whole row decides the rest. Nothing above −∞: the first token, as
        // argmax. A top-k the leading tokens hold needs no mass of the row.
        let needs_mass = c.top_k == 0 || c.top_k >= TOP_RANK;
        let top = TopLogits::of_row(&logits, needs_mass.then_some(c.temperature));
        Ranked::top(&top, None, c)
            .chain(c, u)
            .or_else(|| Ranked::row(&logits).chain(c, u))
            .unwrap_or_else(|| argmax(&logits))
    }

    /// The tokens the penalties look at.
    fn window(&self) -> &[u32] {
        match self.config.penalty_window {
            0 => &self.history[..],
            n => &self.history[self.history.len().saturating_sub(n)..],
        }
    }
}

/// Sampled decoding's candidates, picked on the GPU (`ops::top_logits`) so that a few
/// hundred logits come back instead of the row.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLogits {
    /// (id, logit) of every logit above `bound`, in no order.
    pub candidates: Vec<(u32, f32)>,
    /// Every other logit is at or below it (−∞: there are no others).
    pub bound: f32,
    /// The softmax mass of the whole row at the step's temperature,
    /// Σ exp((l − max) / T) (the GPU sums it in f32); `None` where it was not summed.
    pub mass: Option<f64>,
}

impl TopLogits {
    /// Reads the kernel's record: `[count, bound, mass, 0, (id, logit) × count]`,
    /// floats as their bits; `None` when the count overruns it.
    pub fn from_record(words: &[u32]) -> Option<TopLogits> {
        let (head, pairs) = words.split_at_checked(4)?;
        let pairs = pairs.get(..2 * head[0] as usize)?;
        Some(TopLogits {
            candidates: (pairs.chunks_exact(2))
                .map(|p| (p[0], f32::from_bits(p[1])))
                .collect(),
            bound: f32::from_bits(head[1]),
            mass: Some(f32::from_bits(head[2]) as f64),
        })
    }

    /// A row's candidates as the GPU finds them, found on the CPU in linear time, with
    /// its mass at the temperature `mass_at` where one is given (above 0; summed in f64).
    pub fn of_row(logits: &[f32], mass_at: Option<f32>) -> TopLogits {
        let mut numbers: Vec<(u32, f32)> = (logits.iter().enumerate())
            .filter(|&(_, &l)| l > f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, l))
            .collect();
        let max = numbers
            .iter()
            .fold(f32::NEG_INFINITY, |m, &(_, l)| m.max(l)) as f64;
        let mass = mass_at.map(|t| {
            (numbers.iter())
                .map(|&(_, l)| ((l as f64 - max) / t as f64).exp())
                .sum()
        });
        let mut bound = f32::NEG_INFINITY;
        if numbers.len() >= TOP_RANK {
            numbers.select_nth_unstable_by(TOP_RANK - 1, |a, b| b.1.total_cmp(&a.1));
            bound = numbers[TOP_RANK - 1].1;
            numbers.truncate(TOP_RANK - 1);
            numbers.retain(|&(_, l)| l.total_cmp(&bound).is_gt());
        }
        TopLogits {
            candidates: numbers,
            bound,
            mass,
        }
    }
}

/// Repetition (HF), then frequency and presence (OpenAI) penalties, in place.
fn apply_penalties(logits: &mut [f32], seen: &[u32], c: &SamplerConfig) {
    for (&id, &count) in &counts(seen) {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = penalized(*l, count, c);
        }
    }
}

/// How often each token was seen.
fn counts(seen: &[u32]) -> HashMap<u32, u32> {
    let mut counts = HashMap::new();
    for &id in seen {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// A logit after the penalties for a token seen `count` times.
fn penalized(l: f32, count: u32, c: &SamplerConfig) -> f32 {
    let l = match l > 0.0 {
        true => l / c.repetition_penalty,
        false => l * c.repetition_penalty,
    };
    l - (count as f32 * c.frequency_penalty + c.presence_penalty)
}

/// How far an approximate total (the GPU's f32 mass of a row) may be from the sum the
/// whole row would give, as a share of it: comparisons closer than that are left to
/// the row. The f32 sum is within about 1e-5 of it.
const MASS_MARGIN: f64 = 1e-3;

/// The tokens a row can still yield after its penalties, most likely first (among
/// equal logits the lower id first, as a stable sort of the row), with their logits:
/// all of them, or the leading ones of a [`TopLogits`].
struct Ranked {
    leading: Vec<(u32, f32)>,
    /// None: `leading` holds every token above −∞.
    rest: Option<Rest>,
}

/// The tokens after a ranked row's leading ones.
#[derive(Clone, Copy)]
struct Rest {
    /// Each of them has a logit at or below it.
    bound: f32,
    /// The softmax mass of the whole row, approximate; None where penalties changed it.
    mass: Option<f64>,
}

/// What the chain's probabilities add up to: over the tokens kept, or, while tokens
/// outside the leading ones are still in play, the approximate mass of the row.
#[derive(Clone, Copy)]
struct Total {
    value: f64,
    exact: bool,
}

impl Total {
    fn of(kept: &[(u32, f64)], rest: Option<Rest>) -> Option<Total> {
        match rest {
            None => Some(Total {
                value: kept.iter().map(|&(_, p)| p).sum(),
                exact: true,
            }),
            Some(rest) => rest.mass.map(|value| Total {
                value,
                exact: false,
            }),
        }
    }

    /// `a < b`, or `None` where an approximate total leaves it in doubt.
    fn below(self, a: f64, b: f64) -> Option<bool> {
        (self.exact || (a - b).abs() > MASS_MARGIN * self.value).then_some(a < b)
    }
}

impl Ranked {
    /// Every token of a row above −∞.
    fn row(logits: &[f32]) -> Ranked {
        let mut leading: Vec<(u32, f32)> = (logits.iter().enumerate())
            .filter(|&(_, &l)| l > f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, l))
            .collect();
        // Stable: among equal logits the lower id comes first.
        leading.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ranked {
            leading,
            rest: None,
        }
    }

    /// The candidates of `top` after the penalties of the tokens `seen` (which only
    /// lower logits): those still above the bound lead, every other token is at or
    /// below it.
    fn top(top: &TopLogits, seen: Option<&HashMap<u32, u32>>, c: &SamplerConfig) -> Ranked {
        let mut leading = top.candidates.clone();
        if let Some(seen) = seen {
            for (id, l) in &mut leading {
                if let Some(&count) = seen.get(id) {
                    *l = penalized(*l, count, c);
                }
            }
        }
        leading.retain(|&(_, l)| l.total_cmp(&top.bound).is_gt());
        leading.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest = (top.bound > f32::NEG_INFINITY).then_some(Rest {
            bound: top.bound,
            mass: top.mass.filter(|_| seen.is_none()),
        });
        Ranked { leading, rest }
    }

    /// Steps 3–7 of the chain with the uniform draw `u`: `None` when nothing can be
    /// drawn, or where the tokens after the leading ones could change the pick.
    fn chain(&self, c: &SamplerConfig, u: f64) -> Option<u32> {
        let (kept, total) = self.keep(c)?;
        let mut target = u * total.value;
        for &(id, p) in &kept {
            target -= p;
            if total.below(target, 0.0)? {
                return Some(id);
            }
        }
        // Rounding left a sliver of mass: the least likely candidate takes it. Against
        // the row's mass, the draw fell among the tokens left out.
        kept.last().filter(|_| total.exact).map(|&(id, _)| id)
    }

    /// The tokens left after temperature, top-k, top-p and min-p, most probable first,
    /// with their unnormalised probabilities (the top one's is 1), and what the draw's
    /// probabilities add up to.
    fn keep(&self, c: &SamplerConfig) -> Option<(Vec<(u32, f64)>, Total)> {
        let &(_, max) = self.leading.first()?;
        let mut rest = self.rest;
        let mut n = self.leading.len();
        if c.top_k > 0 {
            if c.top_k <= n {
                // Ties with the k-th stay, as HF; all of them lead, being above the rest.
                let kth = self.leading[c.top_k - 1].1;
                n = self.leading.partition_point(|&(_, l)| l >= kth);
                rest = None;
            } else if rest.is_some() {
                return None;
            }
        }
        let (max, t) = (max as f64, c.temperature as f64);
        let probability = |l: f32| ((l as f64 - max) / t).exp();
        let mut kept: Vec<(u32, f64)> = (self.leading[..n].iter())
            .map(|&(id, l)| (id, probability(l)))
            .collect();
        if c.top_p < 1.0 {
            // Keep a token while the mass of the tokens above it is still below p.
            let total = Total::of(&kept, rest)?;
            let threshold = c.top_p as f64 * total.value;
            let mut above = 0.0;
            let mut cut = None;
            for (j, &(_, p)) in kept.iter().enumerate() {
                if !total.below(above, threshold)? {
                    cut = Some(j);
                    break;
                }
                above += p;
            }
            match (cut, rest) {
                (Some(j), _) => kept.truncate(j.max(1)),
                (None, Some(_)) => return None,
                (None, None) => {}
            }
            rest = None;
        }
        if c.min_p > 0.0 {
            if let Some(r) = rest.take() {
                if probability(r.bound) >= c.min_p as f64 {
                    return None;
                }
            }
            kept.retain(|&(_, p)| p >= c.min_p as f64);
        }
        let total = Total::of(&kept, rest)?;
        Some((kept, total))
    }
}

/// The tokens left after temperature, top-k, top-p and min-p, most probable first,
/// with their (unnormalised) probabilities.
pub fn candidates(logits: &[f32], c: &SamplerConfig) -> Vec<(u32, f64)> {
    Ranked::row(logits)
        .keep(c)
        .map_or_else(Vec::new, |(kept, _)| kept)
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
#[derive(Clone)]
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

    /// A row's candidates as `pick.wgsl`'s `top` finds them: every logit above the row's
    /// `TOP_RANK`-th largest (in `total_cmp`'s order; NaN and −∞ never), that bound, and
    /// the mass summed in f32.
    fn top_of(row: &[f32], temperature: f32) -> TopLogits {
        let finite = || row.iter().copied().filter(|&l| l > f32::NEG_INFINITY);
        let mut values: Vec<f32> = finite().collect();
        values.sort_by(|a, b| b.total_cmp(a));
        let bound = match row.len() < TOP_RANK {
            true => f32::NEG_INFINITY,
            false => values
                .get(TOP_RANK - 1)
                .copied()
                .unwrap_or(f32::NEG_INFINITY),
        };
        let max = values.first().copied().unwrap_or(f32::NEG_INFINITY);
        TopLogits {
            candidates: (row.iter().enumerate())
                .filter(|&(_, &l)| l > f32::NEG_INFINITY && l.total_cmp(&bound).is_gt())
                .map(|(i, &l)| (i as u32, l))
                .collect(),
            bound,
            mass: Some(
                finite()
                    .map(|l| ((l - max) / temperature).exp())
                    .sum::<f32>() as f64,
            ),
        }
    }

    /// The history the penalties look at: every 7th id.
    const SEEN: std::ops::Range<u32> = 0..3000;

    /// Rows of 3000 logits: peaked (a model's usual row), flat (a random model's), one
    /// with a tie across the 256th place and a masked tail, one shorter than
    /// `TOP_RANK`, and one led by the tokens seen.
    fn rows() -> Vec<(&'static str, Vec<f32>)> {
        let mut state = 5u64;
        let mut normal = move || {
            let mut uniform = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (a, b) = (uniform(), uniform());
            ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        };
        let peaked: Vec<f32> = (0..3000)
            .map(|i| 3.0 * normal() + if i % 97 == 0 { 9.0 } else { 0.0 })
            .collect();
        let flat: Vec<f32> = (0..3000).map(|_| 0.3 * normal()).collect();
        let mut tied: Vec<f32> = (0..3000).map(|i| -(i as f32) / 100.0).collect();
        tied[200..320].fill(-2.0);
        tied[2000..].fill(f32::NEG_INFINITY);
        let short: Vec<f32> = (0..100).map(|_| 2.0 * normal()).collect();
        // The tokens the history holds lead: penalties take every candidate below the
        // bound.
        let seen = (0..3000)
            .map(|i| normal() + if i % 7 == 0 { 6.0 } else { 0.0 })
            .collect();
        vec![
            ("seen", seen),
            ("peaked", peaked),
            ("flat", flat),
            ("tied", tied),
            ("short", short),
        ]
    }

    /// Every setting of the chain, alone and together, penalties included.
    fn configs() -> Vec<SamplerConfig> {
        let at = |temperature| SamplerConfig {
            temperature,
            seed: 11,
            ..Default::default()
        };
        vec![
            at(1.0),
            at(0.7),
            SamplerConfig {
                top_k: 40,
                ..at(1.2)
            },
            SamplerConfig {
                top_k: 255,
                ..at(1.0)
            },
            SamplerConfig {
                top_p: 0.9,
                ..at(0.8)
            },
            SamplerConfig {
                min_p: 0.05,
                ..at(1.0)
            },
            SamplerConfig {
                top_k: 50,
                top_p: 0.95,
                min_p: 0.02,
                ..at(1.0)
            },
            SamplerConfig {
                top_k: 20,
                repetition_penalty: 1.3,
                ..at(0.9)
            },
            SamplerConfig {
                min_p: 0.1,
                presence_penalty: 0.5,
                frequency_penalty: 0.3,
                ..at(1.0)
            },
            SamplerConfig {
                repetition_penalty: 1.5,
                penalty_window: 64,
                ..at(0.0)
            },
            SamplerConfig {
                presence_penalty: 20.0,
                ..at(0.0)
            },
        ]
    }

    /// Picking from the GPU's candidates draws what picking from the row draws, the
    /// generator in step, for every row and setting (where the candidates cannot tell,
    /// the row decides). They decide every draw a setting confines to them (top-k below
    /// the rank, min-p of a peaked row, greedy with penalties), and fall back where the
    /// draw may reach past them.
    #[test]
    fn top_candidates_pick_what_the_row_picks() {
        for (name, row) in rows() {
            for config in configs()
                .into_iter()
                .filter(SamplerConfig::samples_from_top)
            {
                let mut from_row = Sampler::with_config(config.clone());
                let mut from_top = Sampler::with_config(config.clone());
                let seen: Vec<u32> = SEEN.step_by(7).collect();
                from_row.accept(&seen);
                from_top.accept(&seen);
                let t = if config.temperature > 0.0 {
                    config.temperature
                } else {
                    1.0
                };
                let top = top_of(&row, t);
                let mut decided = 0;
                for draw in 0..300 {
                    let want = from_row.sample(&row);
                    let got = match from_top.sample_top(&top) {
                        Some(id) => {
                            decided += 1;
                            id
                        }
                        None => from_top.sample(&row),
                    };
                    assert_eq!(got, want, "{name} row, draw {draw}, {config:?}");
                }
                // The seen row's candidates all fall below its bound; greedy with a
                // presence penalty of 20 runs through them; the tied row has 200.
                let confined = name != "seen"
                    && ((config.temperature <= 0.0 && config.presence_penalty == 0.0)
                        || (config.top_k > 0 && !(name == "tied" && config.top_k > 200))
                        || (name == "peaked" && config.min_p >= 0.05)
                        || name == "short");
                if confined {
                    assert_eq!(decided, 300, "{name} row, {config:?}");
                }
                if name == "flat" && config == configs()[0] {
                    assert!(decided < 300, "a flat row's draws fall past the candidates");
                }
                if name == "seen" && config.presence_penalty > 10.0 {
                    assert_eq!(decided, 0, "every candidate is penalised below the bound");
                }
            }
        }
    }

    /// Picking from a row (its leading tokens found in linear time, a sort where they
    /// cannot tell) draws what the chain over the sorted row draws, the generator in
    /// step, for every row and setting.
    #[test]
    fn sample_draws_what_the_sorted_row_draws() {
        let mut all = configs();
        all.push(SamplerConfig {
            presence_penalty: -0.5,
            top_p: 0.8,
            ..all[0].clone()
        });
        for (name, row) in rows() {
            for config in &all {
                let mut sampler = Sampler::with_config(config.clone());
                let mut history: Vec<u32> = SEEN.step_by(7).collect();
                sampler.accept(&history);
                let mut rng = SplitMix64(config.seed);
                for draw in 0..300 {
                    let mut penalized = row.clone();
                    if config.has_penalties() {
                        let window = match config.penalty_window {
                            0 => &history[..],
                            n => &history[history.len().saturating_sub(n)..],
                        };
                        apply_penalties(&mut penalized, window, config);
                    }
                    let want = match config.temperature <= 0.0 {
                        true => argmax(&penalized),
                        false => {
                            let u = rng.next_f64();
                            Ranked::row(&penalized).chain(config, u).unwrap()
                        }
                    };
                    assert_eq!(
                        sampler.sample(&row),
                        want,
                        "{name} row, draw {draw}, {config:?}"
                    );
                    history.push(want);
                }
            }
        }
    }

    #[test]
    fn top_record_reads_back() {
        let words = [
            2,
            (-1.5f32).to_bits(),
            3.5f32.to_bits(),
            0,
            7,
            2.0f32.to_bits(),
            9,
            1.0f32.to_bits(),
        ];
        let top = TopLogits::from_record(&words).unwrap();
        assert_eq!(top.candidates, [(7, 2.0), (9, 1.0)]);
        assert_eq!((top.bound, top.mass), (-1.5, Some(3.5)));
        assert!(TopLogits::from_record(&words[..6]).is_none());
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
