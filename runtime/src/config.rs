//! `config.json` as HF transformers writes it for `model_type` `lfm2` and `lfm2_moe`, turned into the
//! sizes the runtime needs. Defaults and derived sizes follow `Lfm2Config` exactly, so a
//! checkpoint that loads in transformers loads here unchanged.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::weights::read_text;

/// The operator of one decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated short convolution (LIV conv).
    Conv,
    /// Grouped-query attention with RoPE and per-head q/k RMSNorm.
    Attention,
}

/// The fields of HF's `config.json` we read. Older LFM2 configs spell some keys
/// differently (`block_ff_dim`, `tie_embedding`, `theta`, `full_attn_idxs`).
#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    block_ff_dim: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    norm_eps: Option<f64>,
    conv_bias: Option<bool>,
    #[serde(rename = "conv_L_cache")]
    conv_l_cache: Option<usize>,
    block_multiple_of: Option<usize>,
    // `Some(None)` is an explicit `null`: the multiplier is skipped, as in transformers.
    #[serde(default, deserialize_with = "explicit_null")]
    block_ffn_dim_multiplier: Option<Option<f64>>,
    block_auto_adjust_ff_dim: Option<bool>,
    full_attn_idxs: Option<Vec<usize>>,
    layer_types: Option<Vec<String>>,
    rope_parameters: Option<Value>,
    rope_theta: Option<f64>,
    theta: Option<f64>,
    tie_word_embeddings: Option<bool>,
    tie_embedding: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<Value>,
    // lfm2_moe
    num_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    moe_intermediate_size: Option<usize>,
    num_dense_layers: Option<usize>,
    use_expert_bias: Option<bool>,
    norm_topk_prob: Option<bool>,
    routed_scaling_factor: Option<f64>,
}

fn explicit_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

/// The sparse feed-forward of LFM2-MoE (LFM2-8B-A1B): after `n_dense_layers` dense
/// layers, each layer routes every token to `top_k` of `n_experts` SwiGLU experts.
#[derive(Clone, Debug)]
pub struct MoeConfig {
    pub n_experts: usize,
    pub top_k: usize,
    /// Width of one expert's SwiGLU (`moe_intermediate_size`).
    pub expert_ff: usize,
    pub n_dense_layers: usize,
    /// Whether the router adds `expert_bias` to the scores when choosing experts.
    pub use_expert_bias: bool,
    /// Whether the chosen experts' weights are normalised to sum to 1.
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
}

/// The most experts the routing kernel handles (shaders/moe.wgsl `MAX_EXPERTS`).
pub const MAX_EXPERTS: usize = 256;
/// The most layers. This and the limits below lie far above any published model's, so
/// that a corrupt count is refused here rather than in an allocation or in the size
/// arithmetic of a memory plan.
pub const MAX_LAYERS: usize = 1024;
/// The widest hidden, feed-forward or vocabulary dimension.
pub const MAX_WIDTH: usize = 1 << 20;
/// The most positions (`max_position_embeddings`).
pub const MAX_CONTEXT: usize = 1 << 24;
/// The longest convolution kernel (`conv_L_cache`) the conv kernels handle.
pub const MAX_CONV_L_CACHE: usize = 16;

/// Everything the runtime needs to know about a model's shapes.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Feed-forward width after transformers' auto-adjust rule.
    pub ff_size: usize,
    pub layers: Vec<LayerKind>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// `hidden_size / n_heads`, derived by [`ModelConfig::checked`].
    pub head_dim: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    /// Kernel length of the causal depthwise convolution (`conv_L_cache`).
    pub conv_l_cache: usize,
    /// Whether in_proj, the convolution and out_proj carry biases.
    pub conv_bias: bool,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// `Some` for lfm2_moe.
    pub moe: Option<MoeConfig>,
}

/// A value that config.json and GGUF metadata both state; each format names it by its
/// own key in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Layers,
    Hidden,
    Heads,
    KvHeads,
    Vocab,
    FeedForward,
    NormEps,
    RopeTheta,
    ConvLCache,
    Context,
    Experts,
    ExpertsPerToken,
    ExpertFeedForward,
    DenseLayers,
    RoutedScaling,
}

