//! The all-attention transformers LFM2 is measured against: Qwen3 (`Qwen3Config`) and
//! Ministral 3 (`Ministral3Config`, also the `text_config` of a
//! Mistral3ForConditionalGeneration). Every layer is attention then a dense SwiGLU.

use serde::Deserialize;
use serde_json::Value;

use super::{eos_ids, in_range, rope, Architecture, Key, LayerKind, ModelConfig, MAX_LAYERS};

/// The fields of `Qwen3Config` / `Ministral3Config` we read.
#[derive(Deserialize)]
struct HfConfig {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    /// Missing: 128; `null`: hidden / heads.
    head_dim: Option<Value>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    rope_theta: Option<f64>,
    attention_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    use_sliding_window: Option<bool>,
    sliding_window: Option<usize>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<Value>,
}

/// transformers' defaults where they differ between the two.
struct Defaults {
    vocab_size: usize,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    rope_theta: f64,
}

const QWEN3: Defaults = Defaults {
    vocab_size: 151_936,
    max_position_embeddings: 32_768,
    rms_norm_eps: 1e-6,
    rope_theta: 1e4,
};

const MINISTRAL3: Defaults = Defaults {
    vocab_size: 131_072,
    max_position_embeddings: 262_144,
    rms_norm_eps: 1e-5,
    rope_theta: 1e6,
};

/// Ministral3Config's rope when config.json states none.
fn ministral3_default_rope() -> Value {
    serde_json::json!({
        "rope_type": "yarn", "rope_theta": 1e6, "factor": 16.0,
        "original_max_position_embeddings": 16384, "beta_fast": 32.0, "beta_slow": 1.0,
        "mscale_all_dim": 1.0, "mscale": 1.0, "llama_4_scaling_beta": 0.1
    })
}

/// A Qwen3 or Ministral 3 config, unchecked.
pub(super) fn read(json: Value, architecture: Architecture) -> Result<ModelConfig, String> {
    let hf: HfConfig = serde_json::from_value(json).map_err(|e| format!("invalid config: {e}"))?;
    let defaults = match architecture {
        Architecture::Ministral3 => MINISTRAL3,
        _ => QWEN3,
    };
    let required =
        |value: Option<usize>, key: Key| value.ok_or_else(|| format!("{} is missing", key.json()));
    let n_layers = required(hf.num_hidden_layers, Key::Layers)?;
    in_range(Key::Layers.json(), n_layers, MAX_LAYERS)?;
    refuse_sliding_window(&hf, architecture, n_layers)?;
    let max_position_embeddings = hf
        .max_position_embeddings
        .unwrap_or(defaults.max_position_embeddings);
    let rope_json = match (architecture, hf.rope_parameters.or(hf.rope_scaling)) {
        (_, Some(params)) => Some(params),
        (Architecture::Ministral3, None) => Some(ministral3_default_rope()),
        _ => None,
    };
    let mut rope = rope::from_json(
        rope_json.as_ref(),
        Some(hf.rope_theta.unwrap_or(defaults.rope_theta)),
        max_position_embeddings,
    )?;
    if architecture != Architecture::Ministral3 {
        // Only Ministral 3's attention applies llama_4_scaling_beta.
        rope.temperature = None;
    }
    let hidden_size = required(hf.hidden_size, Key::Hidden)?;
    let n_heads = required(hf.num_attention_heads, Key::Heads)?;
    Ok(ModelConfig {
        architecture,
        vocab_size: hf.vocab_size.unwrap_or(defaults.vocab_size),
        hidden_size,
        ff_size: required(hf.intermediate_size, Key::FeedForward)?,
        layers: vec![LayerKind::Attention; n_layers],
        n_heads,
        n_kv_heads: hf.num_key_value_heads.unwrap_or(n_heads),
        head_dim: head_dim(hf.head_dim.as_ref())?,
        norm_eps: hf.rms_norm_eps.unwrap_or(defaults.rms_norm_eps) as f32,
        rope,
        attention_bias: architecture == Architecture::Qwen3 && hf.attention_bias.unwrap_or(false),
        conv_l_cache: 1,
        conv_bias: false,
        tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
        max_position_embeddings,
        bos_token_id: hf.bos_token_id,
        eos_token_ids: eos_ids(hf.eos_token_id.as_ref())?,
        moe: None,
        skipped: None,
    })
}

