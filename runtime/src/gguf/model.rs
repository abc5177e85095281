//! A GGUF file as a model: the config from `<arch>.*` metadata, and the tensors under
//! the HF names the model code asks for (llama.cpp's names and shapes translated).

use std::path::PathBuf;

use super::{GgmlType, GgufFile};
use crate::config::{LayerKind, ModelConfig, MoeConfig, MAX_EXPERTS};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::{TensorView, WeightSource};

/// llama.cpp's `expert_gating_func` value for a sigmoid router.
const GATING_SIGMOID: u32 = 2;

/// `general.architecture` and its `<arch>.*` keys, read into a [`ModelConfig`].
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
    let key = |k: &str| format!("{arch}.{k}");
    let bad = |message: String| Error::gguf(file.path(), message);
    let n_layers = file.get_u32(&key("block_count"))? as usize;
    let hidden_size = file.get_u32(&key("embedding_length"))? as usize;
    let n_heads = file.get_u32(&key("attention.head_count"))? as usize;
    // Per layer: 0 marks a conv layer, else that attention layer's kv head count.
    let kv_heads = file.get_u32_array(&key("attention.head_count_kv"))?;
    if kv_heads.len() != n_layers {
        return Err(bad(format!(
            "{} has {} entries for {n_layers} layers",
            key("attention.head_count_kv"),
            kv_heads.len()
        )));
    }
    let n_kv_heads = kv_heads.iter().copied().find(|&n| n > 0).unwrap_or(1) as usize;
    if kv_heads.iter().any(|&n| n > 0 && n as usize != n_kv_heads) {
        return Err(bad(
            "attention layers with different kv head counts are not supported".into(),
        ));
    }
    if n_heads == 0 || hidden_size % n_heads != 0 || n_heads % n_kv_heads != 0 {
        return Err(bad(format!(
            "{hidden_size} wide with {n_heads} heads and {n_kv_heads} kv heads does not split evenly"
        )));
    }
    let layers = kv_heads
        .iter()
        .map(|&n| {
            if n == 0 {
                LayerKind::Conv
            } else {
                LayerKind::Attention
            }
        })
        .collect();
    // The vocabulary is the embedding's row count; the ff width, the gate's.
    let vocab_size = tensor_rows(file, "token_embd.weight")?;
    let moe = if is_moe {
        Some(moe_config(file, arch, n_layers)?)
    } else {
        None
    };
    let ff_size = match tensor_rows(file, "blk.0.ffn_gate.weight") {
        Ok(rows) => rows,
        Err(_) => file.get_u32(&key("feed_forward_length"))? as usize,
    };
    let eos = file.optional("tokenizer.ggml.eos_token_id", GgufFile::get_u32)?;
    Ok(ModelConfig {
        vocab_size,
        hidden_size,
        ff_size,
        layers,
        n_heads,
        n_kv_heads,
        head_dim: hidden_size / n_heads,
        norm_eps: file.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: file
            .optional(&key("rope.freq_base"), GgufFile::get_f32)?
            .unwrap_or(1e6),
        conv_l_cache: file.get_u32(&key("shortconv.l_cache"))? as usize,
        conv_bias: file
            .tensors()
            .any(|t| t.name.ends_with("shortconv.in_proj.bias")),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        max_position_embeddings: file
            .optional(&key("context_length"), GgufFile::get_u32)?
            .unwrap_or(128_000) as usize,
        bos_token_id: file.optional("tokenizer.ggml.bos_token_id", GgufFile::get_u32)?,
        eos_token_ids: eos.into_iter().collect(),
        moe,
    })
}

fn moe_config(file: &GgufFile, arch: &str, n_layers: usize) -> Result<MoeConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let bad = |message: String| Error::gguf(file.path(), message);
    let gating = file
        .optional(&key("expert_gating_func"), GgufFile::get_u32)?
        .unwrap_or(GATING_SIGMOID);
    if gating != GATING_SIGMOID {
        return Err(bad(format!(
            "{} is {gating}; LFM2-MoE routes with a sigmoid (2)",
            key("expert_gating_func")
        )));
    }
    let moe = MoeConfig {
        n_experts: file.get_u32(&key("expert_count"))? as usize,
        top_k: file.get_u32(&key("expert_used_count"))? as usize,
        expert_ff: file.get_u32(&key("expert_feed_forward_length"))? as usize,
        n_dense_layers: file.get_u32(&key("leading_dense_block_count"))? as usize,
        use_expert_bias: file
            .tensors()
            .any(|t| t.name.ends_with(".exp_probs_b.bias")),
        norm_topk_prob: file
            .optional(&key("expert_weights_norm"), GgufFile::get_bool)?
            .unwrap_or(true),
        routed_scaling_factor: file
            .optional(&key("expert_weights_scale"), GgufFile::get_f32)?
            .unwrap_or(1.0),
    };
    if moe.n_experts == 0
        || moe.n_experts > MAX_EXPERTS
        || moe.top_k == 0
        || moe.top_k > moe.n_experts
    {
        return Err(bad(format!(
            "{} experts with {} used per token",
            moe.n_experts, moe.top_k
        )));
    }
    if moe.n_dense_layers > n_layers {
        return Err(bad(format!(
            "{} dense layers of {n_layers}",
            moe.n_dense_layers
        )));
    }
    Ok(moe)
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

    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}