impl Key {
    /// The key in config.json.
    pub(crate) fn json(self) -> &'static str {
        match self {
            Key::Layers => "num_hidden_layers",
            Key::Hidden => "hidden_size",
            Key::Heads => "num_attention_heads",
            Key::KvHeads => "num_key_value_heads",
            Key::Vocab => "vocab_size",
            Key::FeedForward => "the feed-forward width (from intermediate_size)",
            Key::NormEps => "norm_eps",
            Key::RopeTheta => "rope_theta",
            Key::ConvLCache => "conv_L_cache",
            Key::Context => "max_position_embeddings",
            Key::Experts => "num_experts",
            Key::ExpertsPerToken => "num_experts_per_tok",
            Key::ExpertFeedForward => "moe_intermediate_size",
            Key::DenseLayers => "num_dense_layers",
            Key::RoutedScaling => "routed_scaling_factor",
        }
    }
}

/// `value` in `1..=max`, or a message naming `key`.
fn in_range(key: &str, value: usize, max: usize) -> std::result::Result<(), String> {
    if (1..=max).contains(&value) {
        return Ok(());
    }
    Err(format!("{key} is {value}, must be in 1..={max}"))
}

/// A positive finite `value`, or a message naming `key`.
fn positive<T: Into<f64> + Copy + std::fmt::Debug>(
    key: &str,
    value: T,
) -> std::result::Result<(), String> {
    let v: f64 = value.into();
    if v.is_finite() && v > 0.0 {
        return Ok(());
    }
    Err(format!("{key} is {value:?}, must be positive and finite"))
}

impl ModelConfig {
    /// Reads and validates `<dir>/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::from_json(&text).map_err(|message| Error::config(path, message))
    }

    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let is_moe = match hf.model_type.as_deref() {
            Some("lfm2") => false,
            Some("lfm2_moe") => true,
            Some(other) => {
                return Err(format!(
                    "model_type {other:?} is not supported (this runtime reads \"lfm2\" and \"lfm2_moe\")"
                ))
            }
            None => return Err("model_type is missing".into()),
        };
        let required = |value: Option<usize>, key: Key| {
            value.ok_or_else(|| format!("{} is missing", key.json()))
        };
        let n_layers = required(hf.num_hidden_layers, Key::Layers)?;
        // Before the per-layer list is built from it.
        in_range(Key::Layers.json(), n_layers, MAX_LAYERS)?;
        // lfm2_moe's dense layers use intermediate_size as is (Lfm2MoeMLP).
        let ff_size = if is_moe {
            hf.intermediate_size.unwrap_or(7168)
        } else {
            ff_size(&hf)?
        };
        ModelConfig {
            vocab_size: required(hf.vocab_size, Key::Vocab)?,
            hidden_size: required(hf.hidden_size, Key::Hidden)?,
            ff_size,
            layers: layer_kinds(&hf, n_layers)?,
            n_heads: required(hf.num_attention_heads, Key::Heads)?,
            n_kv_heads: required(hf.num_key_value_heads, Key::KvHeads)?,
            head_dim: 0,
            norm_eps: hf.norm_eps.unwrap_or(1e-5) as f32,
            rope_theta: rope_theta(&hf)? as f32,
            conv_l_cache: hf.conv_l_cache.unwrap_or(3),
            conv_bias: hf.conv_bias.unwrap_or(false),
            tie_word_embeddings: hf.tie_embedding.or(hf.tie_word_embeddings).unwrap_or(true),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(128_000),
            bos_token_id: hf.bos_token_id,
            eos_token_ids: eos_ids(hf.eos_token_id.as_ref())?,
            moe: is_moe.then(|| moe_config(&hf)),
        }
        .checked(Key::json)
    }

    /// Checks the values a config states, as config.json or GGUF metadata gave them,
    /// and derives `head_dim`. `key` names a value as the format does, for messages.
    pub(crate) fn checked<K: AsRef<str>>(
        mut self,
        key: impl Fn(Key) -> K,
    ) -> std::result::Result<Self, String> {
        let count = |k: Key, value, max| in_range(key(k).as_ref(), value, max);
        count(Key::Layers, self.n_layers(), MAX_LAYERS)?;
        count(Key::Hidden, self.hidden_size, MAX_WIDTH)?;
        count(Key::Vocab, self.vocab_size, MAX_WIDTH)?;
        count(Key::FeedForward, self.ff_size, MAX_WIDTH)?;
        count(Key::Heads, self.n_heads, self.hidden_size)?;
        count(Key::KvHeads, self.n_kv_heads, self.n_heads)?;
        count(Key::ConvLCache, self.conv_l_cache, MAX_CONV_L_CACHE)?;
        count(Key::Context, self.max_position_embeddings, MAX_CONTEXT)?;
        let (hidden, heads, kv_heads) = (self.hidden_size, self.n_heads, self.n_kv_heads);
        if hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(format!(
                "{} {hidden} with {} {heads} and {} {kv_heads} does not split evenly into heads",
                key(Key::Hidden).as_ref(),
                key(Key::Heads).as_ref(),
                key(Key::KvHeads).as_ref(),
            ));
        }
        self.head_dim = hidden / heads;
        if self.head_dim % 2 != 0 || self.head_dim > 256 {
            return Err(format!(
                "head_dim {} must be even and at most 256",
                self.head_dim
            ));
        }
        positive(key(Key::NormEps).as_ref(), self.norm_eps)?;
        positive(key(Key::RopeTheta).as_ref(), self.rope_theta)?;
        if let Some(moe) = &self.moe {
            count(Key::Experts, moe.n_experts, MAX_EXPERTS)?;
            count(Key::ExpertsPerToken, moe.top_k, moe.n_experts)?;
            count(Key::ExpertFeedForward, moe.expert_ff, MAX_WIDTH)?;
            if moe.n_dense_layers > self.n_layers() {
                return Err(format!(
                    "{} is {}, more than the {} layers",
                    key(Key::DenseLayers).as_ref(),
                    moe.n_dense_layers,
                    self.n_layers()
                ));
            }
            positive(key(Key::RoutedScaling).as_ref(), moe.routed_scaling_factor)?;
        }
        Ok(self)
    }

    /// Whether layer `i` has a sparse MoE feed-forward.
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| i >= m.n_dense_layers)
    }

    pub fn architecture(&self) -> &'static str {
        if self.moe.is_some() {
            "lfm2_moe"
        } else {
            "lfm2"
        }
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Width of one token's keys (or values) in the KV cache.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The layer pattern in one line, `c` for conv and `A` for attention.
    pub fn layer_pattern(&self) -> String {
        self.layers
            .iter()
            .map(|k| match k {
                LayerKind::Conv => 'c',
                LayerKind::Attention => 'A',
            })
            .collect()
    }
}

