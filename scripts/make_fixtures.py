"""Generate the tiny test fixtures under `fixtures/`: LFM2, LFM2-MoE, Qwen3 and
Ministral 3 checkpoints.

For each fixture this writes a randomly initialised (seeded) checkpoint in the
Hugging Face layout (config.json, bf16 safetensors, tokenizer.json,
tokenizer_config.json) plus reference outputs computed with Hugging Face
transformers on exactly the saved bf16 weights upcast to float32:

- reference.json: prompt ids, a 24-step greedy continuation (no cache, eos
  ignored) with its minimum top-1/top-2 logit margin, and tokenizer outputs
  for a set of tricky texts;
- logits.npy: float32 logits for every prompt position, shape [n_prompt, vocab];
- trace/<name>.npy: the named intermediates of the prompt's forward pass.

The Rust runtime tests load these checkpoints and compare against the
references. The two dense LFM2 fixtures differ in every axis the runtime must
handle: conv vs. attention first layer, GQA ratio, auto-adjusted vs. literal FFN
width, conv bias, RoPE theta, and single-file vs. sharded safetensors. The Qwen3
pair differs in q/k/v/o biases, tied embedding, head_dim (≠ and = hidden/heads)
and sharding; Ministral 3
is saved as the vision-language checkpoint its releases are (a tiny Pixtral tower
and projector the runtime must skip) with YaRN RoPE and Llama-4 attention
temperature scaling.

What differs between families (config and model classes, tokenizer, the names of
the modules the trace hooks) is an `Arch`; the rest of the script is shared.

Everything is seeded, so `python scripts/make_fixtures.py --llama-cpp DIR` (run
with the versions pinned in scripts/requirements.txt) regenerates identical bytes;
`--only NAME...` regenerates only the named fixtures. The Qwen3 and Ministral 3
chat templates are read from llama.cpp's models/templates (DIR is the llama.cpp
source that make_gguf_fixtures.py uses).
"""

import argparse
import inspect
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from safetensors.torch import load_file, save_file
from transformers import (
    Lfm2Config,
    Lfm2ForCausalLM,
    Lfm2MoeConfig,
    Lfm2MoeForCausalLM,
    Ministral3Config,
    Ministral3ForCausalLM,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    PixtralVisionConfig,
    PretrainedConfig,
    Qwen3Config,
    Qwen3ForCausalLM,
)

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"

VOCAB_SIZE = 1024
SPECIAL_TOKENS = [
    "<|pad|>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|fim_pre|>",
    "<|fim_mid|>",
    "<|fim_suf|>",
    "<|im_start|>",
    "<|im_end|>",
]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 7

# Same pre-tokenizer split as the real LFM2 (llama3-style) tokenizer.json.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# Qwen2's split (the one in Qwen3's tokenizer.json; llama.cpp's pre-tokenizer "qwen2"):
# LFM2's, but digits one by one.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Tekken's split (Mistral Nemo and later; llama.cpp's pre-tokenizer "tekken"): words
# break at lower-to-upper case changes, no English contractions, digits one by one.
TEKKEN_SPLIT_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen3's added tokens in its order (ids 151643.. there, after the learned vocabulary
# here too); the last twelve are not special (HF's `special: false`).
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
QWEN3_USER_TOKENS = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)
# Tekken's control tokens at the ids Ministral 3's tokenizer gives them (0-35; the real
# one pads them with <SPECIAL_n> up to 1000).
MISTRAL_SPECIAL_TOKENS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
    "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
    *(f"<SPECIAL_{i}>" for i in range(20, 32)),
    "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]",
)