/// Both classes default to 128; a `null` is derived from hidden / heads (0 here).
fn head_dim(value: Option<&Value>) -> Result<usize, String> {
    match value {
        None => Ok(128),
        Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .filter(|&d| d > 0)
            .map(|d| d as usize)
            .ok_or_else(|| format!("head_dim {v} is not a positive integer")),
    }
}

/// Sliding-window attention is not implemented: a config that uses it on any layer is
/// refused by name rather than run with full attention.
fn refuse_sliding_window(
    hf: &HfConfig,
    architecture: Architecture,
    n_layers: usize,
) -> Result<(), String> {
    // Qwen3 ignores sliding_window unless use_sliding_window; Ministral 3 always uses it.
    let window = match architecture {
        Architecture::Qwen3 if !hf.use_sliding_window.unwrap_or(false) => None,
        _ => hf.sliding_window,
    };
    let Some(window) = window else {
        return Ok(());
    };
    let sliding: Vec<usize> = match &hf.layer_types {
        Some(types) => (0..types.len())
            .filter(|&i| types[i] == "sliding_attention")
            .collect(),
        None if architecture == Architecture::Qwen3 => {
            (hf.max_window_layers.unwrap_or(28).min(n_layers)..n_layers).collect()
        }
        None => (0..n_layers).collect(),
    };
    match sliding.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "sliding-window attention (sliding_window {window}, on {} layers from layer {first}) is not supported",
            sliding.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Architecture, ModelConfig};

    const QWEN3_8B: &str = r#"{"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
        "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 4096, "intermediate_size": 12288, "max_position_embeddings": 40960,
        "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32,
        "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
        "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
        "tie_word_embeddings": false, "use_sliding_window": false, "vocab_size": 151936}"#;

    #[test]
    fn published_qwen3_8b_config() {
        let c = ModelConfig::from_json(QWEN3_8B).unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        assert_eq!(
            (c.hidden_size, c.n_heads, c.n_kv_heads, c.head_dim),
            (4096, 32, 8, 128)
        );
        assert_eq!((c.ff_size, c.vocab_size, c.n_layers()), (12288, 151936, 36));
        assert_eq!((c.norm_eps, c.rope.theta), (1e-6, 1e6));
        assert!(!c.tie_word_embeddings && !c.attention_bias && c.rope.yarn.is_none());
        assert_eq!(c.layer_pattern(), "A".repeat(36));
        assert_eq!(c.eos_token_ids, vec![151645]);
    }

    #[test]
    fn sliding_window_layers_are_refused_by_name() {
        let json = QWEN3_8B
            .replace(
                "\"use_sliding_window\": false",
                "\"use_sliding_window\": true",
            )
            .replace("\"sliding_window\": null", "\"sliding_window\": 4096")
            .replace("\"max_window_layers\": 36", "\"max_window_layers\": 28");
        let err = ModelConfig::from_json(&json).unwrap_err();
        assert!(
            err.starts_with(
                "sliding-window attention (sliding_window 4096, on 8 layers from layer 28)"
            ),
            "{err}"
        );
    }

    #[test]
    fn mistral3_reads_its_text_config() {
        let json = r#"{"model_type": "mistral3", "vision_config": {"model_type": "pixtral"},
            "text_config": {"model_type": "ministral3", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 34, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072}}"#;
        let c = ModelConfig::from_json(json).unwrap();
        assert_eq!(c.architecture, Architecture::Ministral3);
        assert!(c.skipped.is_some());
        let yarn = c.rope.yarn.as_ref().unwrap();
        assert_eq!((yarn.factor, yarn.original_context), (16.0, 16384));
        assert_eq!(c.rope.temperature.unwrap().beta, 0.1);
    }
}