/// transformers' `Lfm2MLP`: with `block_auto_adjust_ff_dim`, take 2/3 of the configured
/// width, scale by `block_ffn_dim_multiplier`, round up to `block_multiple_of`.
fn ff_size(hf: &HfConfig) -> std::result::Result<usize, String> {
    let configured = hf.block_ff_dim.or(hf.intermediate_size).unwrap_or(12288);
    if !hf.block_auto_adjust_ff_dim.unwrap_or(true) {
        return Ok(configured);
    }
    let mut ff = (2.0 * configured as f64 / 3.0) as usize;
    if let Some(multiplier) = hf.block_ffn_dim_multiplier.unwrap_or(Some(1.0)) {
        positive("block_ffn_dim_multiplier", multiplier)?;
        ff = (multiplier * ff as f64) as usize;
    }
    let multiple = hf.block_multiple_of.unwrap_or(256);
    if multiple == 0 {
        return Err("block_multiple_of is zero".into());
    }
    // Saturating: what a huge multiplier or multiple gives, MAX_WIDTH then refuses.
    Ok(ff.div_ceil(multiple).saturating_mul(multiple))
}

/// transformers' `Lfm2MoeConfig` defaults are those of LFM2-8B-A1B.
fn moe_config(hf: &HfConfig) -> MoeConfig {
    MoeConfig {
        n_experts: hf.num_experts.unwrap_or(32),
        top_k: hf.num_experts_per_tok.unwrap_or(4),
        expert_ff: hf.moe_intermediate_size.unwrap_or(1792),
        n_dense_layers: hf.num_dense_layers.unwrap_or(2),
        use_expert_bias: hf.use_expert_bias.unwrap_or(true),
        norm_topk_prob: hf.norm_topk_prob.unwrap_or(true),
        routed_scaling_factor: hf.routed_scaling_factor.unwrap_or(1.0) as f32,
    }
}