@dataclass(frozen=True)
class TokenizerStyle:
    """How a family's tokenizer.json and tokenizer_config.json are built."""

    name: str
    split_pattern: str
    special_tokens: tuple[str, ...]  # ids 0.., before the learned vocabulary
    eos: str
    bos: str | None = None  # prepended to every encoding by the post-processor
    pad: str | None = None
    unk: str | None = None  # tokenizer_config.json's only: byte-level BPE needs none
    # After the learned vocabulary, as (content, special), Qwen's layout.
    trailing_tokens: tuple[tuple[str, bool], ...] = ()
    nfc: bool = False  # Qwen's NFC normalizer
    # Whole pre-tokens found in the vocabulary are taken as is (tiktoken's rule, which
    # Tekken keeps; HF's tekken conversion and llama.cpp's "tekken" both set it).
    ignore_merges: bool = False
    chat_template: str | None = None
    chat_template_file: str | None = None  # or one from llama.cpp's models/templates
    # Appended to TOKENIZATION_TEXTS: the family's special tokens and splits.
    extra_texts: tuple[str, ...] = ()

    def token_id(self, token: str) -> int:
        """A named token's id in a VOCAB_SIZE vocabulary."""
        if token in self.special_tokens:
            return self.special_tokens.index(token)
        contents = [content for content, _ in self.trailing_tokens]
        return VOCAB_SIZE - len(contents) + contents.index(token)


LFM2_TOKENIZER = TokenizerStyle(
    name="lfm2",
    split_pattern=SPLIT_PATTERN,
    special_tokens=tuple(SPECIAL_TOKENS),
    bos=SPECIAL_TOKENS[BOS_ID],
    eos=SPECIAL_TOKENS[EOS_ID],
    pad=SPECIAL_TOKENS[PAD_ID],
    chat_template=CHAT_TEMPLATE,
)
QWEN3_TOKENIZER = TokenizerStyle(
    name="qwen3",
    split_pattern=QWEN2_SPLIT_PATTERN,
    special_tokens=(),
    eos="<|im_end|>",
    pad="<|endoftext|>",
    trailing_tokens=(*((t, True) for t in QWEN3_SPECIAL_TOKENS), *((t, False) for t in QWEN3_USER_TOKENS)),
    nfc=True,
    chat_template_file="Qwen-Qwen3-0.6B.jinja",
    extra_texts=(
        "<think>\nLet me see.\n</think>\n\n<tool_call>\n{\"name\": \"f\"}\n</tool_call><|endoftext|>",
        "cafe\u0301 vs caf\u00e9",  # NFC composes the first
    ),
)
MISTRAL_TOKENIZER = TokenizerStyle(
    name="tekken",
    split_pattern=TEKKEN_SPLIT_PATTERN,
    special_tokens=MISTRAL_SPECIAL_TOKENS,
    bos="<s>",
    eos="</s>",
    pad="<pad>",
    unk="<unk>",
    ignore_merges=True,
    chat_template_file="mistralai-Ministral-3-14B-Reasoning-2512.jinja",
    extra_texts=(
        "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]What is 2+2?[/INST][THINK]Four.[/THINK]4</s>",
        "CamelCaseWord HTTPServer iPhone ÉCOLE école path/to/file",
    ),
)

# Repeated in the training corpus so that multi-byte characters get merges too.
MULTILINGUAL_SENTENCES = [
    "Le café est très chaud, naïve résumé à la française.",
    "Über die Brücke gehen wir schön langsam, Grüße aus München.",
    "El niño comió una piña en la montaña, ¿verdad? ¡Sí!",
    "Привет, мир! Как дела сегодня?",
    "日本語のテキストを書きます。東京は大きな都市です。",
    "你好，世界！我们今天学习中文。",
    "안녕하세요, 세계! 오늘은 좋은 날입니다.",
    "Emoji time 👋🌍 🚀✨ 😀🎉 👍",
]
MULTILINGUAL_REPEATS = 150

TOKENIZATION_TEXTS = [
    "Hello, world! This is a simple test.",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n\tindented\twith tabs\r\n",
    "Numbers: 12345, 3.14159 and 1,000,000.",
    "Punctuation?! (parens) [brackets] {braces} \"quotes\" don't we'll...",
    "café naïve résumé",
    "日本語のテキスト",
    "👋🌍 hi",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>",
    " ",
]

# English + unicode; 16 tokens with bos.
PROMPT_TEXT = "Return the array of café 👋 and 日本語."
GREEDY_STEPS = 24
MIN_GREEDY_MARGIN = 0.01

