//! A GGUF file's tensors under the names the model code asks for (LFM2's HF names):
//! llama.cpp's names, shapes and row orders translated back.

use std::borrow::Cow;
use std::path::PathBuf;

use super::GgufFile;
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::weights::{layer_count, TensorView, WeightSource};

/// llama.cpp's name for a weight the model code names as LFM2's HF checkpoints do.
/// LFM2's final norm is `token_embd_norm`, the others' `output_norm`.
fn gguf_name(architecture: Architecture, hf: &str) -> Option<String> {
    let lfm2 = matches!(architecture, Architecture::Lfm2 | Architecture::Lfm2Moe);
    let global = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.embedding_norm.weight" if lfm2 => Some("token_embd_norm.weight"),
        "model.embedding_norm.weight" => Some("output_norm.weight"),
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
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.out_proj.bias" => "attn_output.bias",
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

/// A GGUF file's tensors under HF names.
pub struct GgufWeights {
    file: GgufFile,
    architecture: Architecture,
    /// Heads of q and of k, for llama.cpp's row order (see [`GgufWeights::rope_rows`]).
    heads: [usize; 2],
}

impl GgufWeights {
    /// `config` is the file's own, from [`super::model_config`].
    pub fn new(file: GgufFile, config: &ModelConfig) -> GgufWeights {
        GgufWeights {
            file,
            architecture: config.architecture,
            heads: [config.n_heads, config.n_kv_heads],
        }
    }

    fn name(&self, hf: &str) -> Option<String> {
        gguf_name(self.architecture, hf)
    }

    /// How many heads' rows llama.cpp reordered in `hf`, if any. Its converter
    /// permutes the q and k rows of Llama-family models (Ministral 3 among them) so
    /// that its interleaved RoPE pairs elements 2i, 2i + 1 of each head; the model code
    /// pairs i, i + d/2, as transformers does.
    fn rope_rows(&self, hf: &str) -> Option<usize> {
        if self.architecture != Architecture::Ministral3 {
            return None;
        }
        let within = hf.rsplit_once(".self_attn.")?.1;
        match within {
            "q_proj.weight" | "q_proj.bias" => Some(self.heads[0]),
            "k_proj.weight" | "k_proj.bias" => Some(self.heads[1]),
            _ => None,
        }
    }
}

/// Undoes llama.cpp's `permute` on a tensor of `rows` equal rows: within each of
/// `heads` heads of d rows, its row 2i + s holds HF's row s · d/2 + i.
fn unpermute_rows(bytes: &[u8], rows: usize, heads: usize) -> Option<Vec<u8>> {
    if rows == 0 || heads == 0 || rows % heads != 0 || bytes.len() % rows != 0 {
        return None;
    }
    let (d, row_bytes) = (rows / heads, bytes.len() / rows);
    if d % 2 != 0 {
        return None;
    }
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for s in 0..2 {
                let from = (h * d + 2 * i + s) * row_bytes;
                let to = (h * d + s * d / 2 + i) * row_bytes;
                out[to..to + row_bytes].copy_from_slice(&bytes[from..from + row_bytes]);
            }
        }
    }
    Some(out)
}

impl WeightSource for GgufWeights {
    fn get(&self, hf: &str) -> Result<TensorView<'_>> {
        let name = self
            .name(hf)
            .ok_or_else(|| Error::tensor(self.file.path(), hf, "has no GGUF counterpart"))?;
        let tensor = self.file.tensor(&name)?;
        let ggml_type = tensor.info.ggml_type;
        let dtype = ggml_type.dtype().ok_or_else(|| {
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
        let bytes = match self.rope_rows(hf) {
            None => Cow::Borrowed(tensor.bytes),
            Some(heads) => Cow::Owned(unpermute_rows(tensor.bytes, shape[0], heads).ok_or_else(
                || {
                    Error::tensor(
                        self.file.path(),
                        &name,
                        format!("shape {shape:?} does not split into {heads} heads of row pairs"),
                    )
                },
            )?),
        };
        Ok(TensorView {
            name: &tensor.info.name,
            dtype,
            shape,
            bytes,
            path: self.file.path(),
        })
    }

    fn contains(&self, hf: &str) -> bool {
        self.name(hf)
            .is_some_and(|name| self.file.tensor_info(&name).is_some())
    }

    fn layer_count(&self) -> usize {
        layer_count(self.file.tensors().map(|t| t.name.as_str()), "blk.")
    }

    fn path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `permute` (convert_hf_to_gguf.py, LlamaModel), then ours undoes it.
    #[test]
    fn unpermute_undoes_llama_cpp_permute() {
        let (heads, d, row_bytes) = (3, 8, 2);
        let hf: Vec<u8> = (0..(heads * d * row_bytes) as u8).collect();
        // reshape(heads, 2, d/2, …).swapaxes(1, 2): row (h, i, s) ← HF row (h, s, i).
        let mut gguf = vec![0u8; hf.len()];
        for h in 0..heads {
            for s in 0..2 {
                for i in 0..d / 2 {
                    let from = (h * d + s * d / 2 + i) * row_bytes;
                    let to = (h * d + 2 * i + s) * row_bytes;
                    gguf[to..to + row_bytes].copy_from_slice(&hf[from..from + row_bytes]);
                }
            }
        }
        assert_ne!(gguf, hf);
        assert_eq!(unpermute_rows(&gguf, heads * d, heads), Some(hf));
        assert_eq!(unpermute_rows(&gguf, heads * d, 5), None);
    }
}
