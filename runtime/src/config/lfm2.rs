//! LFM2's and LFM2-MoE's `config.json` (`Lfm2Config`, `Lfm2MoeConfig`).

use serde::Deserialize;
use serde_json::Value;

use super::{
    eos_ids, in_range, positive, rope, Architecture, Key, LayerKind, ModelConfig, MoeConfig,
    MAX_LAYERS,
};

/// The fields of HF's `config.json` we read. Older LFM2 configs spell some keys
/// differently (`block_ff_dim`, `tie_embedding`, `theta`, `full_attn_idxs`).
#[derive(Deserialize)]
struct HfConfig {
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

/// An LFM2 (`moe`: LFM2-MoE) config, unchecked.
pub(super) fn read(json: Value, moe: bool) -> Result<ModelConfig, String> {
    let hf: HfConfig = serde_json::from_value(json).map_err(|e| format!("invalid config: {e}"))?;
    let required =
        |value: Option<usize>, key: Key| value.ok_or_else(|| format!("{} is missing", key.json()));
    let n_layers = required(hf.num_hidden_layers, Key::Layers)?;
    // Before the per-layer list is built from it.
    in_range(Key::Layers.json(), n_layers, MAX_LAYERS)?;
    // lfm2_moe's dense layers use intermediate_size as is (Lfm2MoeMLP).
    let ff_size = if moe {
        hf.intermediate_size.unwrap_or(7168)
    } else {
        ff_size(&hf)?
    };
    let max_position_embeddings = hf.max_position_embeddings.unwrap_or(128_000);
    Ok(ModelConfig {
        architecture: if moe {
            Architecture::Lfm2Moe
        } else {
            Architecture::Lfm2
        },
        vocab_size: required(hf.vocab_size, Key::Vocab)?,
        hidden_size: required(hf.hidden_size, Key::Hidden)?,
        ff_size,
        layers: layer_kinds(&hf, n_layers)?,
        n_heads: required(hf.num_attention_heads, Key::Heads)?,
        n_kv_heads: required(hf.num_key_value_heads, Key::KvHeads)?,
        head_dim: 0,
        norm_eps: hf.norm_eps.unwrap_or(1e-5) as f32,
        rope: rope::from_json(
            hf.rope_parameters.as_ref(),
            hf.theta.or(hf.rope_theta),
            max_position_embeddings,
        )?,
        attention_bias: false,
        conv_l_cache: hf.conv_l_cache.unwrap_or(3),
        conv_bias: hf.conv_bias.unwrap_or(false),
        tie_word_embeddings: hf.tie_embedding.or(hf.tie_word_embeddings).unwrap_or(true),
        max_position_embeddings,
        bos_token_id: hf.bos_token_id,
        eos_token_ids: eos_ids(hf.eos_token_id.as_ref())?,
        moe: moe.then(|| moe_config(&hf)),
        skipped: None,
    })
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