LFM2_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "pad_token_id": PAD_ID,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "tie_word_embeddings": True,
    "conv_L_cache": 3,
    "norm_eps": 1e-5,
}
QWEN3_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    # As Qwen3's config.json: bos <|endoftext|> (never added), eos <|im_end|>.
    "bos_token_id": QWEN3_TOKENIZER.token_id("<|endoftext|>"),
    "eos_token_id": QWEN3_TOKENIZER.token_id("<|im_end|>"),
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
}
MINISTRAL3_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": MISTRAL_TOKENIZER.token_id("<s>"),
    "eos_token_id": MISTRAL_TOKENIZER.token_id("</s>"),
    "pad_token_id": MISTRAL_TOKENIZER.token_id("<pad>"),
    "rms_norm_eps": 1e-5,
    "sliding_window": None,
}
# The vision tower and projector of the Ministral 3 checkpoint: as small as Pixtral
# allows. The runtime reads text only; these tensors are there to be skipped.
TINY_PIXTRAL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def mistral3_config(text: PretrainedConfig) -> PretrainedConfig:
    """Ministral 3's published layout: the text model inside Mistral3's vision-language one."""
    return Mistral3Config(
        text_config=text,
        vision_config=PixtralVisionConfig(**TINY_PIXTRAL),
        image_token_index=MISTRAL_TOKENIZER.token_id("[IMG]"),
        tie_word_embeddings=text.tie_word_embeddings,  # Mistral3Config's default is True
    )


@dataclass(frozen=True)
class Arch:
    """What a model family changes in a fixture; everything else is shared."""

    config_class: type  # the text model's config
    model_class: type  # the checkpoint's class, which computes the references
    tokenizer: TokenizerStyle
    common_config: dict  # text config values every fixture of the family has
    ffn_norm: str  # the decoder layer's norm whose input is the residual after its operator
    final_norm: str  # the text model's last norm (traced as `model.embedding_norm`)
    # The text-only causal LM (make_gguf_fixtures.py's references), where model_class wraps it.
    text_model_class: type | None = None
    wrap_config: Callable[[PretrainedConfig], PretrainedConfig] | None = None

    @property
    def model_type(self) -> str:
        """config.json's top-level model_type."""
        return self.model_class.config_class.model_type

    def config(self, text_config: dict) -> PretrainedConfig:
        text = self.config_class(**self.common_config, **text_config)
        return self.wrap_config(text) if self.wrap_config else text

    def causal_lm(self, config: PretrainedConfig) -> torch.nn.Module:
        """The text-only model of `config` (text_config of a wrapped one)."""
        return (self.text_model_class or self.model_class)(config.get_text_config())


LFM2 = Arch(Lfm2Config, Lfm2ForCausalLM, LFM2_TOKENIZER, LFM2_CONFIG, "ffn_norm", "embedding_norm")
# LFM2-8B-A1B's architecture.
LFM2_MOE = Arch(Lfm2MoeConfig, Lfm2MoeForCausalLM, LFM2_TOKENIZER, LFM2_CONFIG, "ffn_norm", "embedding_norm")
QWEN3 = Arch(Qwen3Config, Qwen3ForCausalLM, QWEN3_TOKENIZER, QWEN3_CONFIG, "post_attention_layernorm", "norm")
MINISTRAL3 = Arch(
    Ministral3Config,
    Mistral3ForConditionalGeneration,
    MISTRAL_TOKENIZER,
    MINISTRAL3_CONFIG,
    "post_attention_layernorm",
    "norm",
    text_model_class=Ministral3ForCausalLM,
    wrap_config=mistral3_config,
)
ARCHS = {arch.model_type: arch for arch in (LFM2, LFM2_MOE, QWEN3, MINISTRAL3)}


def arch_of(model_dir: Path) -> Arch:
    """The family of a saved checkpoint, by its config.json's model_type."""
    return ARCHS[json.loads((model_dir / "config.json").read_text())["model_type"]]