/// `layer_types` when present; otherwise `full_attn_idxs` (all attention when absent).
fn layer_kinds(hf: &HfConfig, n_layers: usize) -> std::result::Result<Vec<LayerKind>, String> {
    if let Some(types) = &hf.layer_types {
        if types.len() != n_layers {
            return Err(format!(
                "layer_types has {} entries but num_hidden_layers is {n_layers}",
                types.len()
            ));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                "conv" | "short_conv" => Ok(LayerKind::Conv),
                "full_attention" | "attention" => Ok(LayerKind::Attention),
                other => Err(format!("unknown layer type {other:?} in layer_types")),
            })
            .collect();
    }
    let Some(attention) = &hf.full_attn_idxs else {
        return Ok(vec![LayerKind::Attention; n_layers]);
    };
    let mut kinds = vec![LayerKind::Conv; n_layers];
    for &i in attention {
        let kind = kinds
            .get_mut(i)
            .ok_or_else(|| format!("full_attn_idxs names layer {i} of {n_layers}"))?;
        *kind = LayerKind::Attention;
    }
    Ok(kinds)
}

/// `rope_parameters.rope_theta` (flat, or nested per layer type as transformers 5 may
/// write it), else the top-level `theta` / `rope_theta`, else transformers' 1e6.
fn rope_theta(hf: &HfConfig) -> std::result::Result<f64, String> {
    if let Some(params) = &hf.rope_parameters {
        let nested = params.get("full_attention").unwrap_or(params);
        if let Some(rope_type) = nested.get("rope_type").and_then(Value::as_str) {
            if rope_type != "default" {
                return Err(format!(
                    "rope_type {rope_type:?} is not supported (only \"default\")"
                ));
            }
        }
        if let Some(theta) = nested.get("rope_theta").and_then(Value::as_f64) {
            return Ok(theta);
        }
    }
    Ok(hf.theta.or(hf.rope_theta).unwrap_or(1e6))
}

