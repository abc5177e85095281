"""Generate the tiny LFM2 test fixtures under `fixtures/`.

For each fixture this writes a randomly initialised (seeded) LFM2 checkpoint in
the Hugging Face layout (config.json, bf16 safetensors, tokenizer.json,
tokenizer_config.json) plus reference outputs computed with Hugging Face
transformers on exactly the saved bf16 weights upcast to float32:

- reference.json: prompt ids, a 24-step greedy continuation (no cache, eos
  ignored) with its minimum top-1/top-2 logit margin, and tokenizer outputs
  for a set of tricky texts;
- logits.npy: float32 logits for every prompt position, shape [n_prompt, vocab].

The Rust runtime tests load these checkpoints and compare against the
references. The two fixtures differ in every axis the runtime must handle:
conv vs. attention first layer, GQA ratio, auto-adjusted vs. literal FFN width,
conv bias, RoPE theta, and single-file vs. sharded safetensors.

Everything is seeded, so `python scripts/make_fixtures.py` (run with the
versions pinned in scripts/requirements.txt) regenerates identical bytes.
"""

import inspect
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from safetensors.torch import load_file, save_file
from transformers import Lfm2Config, Lfm2ForCausalLM, Lfm2MoeConfig, Lfm2MoeForCausalLM

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

COMMON_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "pad_token_id": PAD_ID,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "tie_word_embeddings": True,
    "conv_L_cache": 3,
    "norm_eps": 1e-5,
}


@dataclass(frozen=True)
class FixtureSpec:
    name: str
    seed: int
    config: dict
    max_shard_size: str | None = None  # None: one model.safetensors
    moe: bool = False  # lfm2_moe (LFM2-8B-A1B's architecture) instead of lfm2


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
        moe=True,
    ),
]

# transformers saves experts one by one (`experts.K.w1/w3/w2`, as the published
# LFM2-8B-A1B does) but holds them fused (`experts.gate_up_proj`, `experts.down_proj`);
# the same MoE fixture is also written fused so the loader is tested on both layouts.
FUSED_FIXTURE = "lfm2moe-tiny-fused"

# Standard deviations of the re-drawn weights (see `randomize_weights_`). The
# lm_head is tied to the embedding, so EMBEDDING_STD sets the logit scale
# (std ~2.5-3, max |logit| ~11); PROJECTION_STD keeps the layers' contribution
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