@dataclass(frozen=True)
class FixtureSpec:
    name: str
    seed: int
    config: dict  # the text model's, over arch.common_config
    max_shard_size: str | None = None  # None: one model.safetensors
    arch: Arch = field(default=LFM2)


FIXTURES = [
    FixtureSpec(
        name="lfm2-tiny-conv-first",
        seed=1234,
        config={
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "num_hidden_layers": 6,
            "layer_types": ["conv", "conv", "full_attention", "conv", "full_attention", "conv"],
            "intermediate_size": 256,
            "block_auto_adjust_ff_dim": True,
            "block_ffn_dim_multiplier": 1.5,
            "block_multiple_of": 32,
            "conv_bias": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
    ),
    FixtureSpec(
        name="lfm2-tiny-attn-first",
        seed=5678,
        config={
            "hidden_size": 96,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "num_hidden_layers": 5,
            "layer_types": ["full_attention", "conv", "conv", "full_attention", "conv"],
            "intermediate_size": 160,
            "block_auto_adjust_ff_dim": False,
            "conv_bias": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e4},
        },
        max_shard_size="300KB",
    ),
    # Dense layers, then sparse MoE layers. The expert bias is large enough to change
    # which experts win, and the scaling factor is not 1, so both must be honoured.
    FixtureSpec(
        name="lfm2moe-tiny",
        seed=4322,
        config={
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "num_hidden_layers": 5,
            "layer_types": ["conv", "full_attention", "conv", "conv", "full_attention"],
            "intermediate_size": 96,
            "moe_intermediate_size": 32,
            "num_dense_layers": 2,
            "num_experts": 8,
            "num_experts_per_tok": 3,
            "use_expert_bias": True,
            "norm_topk_prob": True,
            "routed_scaling_factor": 1.5,
            "conv_bias": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
        arch=LFM2_MOE,
    ),
    # head_dim 32 with hidden 64 and 4 heads: the attention width (128) is not hidden.
    FixtureSpec(
        name="qwen3-tiny",
        seed=7013,
        config={
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "num_hidden_layers": 4,
            "intermediate_size": 96,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
        arch=QWEN3,
    ),
    # q/k/v/o biases, tied embedding, head_dim = hidden/heads (16), sharded.
    FixtureSpec(
        name="qwen3-tiny-bias",
        seed=7100,
        config={
            "hidden_size": 96,
            "num_attention_heads": 6,
            "num_key_value_heads": 3,
            "head_dim": 16,
            "num_hidden_layers": 3,
            "intermediate_size": 160,
            "tie_word_embeddings": True,
            "attention_bias": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
        max_shard_size="300KB",
        arch=QWEN3,
    ),
    # YaRN RoPE whose attention factor is not 1 (mscale_all_dim != mscale), and an
    # original context of 8 so that Llama-4's attention temperature (which grows every
    # original_max_position_embeddings positions) scales queries within the prompt.
    FixtureSpec(
        name="ministral3-tiny",
        seed=7208,
        config={
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "num_hidden_layers": 4,
            "intermediate_size": 128,
            "max_position_embeddings": 128,
            "tie_word_embeddings": False,
            "rope_parameters": {
                "rope_type": "yarn",
                "rope_theta": 1e6,
                "factor": 16.0,
                "original_max_position_embeddings": 8,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 1.0,
                "mscale_all_dim": 0.5,
                "llama_4_scaling_beta": 0.1,
            },
        },
        arch=MINISTRAL3,
    ),
]

# transformers saves experts one by one (`experts.K.w1/w3/w2`, as the published
# LFM2-8B-A1B does) but holds them fused (`experts.gate_up_proj`, `experts.down_proj`);
# the same MoE fixture is also written fused so the loader is tested on both layouts.
FUSED_FIXTURE = "lfm2moe-tiny-fused"

# Standard deviations of the re-drawn weights (see `randomize_weights_`). The
# lm_head is the embedding (tied) or drawn like it, so EMBEDDING_STD sets the logit
# scale (std ~2.5-3, max |logit| ~11); PROJECTION_STD keeps the layers' contribution
# comparable to the embedding so greedy decoding does not just repeat tokens.
NORM_WEIGHT_STD = 0.2  # around 1.0
BIAS_STD = 0.1
EMBEDDING_STD = 0.3
CONV_STD = 0.3
PROJECTION_STD = 0.15
EXPERT_BIAS_STD = 0.3  # sigmoid scores lie in (0, 1): this reorders the top-k


def tokenizer_corpus() -> list[str]:
    """numpy's public docstrings (version pinned, so offline and reproducible)
    plus unicode-heavy sentences."""
    docs = []
    for name in sorted(np.__all__):
        obj = getattr(np, name)
        if callable(obj) and isinstance(obj.__doc__, str):
            docs.append(inspect.cleandoc(obj.__doc__))
    return docs + MULTILINGUAL_SENTENCES * MULTILINGUAL_REPEATS


def train_tokenizer(
    texts: list[str] | None = None, vocab_size: int = VOCAB_SIZE, style: TokenizerStyle = LFM2_TOKENIZER
) -> Tokenizer:
    """Byte-level BPE shaped like the family's real tokenizer.json (by default LFM2's),
    trained deterministically on `texts` (by default `tokenizer_corpus()`) to
    `vocab_size` tokens, the special tokens first and the trailing ones last.
    scripts/train_demo.py trains its tokenizer with this too."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=False))
    if style.nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(style.split_pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(style.trailing_tokens),
        special_tokens=list(style.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus() if texts is None else texts, trainer)
    if style.ignore_merges:
        tokenizer.model.ignore_merges = True
    for content, special in style.trailing_tokens:  # one by one: ids in this order
        token = AddedToken(content, special=special, normalized=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    if style.bos is not None:
        bos, bos_id = style.bos, style.token_id(style.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos}:1 $B:1",
            special_tokens=[(bos, bos_id)],
        )
    else:  # Qwen's: no template, nothing added
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tokenizer.get_vocab_size() == vocab_size
    named = [*style.special_tokens, *(content for content, _ in style.trailing_tokens)]
    assert all(tokenizer.token_to_id(t) == style.token_id(t) for t in named)
    return tokenizer


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def chat_template(style: TokenizerStyle, llama_cpp: Path | None) -> str:
    if style.chat_template_file is None:
        return style.chat_template
    if llama_cpp is None:
        raise SystemExit(f"the {style.name} chat template is read from llama.cpp: pass --llama-cpp")
    return (llama_cpp / "models" / "templates" / style.chat_template_file).read_text(encoding="utf-8")


def write_tokenizer(tokenizer: Tokenizer, style: TokenizerStyle, out_dir: Path, llama_cpp: Path | None) -> None:
    tokenizer.save(str(out_dir / "tokenizer.json"))
    write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": style.bos,
            "eos_token": style.eos,
            "pad_token": style.pad,
            **({"unk_token": style.unk} if style.unk else {}),
            "chat_template": chat_template(style, llama_cpp),
        },
    )


def randomize_weights_(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter so that no code path sees an identity/zero init.

    RMSNorm weights (q/k norms, Pixtral's ln_pre too) are 1 + noise (never exactly 1),
    biases are non-zero, and projection/embedding scales keep the final logits spread
    over a few units.
    """
    generator = torch.Generator().manual_seed(seed)
    # named_parameters() yields the tied embedding / lm_head weight once.
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if name.endswith(("norm.weight", "ln_pre.weight")):
            value = 1.0 + NORM_WEIGHT_STD * noise
        elif name.endswith(".bias"):
            value = BIAS_STD * noise
        elif name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            value = EMBEDDING_STD * noise
        elif name.endswith("conv.conv.weight"):
            value = CONV_STD * noise
        else:
            assert param.ndim in (2, 3, 4), name  # 3: fused experts, 4: Pixtral's patch conv
            value = PROJECTION_STD * noise
        param.data.copy_(value)
    for name, buffer in model.named_buffers():
        if name.endswith("expert_bias"):
            buffer.copy_(EXPERT_BIAS_STD * torch.randn(buffer.shape, generator=generator))


def save_model(spec: FixtureSpec, out_dir: Path) -> None:
    model = spec.arch.model_class(spec.arch.config(spec.config))
    randomize_weights_(model, spec.seed)
    save_kwargs = {"max_shard_size": spec.max_shard_size} if spec.max_shard_size else {}
    # The router's expert bias is an f32 buffer in HF and stays f32 in the checkpoint.
    model = model.to(torch.bfloat16)
    for name, buffer in model.named_buffers():
        if name.endswith("expert_bias"):
            buffer.data = buffer.data.float()
    model.save_pretrained(out_dir, **save_kwargs)


def check_tying(model: torch.nn.Module) -> None:
    """The lm_head is the embedding exactly when the config says it is tied."""
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied == model.config.get_text_config().tie_word_embeddings, type(model).__name__


def load_reference_model(model_dir: Path) -> torch.nn.Module:
    """The saved bf16 checkpoint, upcast to float32, with eager attention, as the class
    it was saved as (for Ministral 3 the vision-language one, fed text only)."""
    model_class = arch_of(model_dir).model_class
    model = model_class.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    assert model.config.get_text_config()._attn_implementation == "eager"
    check_tying(model)
    return model.eval()


def forward_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """Logits [len(ids), vocab] from one full (uncached) forward pass."""
    return model(torch.tensor([ids]), use_cache=False).logits[0]


def greedy_continuation(model: torch.nn.Module, prompt_ids: list[int]) -> tuple[list[int], float]:
    """Greedy tokens (eos ignored) and the smallest top-1/top-2 logit margin."""
    ids = list(prompt_ids)
    margins = []
    for _ in range(GREEDY_STEPS):
        top = torch.topk(forward_logits(model, ids)[-1], k=2)
        margins.append(float(top.values[0] - top.values[1]))
        ids.append(int(top.indices[0]))
    return ids[len(prompt_ids) :], min(margins)


def trace(model: torch.nn.Module, arch: Arch, ids: list[int]) -> dict[str, torch.Tensor]:
    """The named intermediates of a forward pass, [len(ids), hidden] each, under the
    names `lfm-edge trace` gives them (LFM2's, for every family): the embedding, each
    layer's residual stream after its operator (conv or attention) and after its
    feed-forward, and the final norm (`model.embedding_norm`, LFM2's name for it)."""
    out: dict[str, torch.Tensor] = {}

    def keep(name: str, tensor: torch.Tensor) -> None:
        assert tensor.shape[:2] == (1, len(ids)), (name, tensor.shape)
        out[name] = tensor[0].detach().clone()

    inner = model.get_decoder()
    hooks = [
        inner.embed_tokens.register_forward_hook(lambda _m, _i, o: keep("model.embed_tokens", o)),
        getattr(inner, arch.final_norm).register_forward_hook(
            lambda _m, _i, o: keep("model.embedding_norm", o)
        ),
    ]
    for i, layer in enumerate(inner.layers):
        # The feed-forward's norm's input is the residual stream after the operator.
        hooks.append(
            getattr(layer, arch.ffn_norm).register_forward_pre_hook(
                lambda _m, args, i=i: keep(f"model.layers.{i}.operator", args[0])
            )
        )
        hooks.append(
            layer.register_forward_hook(lambda _m, _i, o, i=i: keep(f"model.layers.{i}", o))
        )
    try:
        forward_logits(model, ids)
    finally:
        for hook in hooks:
            hook.remove()
    return out


def write_trace(model: torch.nn.Module, arch: Arch, ids: list[int], out_dir: Path) -> None:
    """trace/<name>.npy: what `lfm-edge trace --reference` diffs against."""
    trace_dir = out_dir / "trace"
    trace_dir.mkdir(exist_ok=True)
    with torch.no_grad():
        for name, tensor in trace(model, arch, ids).items():
            np.save(trace_dir / f"{name}.npy", tensor.numpy().astype("<f4"))


def write_references(spec: FixtureSpec, tokenizer: Tokenizer, out_dir: Path) -> None:
    model = load_reference_model(out_dir)
    prompt_ids = tokenizer.encode(PROMPT_TEXT).ids
    assert 12 <= len(prompt_ids) <= 20, len(prompt_ids)
    with torch.no_grad():
        logits = forward_logits(model, prompt_ids)
        greedy_ids, min_margin = greedy_continuation(model, prompt_ids)
    assert min_margin >= MIN_GREEDY_MARGIN, f"{spec.name}: greedy margin {min_margin} too small"

    np.save(out_dir / "logits.npy", logits.numpy().astype("<f4"))
    write_trace(model, spec.arch, prompt_ids, out_dir)
    write_json(
        out_dir / "reference.json",
        {
            "prompt_text": PROMPT_TEXT,
            "prompt_ids": prompt_ids,
            "greedy_ids": greedy_ids,
            "greedy_min_margin": min_margin,
            "logits_max_abs": float(logits.abs().max()),
            "tokenizations": [
                {"text": text, "ids": tokenizer.encode(text).ids}
                for text in [*TOKENIZATION_TEXTS, *spec.arch.tokenizer.extra_texts]
            ],
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "hf_class": type(model).__name__,
        },
    )


def make_fixture(spec: FixtureSpec, tokenizer: Tokenizer, llama_cpp: Path | None) -> None:
    out_dir = FIXTURES_DIR / spec.name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    save_model(spec, out_dir)
    write_tokenizer(tokenizer, spec.arch.tokenizer, out_dir, llama_cpp)
    write_references(spec, tokenizer, out_dir)
    print(f"wrote {out_dir}")


def write_fused_copy(per_expert_dir: Path) -> None:
    """The MoE fixture rewritten in transformers' in-memory fused expert layout."""
    out_dir = FIXTURES_DIR / FUSED_FIXTURE
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(per_expert_dir, out_dir)
    tensors = load_file(out_dir / "model.safetensors")
    experts: dict[str, dict[str, list]] = {}
    fused = {}
    for name in sorted(tensors, key=expert_order):
        prefix, found, rest = name.partition(".experts.")
        if not found:
            fused[name] = tensors[name]
            continue
        kind = rest.split(".")[1]  # "K.w1.weight" -> w1
        experts.setdefault(prefix, {"w1": [], "w3": [], "w2": []})[kind].append(tensors[name])
    for prefix, weights in experts.items():
        gate_up = [torch.cat([w1, w3]) for w1, w3 in zip(weights["w1"], weights["w3"])]
        fused[f"{prefix}.experts.gate_up_proj"] = torch.stack(gate_up)  # [E, 2I, H], gate first
        fused[f"{prefix}.experts.down_proj"] = torch.stack(weights["w2"])  # [E, H, I]
    save_file(fused, out_dir / "model.safetensors", metadata={"format": "pt"})
    print(f"wrote {out_dir}")


def expert_order(name: str) -> tuple:
    """Sort key putting experts.K tensors in numeric K order."""
    prefix, found, rest = name.partition(".experts.")
    return (prefix, int(rest.split(".")[0]) if found else -1, rest)


def main() -> None:
    names = [spec.name for spec in FIXTURES] + [FUSED_FIXTURE]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"of {names}")
    parser.add_argument("--llama-cpp", type=Path, help="llama.cpp source dir (the chat templates of Qwen3, Ministral 3)")
    args = parser.parse_args()
    only = set(args.only or names)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # fixed reduction order, independent of core count
    trained: dict[str, Tokenizer] = {}
    for spec in FIXTURES:
        if spec.name not in only:
            continue
        style = spec.arch.tokenizer
        if style.name not in trained:
            trained[style.name] = train_tokenizer(style=style)
        make_fixture(spec, trained[style.name], args.llama_cpp)
    if FUSED_FIXTURE in only:
        write_fused_copy(FIXTURES_DIR / "lfm2moe-tiny")


if __name__ == "__main__":
    main()
