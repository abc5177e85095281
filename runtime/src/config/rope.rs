//! Rotary position embedding as a config states it: the base, YaRN's context
//! extension (Ministral 3), and Llama 4's attention temperature. The frequencies and
//! the attention factor are computed as transformers' `modeling_rope_utils` does, in
//! f32 where it works in f32.

use serde_json::Value;

/// How positions rotate q and k.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// The base (`rope_theta`, GGUF `rope.freq_base`).
    pub theta: f32,
    /// `Some` for `rope_type: "yarn"`.
    pub yarn: Option<Yarn>,
    /// `Some` where q is scaled by position after RoPE (Ministral 3).
    pub temperature: Option<AttentionTemperature>,
}

/// YaRN: frequencies blended between interpolated and extrapolated by a ramp over the
/// dimensions, and cos/sin scaled by an attention factor.
#[derive(Clone, Debug, PartialEq)]
pub struct Yarn {
    pub factor: f32,
    pub original_context: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The factor cos and sin are multiplied by.
    pub attention_factor: f32,
    /// Whether the ramp's bounds are rounded outwards (transformers' `truncate`).
    pub truncate: bool,
}

/// Llama 4's attention temperature: after RoPE, q at position p is multiplied by
/// `1 + beta · ln(1 + floor(p / floor_scale))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionTemperature {
    pub beta: f32,
    pub floor_scale: usize,
}

/// transformers' `get_mscale`.
pub(crate) fn mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl Rope {
    /// Unscaled RoPE with base `theta`.
    pub fn plain(theta: f32) -> Rope {
        Rope {
            theta,
            yarn: None,
            temperature: None,
        }
    }

    /// The inverse frequency of each rotated pair of a head of `head_dim`.
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let dim = head_dim as f32;
        // base^(2i / d), as transformers computes it in f32 from an f64 base.
        let pos_freqs: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / dim;
                (self.theta as f64).powf(exponent as f64) as f32
            })
            .collect();
        let Some(y) = &self.yarn else {
            return pos_freqs.iter().map(|p| 1.0 / p).collect();
        };
        let (low, high) = y.correction_range(head_dim, self.theta);
        pos_freqs
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let extrapolation = 1.0 / p;
                let interpolation = 1.0 / (y.factor * p);
                let max = if low == high { high + 0.001 } else { high };
                let ramp = ((i as f32 - low) / (max - low)).clamp(0.0, 1.0);
                let extrapolation_factor = 1.0 - ramp;
                interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
            })
            .collect()
    }

    /// The factor cos and sin are scaled by (1 without YaRN).
    pub fn attention_factor(&self) -> f32 {
        self.yarn.as_ref().map_or(1.0, |y| y.attention_factor)
    }
}

impl Yarn {
    /// transformers' `find_correction_range`: the dimensions between which the ramp
    /// runs, as f32 for the ramp.
    fn correction_range(&self, head_dim: usize, theta: f32) -> (f32, f32) {
        let dim = head_dim as f64;
        let correction_dim = |rotations: f64| {
            dim * (self.original_context as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                / (2.0 * (theta as f64).ln())
        };
        let mut low = correction_dim(self.beta_fast as f64);
        let mut high = correction_dim(self.beta_slow as f64);
        if self.truncate {
            low = low.floor();
            high = high.ceil();
        }
        (low.max(0.0) as f32, high.min(dim - 1.0) as f32)
    }
}

/// `rope_parameters` (or the older `rope_scaling`), flat or nested under
/// `full_attention`: the base and, for `rope_type: "yarn"`, YaRN's settings.
/// `max_position_embeddings` stands in for a missing `factor`, as in transformers.
pub(crate) fn from_json(
    params: Option<&Value>,
    top_level_theta: Option<f64>,
    max_position_embeddings: usize,
) -> Result<Rope, String> {
    let params = params.map(|p| p.get("full_attention").unwrap_or(p));
    let get = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_f64);
    let theta = get("rope_theta").or(top_level_theta).unwrap_or(1e6);
    let rope_type = params
        .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut rope = Rope::plain(theta as f32);
    match rope_type {
        "default" => {}
        "yarn" => {
            let original = get("original_max_position_embeddings")
                .ok_or("rope_parameters.original_max_position_embeddings is missing for YaRN")?;
            if !(original >= 1.0 && original <= super::MAX_CONTEXT as f64) {
                return Err(format!(
                    "rope_parameters.original_max_position_embeddings is {original}, must be in 1..={}",
                    super::MAX_CONTEXT
                ));
            }
            let factor = get("factor").unwrap_or(max_position_embeddings as f64 / original);
            let attention_factor = match get("attention_factor") {
                Some(f) => f,
                None => match (get("mscale"), get("mscale_all_dim")) {
                    (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        mscale(factor, m) / mscale(factor, all)
                    }
                    _ => mscale(factor, 1.0),
                },
            };
            // A 0 is as good as missing in transformers (`or`).
            let or_default = |key, default: f64| get(key).filter(|&v| v != 0.0).unwrap_or(default);
            rope.yarn = Some(Yarn {
                factor: factor as f32,
                original_context: original as usize,
                beta_fast: or_default("beta_fast", 32.0) as f32,
                beta_slow: or_default("beta_slow", 1.0) as f32,
                attention_factor: attention_factor as f32,
                truncate: params
                    .and_then(|p| p.get("truncate"))
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            });
            if let Some(beta) = get("llama_4_scaling_beta") {
                rope.temperature = Some(AttentionTemperature {
                    beta: beta as f32,
                    floor_scale: original as usize,
                });
            }
        }
        other => {
            return Err(format!(
                "rope_type {other:?} is not supported (\"default\" and \"yarn\" are)"
            ))
        }
    }
    Ok(rope)
}