fn eos_ids(value: Option<&Value>) -> std::result::Result<Vec<u32>, String> {
    let as_id = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| format!("eos_token_id {v} is not a token id"))
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(as_id).collect(),
        Some(v) => Ok(vec![as_id(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LFM2_350M: &str = r#"{
        "model_type": "lfm2", "vocab_size": 65536, "hidden_size": 1024,
        "block_ff_dim": 6656, "intermediate_size": 6656, "block_auto_adjust_ff_dim": true,
        "block_ffn_dim_multiplier": 1.0, "block_multiple_of": 256,
        "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 8,
        "full_attn_idxs": [2, 5, 8, 10, 12, 14], "conv_L_cache": 3, "conv_bias": false,
        "norm_eps": 1e-05, "rope_theta": 1000000.0, "tie_embedding": true,
        "eos_token_id": 7, "bos_token_id": 1
    }"#;

    #[test]
    fn published_350m_config() {
        let c = ModelConfig::from_json(LFM2_350M).unwrap();
        assert_eq!(c.ff_size, 4608);
        assert_eq!(c.layer_pattern(), "ccAccAccAcAcAcAc");
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.kv_dim(), 512);
        assert_eq!(c.eos_token_ids, vec![7]);
        assert_eq!(c.rope_theta, 1e6);
    }

    #[test]
    fn published_1_2b_ff_rule() {
        let json = LFM2_350M
            .replace("\"hidden_size\": 1024", "\"hidden_size\": 2048")
            .replace("6656", "12288");
        assert_eq!(ModelConfig::from_json(&json).unwrap().ff_size, 8192);
    }

    #[test]
    fn nested_rope_parameters_and_layer_types() {
        let json = r#"{"model_type": "lfm2", "vocab_size": 8, "hidden_size": 8,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "intermediate_size": 24, "block_auto_adjust_ff_dim": false,
            "layer_types": ["full_attention", "conv"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 10000.0}}}"#;
        let c = ModelConfig::from_json(json).unwrap();
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.ff_size, 24);
        assert_eq!(c.layers, vec![LayerKind::Attention, LayerKind::Conv]);
    }

    #[test]
    fn published_8b_a1b_config() {
        let json = r#"{"model_type": "lfm2_moe", "vocab_size": 65536, "hidden_size": 2048,
            "intermediate_size": 7168, "moe_intermediate_size": 1792, "num_hidden_layers": 24,
            "num_attention_heads": 32, "num_key_value_heads": 8, "num_experts": 32,
            "num_experts_per_tok": 4, "num_dense_layers": 2, "use_expert_bias": true,
            "norm_topk_prob": true, "routed_scaling_factor": 1.0,
            "full_attn_idxs": [2, 6, 10, 14, 18, 21]}"#;
        let c = ModelConfig::from_json(json).unwrap();
        let moe = c.moe.as_ref().unwrap();
        assert_eq!((c.ff_size, moe.expert_ff, moe.top_k), (7168, 1792, 4));
        assert!(!c.is_moe_layer(1) && c.is_moe_layer(2) && c.is_moe_layer(23));
        assert_eq!(c.layer_pattern(), "ccAcccAcccAcccAcccAccAcc");
    }

    #[test]
    fn moe_top_k_above_expert_count() {
        let json = r#"{"model_type": "lfm2_moe", "vocab_size": 8, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "num_experts": 4, "num_experts_per_tok": 5}"#;
        let err = ModelConfig::from_json(json).unwrap_err();
        assert_eq!(err, "num_experts_per_tok is 5, must be in 1..=4");
    }

    #[test]
    fn unknown_model_type_is_named() {
        let err = ModelConfig::from_json(r#"{"model_type": "llama"}"#).unwrap_err();
        assert!(err.contains("\"llama\""), "{err}");
    }

    #[test]
    fn bad_layer_types_length() {
        let json = LFM2_350M.replace(
            "\"full_attn_idxs\": [2, 5, 8, 10, 12, 14]",
            "\"layer_types\": [\"conv\"]",
        );
        let err = ModelConfig::from_json(&json).unwrap_err();
        assert!(err.contains("layer_types has 1 entries"), "{err}");
    }

    /// Each value is refused with its key and what was found.
    #[test]
    fn values_that_make_no_model_are_named() {
        for (from, to, expected) in [
            (
                "\"norm_eps\": 1e-05",
                "-1e-05",
                "norm_eps is -1e-5, must be positive and finite",
            ),
            (
                "\"norm_eps\": 1e-05",
                "1e-60",
                "norm_eps is 0.0, must be positive and finite",
            ),
            (
                "\"rope_theta\": 1000000.0",
                "0",
                "rope_theta is 0.0, must be positive and finite",
            ),
            (
                "\"rope_theta\": 1000000.0",
                "-1e4",
                "rope_theta is -10000.0, must be positive",
            ),
            (
                "\"rope_theta\": 1000000.0",
                "1e300",
                "rope_theta is inf, must be positive",
            ),
            (
                "\"block_ffn_dim_multiplier\": 1.0",
                "1e300",
                "the feed-forward width (from intermediate_size) is 18446744073709551615",
            ),
            (
                "\"block_ffn_dim_multiplier\": 1.0",
                "-2",
                "block_ffn_dim_multiplier is -2.0",
            ),
            (
                "\"block_multiple_of\": 256",
                "18446744073709551615",
                "the feed-forward width (from intermediate_size) is 184467",
            ),
            (
                "\"num_hidden_layers\": 16",
                "100000",
                "num_hidden_layers is 100000, must be in 1..=1024",
            ),
            (
                "\"hidden_size\": 1024",
                "0",
                "hidden_size is 0, must be in 1..=1048576",
            ),
            (
                "\"vocab_size\": 65536",
                "18446744073709551615",
                "vocab_size is 18446744073709551615",
            ),
            (
                "\"num_attention_heads\": 16",
                "0",
                "num_attention_heads is 0",
            ),
            (
                "\"conv_L_cache\": 3",
                "0",
                "conv_L_cache is 0, must be in 1..=16",
            ),
            (
                "\"conv_L_cache\": 3",
                "17",
                "conv_L_cache is 17, must be in 1..=16",
            ),
            (
                "\"bos_token_id\": 1",
                "1, \"max_position_embeddings\": 0",
                "max_position_embeddings is 0",
            ),
        ] {
            let key = from.split(':').next().unwrap();
            let json = LFM2_350M.replace(from, &format!("{key}: {to}"));
            assert_ne!(json, LFM2_350M);
            let err = ModelConfig::from_json(&json).unwrap_err();
            assert!(err.starts_with(expected), "{to}: {err}");
        }
    }

    /// Without `layer_types`, the kinds come from `full_attn_idxs` in linear time.
    #[test]
    fn many_layers_from_full_attn_idxs() {
        let json = LFM2_350M
            .replace("\"num_hidden_layers\": 16", "\"num_hidden_layers\": 1024")
            .replace("[2, 5, 8, 10, 12, 14]", "[1023, 0]");
        let c = ModelConfig::from_json(&json).unwrap();
        assert_eq!(c.n_layers(), 1024);
        assert_eq!(c.layer_pattern(), format!("A{}A", "c".repeat(1022)));
        let json = json.replace("[1023, 0]", "[1024]");
        let err = ModelConfig::from_json(&json).unwrap_err();
        assert!(
            err.starts_with("full_attn_idxs names layer 1024 of 1024"),
            "{err}"
        );
    }
}
