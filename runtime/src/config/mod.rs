//! A model's shapes, as the runtime needs them, from HF's `config.json` or GGUF
//! metadata. Each architecture has its reader (`lfm2.rs`, `transformer.rs`) whose
//! defaults and derived sizes follow transformers' config class exactly, so a
//! checkpoint that loads in transformers loads here unchanged; `rope.rs` reads the
//! rotary embedding's settings.

mod lfm2;
mod rope;
mod transformer;

pub(crate) use rope::mscale;
pub use rope::{AttentionTemperature, Rope, Yarn};

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::weights::read_text;

/// The operator of one decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Gated short convolution (LIV conv).
    Conv,
    /// Grouped-query attention with RoPE (and, per architecture, q/k RMSNorm).
    Attention,
}

/// The model families the runtime reads: one forward graph, different layer patterns,
/// weight names and attention details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// LFM2: short-conv and attention layers, dense SwiGLU.
    Lfm2,
    /// LFM2-MoE (LFM2-8B-A1B): LFM2 with sparse MoE feed-forwards.
    Lfm2Moe,
    /// Qwen3: attention layers with per-head q/k RMSNorm.
    Qwen3,
    /// Ministral 3: attention layers, YaRN RoPE and Llama 4's attention temperature.
    Ministral3,
}

impl Architecture {
    /// The `model_type` of its HF config.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Lfm2 => "lfm2",
            Architecture::Lfm2Moe => "lfm2_moe",
            Architecture::Qwen3 => "qwen3",
            Architecture::Ministral3 => "ministral3",
        }
    }

    /// Whether attention normalises q and k per head before RoPE.
    pub fn qk_norm(self) -> bool {
        self != Architecture::Ministral3
    }
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

/// The most experts a config may state, far above any published model's: a corrupt
/// count is refused here rather than in the routing kernel's buffers.
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
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Feed-forward width after transformers' auto-adjust rule.
    pub ff_size: usize,
    pub layers: Vec<LayerKind>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// As the config states it, or `hidden_size / n_heads` (derived by
    /// [`ModelConfig::checked`] where a reader leaves it 0).
    pub head_dim: usize,
    pub norm_eps: f32,
    pub rope: Rope,
    /// Whether q, k, v and o projections carry biases (Qwen3's `attention_bias`).
    pub attention_bias: bool,
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
    /// What the checkpoint holds besides the language model, which is not loaded (the
    /// vision tower and projector of a Mistral3ForConditionalGeneration).
    pub skipped: Option<&'static str>,
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

    /// Reads a config.json by its `model_type`.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let model_type = |json: &Value| {
            json.get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let config = match model_type(&json).as_deref() {
            Some("lfm2") => lfm2::read(json, false),
            Some("lfm2_moe") => lfm2::read(json, true),
            Some("qwen3") => transformer::read(json, Architecture::Qwen3),
            Some("ministral3") => transformer::read(json, Architecture::Ministral3),
            // Mistral3ForConditionalGeneration: a vision tower beside a Ministral 3.
            Some("mistral3") => {
                let text = json.get("text_config").cloned().ok_or("text_config is missing")?;
                match model_type(&text).as_deref() {
                    Some("ministral3") => transformer::read(text, Architecture::Ministral3)
                        .map(|c| ModelConfig {
                            skipped: Some("the vision tower and multimodal projector"),
                            ..c
                        }),
                    other => Err(format!(
                        "text_config.model_type {other:?} is not supported (\"ministral3\" is)"
                    )),
                }
            }
            Some(other) => Err(format!(
                "model_type {other:?} is not supported (this runtime reads \"lfm2\", \"lfm2_moe\", \"qwen3\", \"ministral3\" and \"mistral3\")"
            )),
            None => Err("model_type is missing".into()),
        }?;
        config.checked(Key::json)
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
        let derived = self.head_dim == 0;
        if (derived && hidden % heads != 0) || heads % kv_heads != 0 {
            return Err(format!(
                "{} {hidden} with {} {heads} and {} {kv_heads} does not split evenly into heads",
                key(Key::Hidden).as_ref(),
                key(Key::Heads).as_ref(),
                key(Key::KvHeads).as_ref(),
            ));
        }
        if derived {
            self.head_dim = hidden / heads;
        }
        if self.head_dim % 2 != 0 || self.head_dim > 256 {
            return Err(format!(
                "head_dim {} must be even and at most 256",
                self.head_dim
            ));
        }
        positive(key(Key::NormEps).as_ref(), self.norm_eps)?;
        rope::check(&self.rope, key(Key::RopeTheta).as_ref())?;
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

    /// Width of the attention output, `n_heads · head_dim` (not always `hidden_size`).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Whether any layer is a short convolution.
    pub fn has_conv_layers(&self) -> bool {
        self.layers.contains(&LayerKind::Conv)
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Width of one token's keys (or values) in the KV cache.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Width of a token's q, k and v side by side (`State::qkv`): `q_dim + 2 · kv_dim`.
    pub fn qkv_dim(&self) -> usize {
        self.q_dim() + 2 * self.kv_dim()
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

/// `eos_token_id`: one id, a list, or none.
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
        assert_eq!(c.rope.theta, 1e6);
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
        assert_eq!(c.rope.theta, 10000.0);
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