/// Checks the values a rope states; `theta_key` names the base for messages.
pub(crate) fn check(rope: &Rope, theta_key: &str) -> Result<(), String> {
    super::positive(theta_key, rope.theta)?;
    if let Some(y) = &rope.yarn {
        super::positive("the YaRN factor", y.factor)?;
        super::positive("the YaRN attention factor", y.attention_factor)?;
        super::positive("YaRN's beta_fast", y.beta_fast)?;
        super::positive("YaRN's beta_slow", y.beta_slow)?;
    }
    if let Some(t) = &rope.temperature {
        if !t.beta.is_finite() || t.floor_scale == 0 {
            return Err(format!(
                "the attention temperature (beta {}, every {} positions) is not usable",
                t.beta, t.floor_scale
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ministral 3 8B's published rope_parameters.
    #[test]
    fn ministral_yarn() {
        let params: Value = serde_json::from_str(
            r#"{"beta_fast": 32.0, "beta_slow": 1.0, "factor": 16.0,
                "llama_4_scaling_beta": 0.1, "mscale": 1.0, "mscale_all_dim": 1.0,
                "original_max_position_embeddings": 16384, "rope_theta": 1000000.0,
                "rope_type": "yarn"}"#,
        )
        .unwrap();
        let rope = from_json(Some(&params), None, 262144).unwrap();
        let y = rope.yarn.as_ref().unwrap();
        assert_eq!(
            (y.factor, y.original_context, y.attention_factor),
            (16.0, 16384, 1.0)
        );
        assert_eq!(
            rope.temperature,
            Some(AttentionTemperature {
                beta: 0.1,
                floor_scale: 16384
            })
        );
        let inv = rope.inv_freq(128);
        // The fastest pairs extrapolate (unchanged), the slowest interpolate (÷ 16).
        let plain = Rope::plain(1e6).inv_freq(128);
        assert_eq!(inv[0], plain[0]);
        assert!((inv[63] - plain[63] / 16.0).abs() <= plain[63] * 1e-6);
    }

    /// transformers' `_compute_yarn_parameters` on Ministral 3 8B's config, through the
    /// ramp between extrapolated and interpolated pairs (24 to 32).
    #[test]
    fn yarn_frequencies_match_transformers() {
        let params: Value = serde_json::from_str(
            r#"{"rope_type": "yarn", "rope_theta": 1e6, "factor": 16.0,
                "original_max_position_embeddings": 16384, "beta_fast": 32.0,
                "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.5}"#,
        )
        .unwrap();
        let rope = from_json(Some(&params), None, 262144).unwrap();
        let inv = rope.inv_freq(128);
        for (i, want) in [
            (10, 0.11547820270061493),
            (20, 0.01333521492779255),
            (24, 0.004382954444736242),
            (28, 0.0013251795899122953),
            (32, 0.0003382352879270911),
            (40, 1.1114246262877714e-05),
            (63, 7.75586102008674e-08),
        ] {
            let err = (inv[i] as f64 - want).abs() / want;
            assert!(err < 1e-6, "inv_freq[{i}] {} vs {want}", inv[i]);
        }
        let factor = rope.attention_factor() as f64;
        assert!((factor - 1.121751143713058).abs() < 1e-6, "{factor}");
    }

    #[test]
    fn unknown_rope_type_is_named() {
        let params: Value = serde_json::from_str(r#"{"rope_type": "longrope"}"#).unwrap();
        let err = from_json(Some(&params), None, 1).unwrap_err();
        assert!(err.contains("\"longrope\""), "{err}");
    }
}
