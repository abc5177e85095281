//! A GGUF file's model config, from its `<arch>.*` metadata (its tensors under the
//! model code's names are `weights.rs`).

use super::{GgufFile, Value};
use crate::config::{
    mscale, Architecture, AttentionTemperature, Key, LayerKind, ModelConfig, MoeConfig, Rope, Yarn,
    MAX_LAYERS,
};
use crate::error::{Error, Result};
use crate::weights::layer_count;

/// llama.cpp's `expert_gating_func` value for a sigmoid router.
const GATING_SIGMOID: u32 = 2;

/// `general.architecture` and its `<arch>.*` keys, read into a [`ModelConfig`] and
/// checked as config.json is, and against the layers the tensors hold.
pub fn model_config(file: &GgufFile) -> Result<ModelConfig> {
    let arch = file.get_str("general.architecture")?;
    let architecture = architecture(file, arch)?;
    let lfm2 = matches!(architecture, Architecture::Lfm2 | Architecture::Lfm2Moe);
    let bad = |message: String| Error::gguf(file.path(), message);
    // The ff width is the gate's row count where the first block has a dense one.
    let ff_rows = tensor_rows(file, "blk.0.ffn_gate.weight").ok();
    let key = |k: Key| key_name(arch, k, ff_rows.is_some());
    let u32_key = |k: Key| file.get_u32(&key(k)).map(|v| v as usize);
    let n_layers = u32_key(Key::Layers)?;
    // LFM2: per layer, 0 marks a conv layer, else that attention layer's kv head count.
    // The others state one count for every layer.
    let kv_heads = match file.get(&key(Key::KvHeads)) {
        Some(Value::Array(..)) => file.get_u32_array(&key(Key::KvHeads))?,
        _ => vec![file.get_u32(&key(Key::KvHeads))?; n_layers.min(MAX_LAYERS)],
    };
    if kv_heads.len() != n_layers {
        return Err(bad(format!(
            "{} has {} entries for {n_layers} layers",
            key(Key::KvHeads),
            kv_heads.len()
        )));
    }
    let n_kv_heads = kv_heads.iter().copied().find(|&n| n > 0).unwrap_or(1) as usize;
    if kv_heads.iter().any(|&n| n > 0 && n as usize != n_kv_heads) {
        return Err(bad(
            "attention layers with different kv head counts are not supported".into(),
        ));
    }
    if !lfm2 && kv_heads.contains(&0) {
        return Err(bad(format!("{} is 0", key(Key::KvHeads))));
    }
    let layers = kv_heads
        .iter()
        .map(|&n| match n {
            0 => LayerKind::Conv,
            _ => LayerKind::Attention,
        })
        .collect();
    let ff_size = match ff_rows {
        Some(rows) => rows,
        None => u32_key(Key::FeedForward)?,
    };
    let head_dim = file.optional(&format!("{arch}.attention.key_length"), GgufFile::get_u32)?;
    let value_dim = file.optional(&format!("{arch}.attention.value_length"), GgufFile::get_u32)?;
    if value_dim.is_some() && value_dim != head_dim {
        return Err(bad(format!(
            "{arch}.attention.value_length {value_dim:?} differs from key_length {head_dim:?}"
        )));
    }
    let eos = file.optional("tokenizer.ggml.eos_token_id", GgufFile::get_u32)?;
    let config = ModelConfig {
        architecture,
        // The vocabulary is the embedding's row count.
        vocab_size: tensor_rows(file, "token_embd.weight")?,
        hidden_size: u32_key(Key::Hidden)?,
        ff_size,
        layers,
        n_heads: u32_key(Key::Heads)?,
        n_kv_heads,
        head_dim: head_dim.unwrap_or(0) as usize,
        norm_eps: file.get_f32(&key(Key::NormEps))?,
        rope: rope(file, arch, lfm2)?,
        attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
        conv_l_cache: if lfm2 { u32_key(Key::ConvLCache)? } else { 1 },
        conv_bias: file
            .tensors()
            .any(|t| t.name.ends_with("shortconv.in_proj.bias")),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        max_position_embeddings: file
            .optional(&key(Key::Context), GgufFile::get_u32)?
            .unwrap_or(128_000) as usize,
        bos_token_id: file.optional("tokenizer.ggml.bos_token_id", GgufFile::get_u32)?,
        eos_token_ids: eos.into_iter().collect(),
        moe: (architecture == Architecture::Lfm2Moe)
            .then(|| moe_config(file, arch, key))
            .transpose()?,
        skipped: None,
    }
    .checked(key)
    .map_err(bad)?;
    let blocks = layer_count(file.tensors().map(|t| t.name.as_str()), "blk.");
    if blocks != config.n_layers() {
        let held = match blocks {
            0 => "no layers".to_string(),
            n => format!("{n} layers (blk.0 to blk.{})", n - 1),
        };
        return Err(bad(format!(
            "{} is {}, the tensors hold {held}",
            key(Key::Layers),
            config.n_layers()
        )));
    }
    Ok(config)
}

/// The architecture llama.cpp's name stands for.
fn architecture(file: &GgufFile, arch: &str) -> Result<Architecture> {
    Ok(match arch {
        "lfm2" => Architecture::Lfm2,
        "lfm2moe" => Architecture::Lfm2Moe,
        "qwen3" => Architecture::Qwen3,
        "mistral3" => Architecture::Ministral3,
        other => {
            return Err(Error::gguf(
                file.path(),
                format!(
                "general.architecture {other:?} is not supported (lfm2, lfm2moe, qwen3, mistral3)"
            ),
            ))
        }
    })
}

