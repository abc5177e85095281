//! A GGUF file as a model: the config from `<arch>.*` metadata, and the tensors under
//! the HF names the model code asks for (llama.cpp's names and shapes translated).

use std::path::PathBuf;

use super::{GgmlType, GgufFile};
use crate::config::{Key, LayerKind, ModelConfig, MoeConfig};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::{layer_count, TensorView, WeightSource};

/// llama.cpp's `expert_gating_func` value for a sigmoid router.
const GATING_SIGMOID: u32 = 2;

/// `general.architecture` and its `<arch>.*` keys, read into a [`ModelConfig`] and
/// checked as config.json is, and against the layers the tensors hold.
pub fn model_config(file: &GgufFile) -> Result<ModelConfig> {
    let arch = file.get_str("general.architecture")?;
    let is_moe = match arch {
        "lfm2" => false,
        "lfm2moe" => true,
        other => {
            return Err(Error::gguf(
                file.path(),
                format!("general.architecture {other:?} is not supported (lfm2, lfm2moe)"),
            ))
        }
    };
    let bad = |message: String| Error::gguf(file.path(), message);
    // The ff width is the gate's row count where the first block has a dense one.
    let ff_rows = tensor_rows(file, "blk.0.ffn_gate.weight").ok();
    let key = |k: Key| key_name(arch, k, ff_rows.is_some());
    let u32_key = |k: Key| file.get_u32(&key(k)).map(|v| v as usize);
    let n_layers = u32_key(Key::Layers)?;
    // Per layer: 0 marks a conv layer, else that attention layer's kv head count.
    let kv_heads = file.get_u32_array(&key(Key::KvHeads))?;
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
    let eos = file.optional("tokenizer.ggml.eos_token_id", GgufFile::get_u32)?;
    let config = ModelConfig {
        // The vocabulary is the embedding's row count.
        vocab_size: tensor_rows(file, "token_embd.weight")?,
        hidden_size: u32_key(Key::Hidden)?,
        ff_size,
        layers,
        n_heads: u32_key(Key::Heads)?,
        n_kv_heads,
        head_dim: 0,
        norm_eps: file.get_f32(&key(Key::NormEps))?,
        rope_theta: file
            .optional(&key(Key::RopeTheta), GgufFile::get_f32)?
            .unwrap_or(1e6),
        conv_l_cache: u32_key(Key::ConvLCache)?,
        conv_bias: file
            .tensors()
            .any(|t| t.name.ends_with("shortconv.in_proj.bias")),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        max_position_embeddings: file
            .optional(&key(Key::Context), GgufFile::get_u32)?
            .unwrap_or(128_000) as usize,
        bos_token_id: file.optional("tokenizer.ggml.bos_token_id", GgufFile::get_u32)?,
        eos_token_ids: eos.into_iter().collect(),
        moe: is_moe.then(|| moe_config(file, arch, key)).transpose()?,
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

/// llama.cpp's name for an HF tensor name of an LFM2 model.
fn gguf_name(hf: &str) -> Option<String> {
    let global = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.embedding_norm.weight" => Some("token_embd_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = global {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let name = match rest {
        "operator_norm.weight" => "attn_norm.weight",
        "ffn_norm.weight" => "ffn_norm.weight",
        "conv.in_proj.weight" => "shortconv.in_proj.weight",
        "conv.in_proj.bias" => "shortconv.in_proj.bias",
        "conv.conv.weight" => "shortconv.conv.weight",
        "conv.conv.bias" => "shortconv.conv.bias",
        "conv.out_proj.weight" => "shortconv.out_proj.weight",
        "conv.out_proj.bias" => "shortconv.out_proj.bias",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.out_proj.weight" => "attn_output.weight",
        "self_attn.q_layernorm.weight" => "attn_q_norm.weight",
        "self_attn.k_layernorm.weight" => "attn_k_norm.weight",
        "feed_forward.w1.weight" => "ffn_gate.weight",
        "feed_forward.w3.weight" => "ffn_up.weight",
        "feed_forward.w2.weight" => "ffn_down.weight",
        "feed_forward.gate.weight" => "ffn_gate_inp.weight",
        "feed_forward.expert_bias" => "exp_probs_b.bias",
        // GGUF stacks each expert matrix: (experts, rows, cols).
        "feed_forward.experts.w1" => "ffn_gate_exps.weight",
        "feed_forward.experts.w3" => "ffn_up_exps.weight",
        "feed_forward.experts.w2" => "ffn_down_exps.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{name}"))
}

fn dtype(t: GgmlType) -> Option<DType> {
    Some(match t {
        GgmlType::F32 => DType::F32,
        GgmlType::F16 => DType::F16,
        GgmlType::BF16 => DType::BF16,
        GgmlType::Q8_0 => DType::Q8_0,
        GgmlType::Q4_0 => DType::Q4_0,
        GgmlType::Q4_1 => DType::Q4_1,
        GgmlType::Q5_0 => DType::Q5_0,
        GgmlType::Q5_1 => DType::Q5_1,
        GgmlType::Q4_K => DType::Q4_K,
        GgmlType::Q5_K => DType::Q5_K,
        GgmlType::Q6_K => DType::Q6_K,
        _ => return None,
    })
}

/// A GGUF file's tensors under HF names.
pub struct GgufWeights {
    file: GgufFile,
}

impl GgufWeights {
    pub fn new(file: GgufFile) -> GgufWeights {
        GgufWeights { file }
    }
}

impl WeightSource for GgufWeights {
    fn get(&self, hf: &str) -> Result<TensorView<'_>> {
        let name = gguf_name(hf)
            .ok_or_else(|| Error::tensor(self.file.path(), hf, "has no GGUF counterpart"))?;
        let tensor = self.file.tensor(&name)?;
        let ggml_type = tensor.info.ggml_type;
        let dtype = dtype(ggml_type).ok_or_else(|| {
            Error::tensor(
                self.file.path(),
                &name,
                format!("has type {}, which is not supported", ggml_type.name()),
            )
        })?;
        let mut shape = tensor.info.shape();
        if hf.ends_with("conv.conv.weight") && shape.len() == 2 {
            // llama.cpp drops the depthwise conv's middle dimension: (hidden, L).
            shape.insert(1, 1);
        }
        Ok(TensorView {
            name: &tensor.info.name,
            dtype,
            shape,
            bytes: tensor.bytes,
            path: self.file.path(),
        })
    }

    fn contains(&self, hf: &str) -> bool {
        gguf_name(hf).is_some_and(|name| self.file.tensor_info(&name).is_some())
    }

    fn layer_count(&self) -> usize {
        layer_count(self.file.tensors().map(|t| t.name.as_str()), "blk.")
    }

    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}
