//! Each architecture's weight-name map. The model code names every weight as an LFM2
//! checkpoint does (`model.layers.0.self_attn.out_proj.weight`); Qwen3 and Ministral 3
//! checkpoints name the same weights as Llama does (`…self_attn.o_proj.weight`), and a
//! Mistral3ForConditionalGeneration keeps its language model under
//! `model.language_model.` (transformers 5) or `language_model.model.` (earlier).

use std::borrow::Cow;

use crate::config::Architecture;

/// Within a layer: LFM2's name → Llama's.
const LLAMA_LAYER: &[(&str, &str)] = &[
    ("operator_norm.", "input_layernorm."),
    ("ffn_norm.", "post_attention_layernorm."),
    ("self_attn.out_proj.", "self_attn.o_proj."),
    ("self_attn.q_layernorm.", "self_attn.q_norm."),
    ("self_attn.k_layernorm.", "self_attn.k_norm."),
    ("feed_forward.w1.", "mlp.gate_proj."),
    ("feed_forward.w3.", "mlp.up_proj."),
    ("feed_forward.w2.", "mlp.down_proj."),
];

/// How one checkpoint names the model's weights.
#[derive(Clone, Debug)]
pub struct HfNames {
    /// LFM2's names as they are.
    identity: bool,
    /// What stands for `model.`.
    model: &'static str,
    /// What stands before `lm_head.`.
    head: &'static str,
}

impl HfNames {
    /// LFM2's own names.
    pub fn lfm2() -> HfNames {
        HfNames {
            identity: true,
            model: "model.",
            head: "",
        }
    }

    /// The names an `architecture` checkpoint uses; `contains` tells which of the
    /// multimodal layouts it is.
    pub fn new(architecture: Architecture, contains: impl Fn(&str) -> bool) -> HfNames {
        match architecture {
            Architecture::Lfm2 | Architecture::Lfm2Moe => HfNames::lfm2(),
            Architecture::Qwen3 | Architecture::Ministral3 => {
                let (model, head) = [
                    ("model.language_model.", ""),
                    ("language_model.model.", "language_model."),
                ]
                .into_iter()
                .find(|(model, _)| contains(&format!("{model}embed_tokens.weight")))
                .unwrap_or(("model.", ""));
                HfNames {
                    identity: false,
                    model,
                    head,
                }
            }
        }
    }

    /// Where the layers are numbered: `{prefix}{i}.…`.
    pub fn layers_prefix(&self) -> String {
        format!("{}layers.", self.model)
    }

    /// The checkpoint's name for the weight the model code calls `name`.
    pub fn to_file<'a>(&self, name: &'a str) -> Cow<'a, str> {
        if self.identity {
            return Cow::Borrowed(name);
        }
        if let Some(rest) = name.strip_prefix("lm_head.") {
            return Cow::Owned(format!("{}lm_head.{rest}", self.head));
        }
        let Some(rest) = name.strip_prefix("model.") else {
            return Cow::Borrowed(name);
        };
        if rest == "embedding_norm.weight" {
            return Cow::Owned(format!("{}norm.weight", self.model));
        }
        let Some((layer, within)) = rest.strip_prefix("layers.").and_then(|r| r.split_once('.'))
        else {
            return Cow::Owned(format!("{}{rest}", self.model));
        };
        let within = LLAMA_LAYER
            .iter()
            .find_map(|(lfm2, llama)| Some(format!("{llama}{}", within.strip_prefix(lfm2)?)))
            .unwrap_or_else(|| within.to_string());
        Cow::Owned(format!("{}layers.{layer}.{within}", self.model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_names() {
        let names = HfNames::new(Architecture::Qwen3, |_| false);
        for (ours, theirs) in [
            ("model.embed_tokens.weight", "model.embed_tokens.weight"),
            ("model.embedding_norm.weight", "model.norm.weight"),
            ("lm_head.weight", "lm_head.weight"),
            (
                "model.layers.3.operator_norm.weight",
                "model.layers.3.input_layernorm.weight",
            ),
            (
                "model.layers.0.self_attn.q_proj.bias",
                "model.layers.0.self_attn.q_proj.bias",
            ),
            (
                "model.layers.0.self_attn.out_proj.bias",
                "model.layers.0.self_attn.o_proj.bias",
            ),
            (
                "model.layers.1.self_attn.k_layernorm.weight",
                "model.layers.1.self_attn.k_norm.weight",
            ),
            (
                "model.layers.2.feed_forward.w2.weight",
                "model.layers.2.mlp.down_proj.weight",
            ),
        ] {
            assert_eq!(names.to_file(ours), theirs);
        }
        assert_eq!(names.layers_prefix(), "model.layers.");
    }

    #[test]
    fn multimodal_layouts() {
        let v5 = HfNames::new(Architecture::Ministral3, |n| {
            n == "model.language_model.embed_tokens.weight"
        });
        assert_eq!(
            v5.to_file("model.layers.0.ffn_norm.weight"),
            "model.language_model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(v5.to_file("lm_head.weight"), "lm_head.weight");
        let v4 = HfNames::new(Architecture::Ministral3, |n| {
            n == "language_model.model.embed_tokens.weight"
        });
        assert_eq!(
            v4.to_file("lm_head.weight"),
            "language_model.lm_head.weight"
        );
        assert_eq!(
            v4.to_file("model.embedding_norm.weight"),
            "language_model.model.norm.weight"
        );
    }
}