/// `<arch>.rope.*` as llama.cpp reads it: the base, YaRN where `rope.scaling.type` is
/// "yarn" (its attention factor as llama.cpp derives it, taking `mscale` as 1), and
/// the attention temperature (`attention.temperature_scale`), which llama.cpp applies
/// every `rope.scaling.original_context_length` positions.
fn rope(file: &GgufFile, arch: &str, lfm2: bool) -> Result<Rope> {
    let f32_key = |name: &str| file.optional(&format!("{arch}.{name}"), GgufFile::get_f32);
    // llama.cpp's default base is 1e4; LFM2 files always state theirs, 1e6.
    let theta = f32_key("rope.freq_base")?.unwrap_or(if lfm2 { 1e6 } else { 1e4 });
    let mut rope = Rope::plain(theta);
    let scaling_key = format!("{arch}.rope.scaling.type");
    match file.optional(&scaling_key, GgufFile::get_str)? {
        None | Some("none") => {}
        Some("yarn") => {
            let original_key = format!("{arch}.rope.scaling.original_context_length");
            let original = file.get_u32(&original_key)? as usize;
            let factor = f32_key("rope.scaling.factor")?.unwrap_or(1.0);
            let log_mul = f32_key("rope.scaling.yarn_log_multiplier")?.unwrap_or(0.0) as f64;
            let f = factor as f64;
            let attention_factor = match log_mul {
                0.0 => mscale(f, 1.0),
                _ => mscale(f, 1.0) / mscale(f, log_mul),
            } * f32_key("rope.scaling.attn_factor")?.unwrap_or(1.0) as f64;
            rope.yarn = Some(Yarn {
                factor,
                original_context: original,
                beta_fast: f32_key("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                beta_slow: f32_key("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                attention_factor: attention_factor as f32,
                truncate: true,
            });
            if let Some(beta) = f32_key("attention.temperature_scale")?.filter(|&b| b != 0.0) {
                rope.temperature = Some(AttentionTemperature {
                    beta,
                    floor_scale: original,
                });
            }
        }
        Some(other) => {
            return Err(Error::gguf(
                file.path(),
                format!("{scaling_key} is {other:?}; only \"none\" and \"yarn\" are supported"),
            ))
        }
    }
    Ok(rope)
}

/// Where a GGUF file states each value: an `<arch>.` key, or a tensor's rows.
fn key_name(arch: &str, key: Key, ff_from_tensor: bool) -> String {
    let suffix = match key {
        Key::Vocab => return "token_embd.weight rows".into(),
        Key::FeedForward if ff_from_tensor => return "blk.0.ffn_gate.weight rows".into(),
        Key::FeedForward => "feed_forward_length",
        Key::Layers => "block_count",
        Key::Hidden => "embedding_length",
        Key::Heads => "attention.head_count",
        Key::KvHeads => "attention.head_count_kv",
        Key::NormEps => "attention.layer_norm_rms_epsilon",
        Key::RopeTheta => "rope.freq_base",
        Key::ConvLCache => "shortconv.l_cache",
        Key::Context => "context_length",
        Key::Experts => "expert_count",
        Key::ExpertsPerToken => "expert_used_count",
        Key::ExpertFeedForward => "expert_feed_forward_length",
        Key::DenseLayers => "leading_dense_block_count",
        Key::RoutedScaling => "expert_weights_scale",
    };
    format!("{arch}.{suffix}")
}

/// The MoE keys; [`ModelConfig::checked`] checks them with the rest.
fn moe_config(file: &GgufFile, arch: &str, key: impl Fn(Key) -> String) -> Result<MoeConfig> {
    let gating_key = format!("{arch}.expert_gating_func");
    let gating = file
        .optional(&gating_key, GgufFile::get_u32)?
        .unwrap_or(GATING_SIGMOID);
    if gating != GATING_SIGMOID {
        return Err(Error::gguf(
            file.path(),
            format!("{gating_key} is {gating}; LFM2-MoE routes with a sigmoid (2)"),
        ));
    }
    let u32_key = |k: Key| file.get_u32(&key(k)).map(|v| v as usize);
    Ok(MoeConfig {
        n_experts: u32_key(Key::Experts)?,
        top_k: u32_key(Key::ExpertsPerToken)?,
        expert_ff: u32_key(Key::ExpertFeedForward)?,
        n_dense_layers: u32_key(Key::DenseLayers)?,
        use_expert_bias: file
            .tensors()
            .any(|t| t.name.ends_with(".exp_probs_b.bias")),
        norm_topk_prob: file
            .optional(&format!("{arch}.expert_weights_norm"), GgufFile::get_bool)?
            .unwrap_or(true),
        routed_scaling_factor: file
            .optional(&key(Key::RoutedScaling), GgufFile::get_f32)?
            .unwrap_or(1.0),
    })
}

/// Rows (outermost PyTorch dimension) of a 2-D tensor.
fn tensor_rows(file: &GgufFile, name: &str) -> Result<usize> {
    let info = file
        .tensor_info(name)
        .ok_or_else(|| Error::tensor(file.path(), name, "missing from the GGUF file"))?;
    match info.shape()[..] {
        [rows, _] => Ok(rows),
        ref shape => Err(Error::tensor(
            file.path(),
            name,
            format!("shape {shape:?} is not a matrix"),
        )),
    }
}