def train_tokenizer(texts: list[str] | None = None, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Byte-level BPE shaped like the LFM2 tokenizer.json, trained deterministically on
    `texts` (by default `tokenizer_corpus()`) to `vocab_size` tokens, the special tokens
    first. scripts/train_demo.py trains its tokenizer with this too."""
    tokenizer = Tokenizer(models.BPE(byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus() if texts is None else texts, trainer)
    bos = SPECIAL_TOKENS[BOS_ID]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos}:1 $B:1",
        special_tokens=[(bos, BOS_ID)],
    )
    assert tokenizer.get_vocab_size() == vocab_size
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    return tokenizer


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tokenizer(tokenizer: Tokenizer, out_dir: Path) -> None:
    tokenizer.save(str(out_dir / "tokenizer.json"))
    write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": SPECIAL_TOKENS[BOS_ID],
            "eos_token": SPECIAL_TOKENS[EOS_ID],
            "pad_token": SPECIAL_TOKENS[PAD_ID],
            "chat_template": CHAT_TEMPLATE,
        },
    )


def randomize_weights_(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter so that no code path sees an identity/zero init.

    RMSNorm weights are 1 + noise (never exactly 1), biases are non-zero, and
    projection/embedding scales keep the final logits spread over a few units.
    """
    generator = torch.Generator().manual_seed(seed)
    # named_parameters() yields the tied embedding / lm_head weight once.
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        if name.endswith("norm.weight"):
            value = 1.0 + NORM_WEIGHT_STD * noise
        elif name.endswith(".bias"):
            value = BIAS_STD * noise
        elif name == "model.embed_tokens.weight":
            value = EMBEDDING_STD * noise
        elif name.endswith("conv.conv.weight"):
            value = CONV_STD * noise
        else:
            assert param.ndim in (2, 3), name  # 3: fused experts
            value = PROJECTION_STD * noise
        param.data.copy_(value)
    for name, buffer in model.named_buffers():
        if name.endswith("expert_bias"):
            buffer.copy_(EXPERT_BIAS_STD * torch.randn(buffer.shape, generator=generator))


def model_classes(moe: bool):
    return (Lfm2MoeConfig, Lfm2MoeForCausalLM) if moe else (Lfm2Config, Lfm2ForCausalLM)


def save_model(spec: FixtureSpec, out_dir: Path) -> None:
    config_class, model_class = model_classes(spec.moe)
    model = model_class(config_class(**COMMON_CONFIG, **spec.config))
    randomize_weights_(model, spec.seed)
    save_kwargs = {"max_shard_size": spec.max_shard_size} if spec.max_shard_size else {}
    # The router's expert bias is an f32 buffer in HF and stays f32 in the checkpoint.
    model = model.to(torch.bfloat16)
    for name, buffer in model.named_buffers():
        if name.endswith("expert_bias"):
            buffer.data = buffer.data.float()
    model.save_pretrained(out_dir, **save_kwargs)


def load_reference_model(model_dir: Path, moe: bool) -> torch.nn.Module:
    """The saved bf16 checkpoint, upcast to float32, with eager attention."""
    _, model_class = model_classes(moe)
    model = model_class.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
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


def trace(model: torch.nn.Module, ids: list[int]) -> dict[str, torch.Tensor]:
    """The named intermediates of a forward pass, [len(ids), hidden] each, under the
    names `lfm-edge trace` gives them: the embedding, each layer's residual stream after
    its operator and after its feed-forward, and the final norm."""
    out: dict[str, torch.Tensor] = {}

    def keep(name: str, tensor: torch.Tensor) -> None:
        out[name] = tensor[0].detach().clone()

    inner = model.model
    hooks = [
        inner.embed_tokens.register_forward_hook(lambda _m, _i, o: keep("model.embed_tokens", o)),
        inner.embedding_norm.register_forward_hook(
            lambda _m, _i, o: keep("model.embedding_norm", o)
        ),
    ]
    for i, layer in enumerate(inner.layers):
        # ffn_norm's input is the residual stream after the operator.
        hooks.append(
            layer.ffn_norm.register_forward_pre_hook(
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


def write_trace(model: torch.nn.Module, ids: list[int], out_dir: Path) -> None:
    """trace/<name>.npy: what `lfm-edge trace --reference` diffs against."""
    trace_dir = out_dir / "trace"
    trace_dir.mkdir(exist_ok=True)
    with torch.no_grad():
        for name, tensor in trace(model, ids).items():
            np.save(trace_dir / f"{name}.npy", tensor.numpy().astype("<f4"))


def write_references(spec: FixtureSpec, tokenizer: Tokenizer, out_dir: Path) -> None:
    model = load_reference_model(out_dir, spec.moe)
    prompt_ids = tokenizer.encode(PROMPT_TEXT).ids
    assert 12 <= len(prompt_ids) <= 20, len(prompt_ids)
    with torch.no_grad():
        logits = forward_logits(model, prompt_ids)
        greedy_ids, min_margin = greedy_continuation(model, prompt_ids)
    assert min_margin >= MIN_GREEDY_MARGIN, f"{spec.name}: greedy margin {min_margin} too small"

    np.save(out_dir / "logits.npy", logits.numpy().astype("<f4"))
    write_trace(model, prompt_ids, out_dir)
    write_json(
        out_dir / "reference.json",
        {
            "prompt_text": PROMPT_TEXT,
            "prompt_ids": prompt_ids,
            "greedy_ids": greedy_ids,
            "greedy_min_margin": min_margin,
            "logits_max_abs": float(logits.abs().max()),
            "tokenizations": [
                {"text": text, "ids": tokenizer.encode(text).ids} for text in TOKENIZATION_TEXTS
            ],
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        },
    )


def make_fixture(spec: FixtureSpec, tokenizer: Tokenizer) -> None:
    out_dir = FIXTURES_DIR / spec.name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    save_model(spec, out_dir)
    write_tokenizer(tokenizer, out_dir)
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
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # fixed reduction order, independent of core count
    tokenizer = train_tokenizer()
    for spec in FIXTURES:
        make_fixture(spec, tokenizer)
    write_fused_copy(FIXTURES_DIR / "lfm2moe-tiny")


if __name__ == "__main__":
    main()
