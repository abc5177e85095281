"""Benchmark models written straight to GGUF: published shapes, random blocks.

Decode speed depends on the shapes and the bytes per weight, not on what the weights
say, so random blocks measure what a trained file would. Each block gets f16
scales that make its weights about 0.02 and random bits elsewhere, so no 16 GB f16 model is ever made and an
8B file is written in seconds. The files carry llama.cpp's metadata and tensor names
(`lfm2`, `lfm2moe`, `qwen3`) and the bundled demo model's tokenizer, its token list
padded to the model's vocabulary (benchmarks feed token ids, not text). Nothing here
is committed.

- Shapes: make_models.py's LFM2 configs (350M, 1.2B, 2.6B, 8B-A1B) and Qwen3-8B, the
  shape of Bonsai 8B.
- Types: F16, Q8_0, Q4_0, Q1_0, Q2_0, TQ1_0, TQ2_0 for every matrix (the embedding
  included, as Bonsai is published; TQ rows need a multiple of 256 columns), and Q4_K_M
  as llama-quantize mixes it: Q6_K for the embedding and for attn_v / ffn_down in its
  "more bits" layers, Q4_K elsewhere.

    python scripts/bench/random_gguf.py --shape 8B-A1B --type Q4_0 --out FILE [--layers N]
"""

import argparse
from pathlib import Path

import gguf
import numpy as np

from make_models import SHAPES, ff_size

REPO = Path(__file__).resolve().parent.parent.parent
DEMO = REPO / "models" / "lfm2-demo-Q8_0.gguf"

# Qwen3-8B's config.json, in make_models.py's keys.
QWEN3_8B = {
    "model_type": "qwen3",
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "vocab_size": 151936,
    "norm_eps": 1e-6,
    "rope_theta": 1e6,
    "max_position_embeddings": 40960,
}
ALL_SHAPES = {**SHAPES, "Qwen3-8B": QWEN3_8B}

# ggml type: weights per block, bytes per block, byte offsets of the block's f16 scales
# (ggml-common.h), and the typical size of scale × code in a random block, so that
# weights come out near 0.02 and activations stay finite. F16 is written as random
# halves instead.
BLOCKS = {
    "Q8_0": (32, 34, [0], 64),
    "Q4_0": (32, 18, [0], 4),
    "Q1_0": (128, 18, [0], 1),
    "Q2_0": (64, 18, [0], 1),
    "TQ1_0": (256, 54, [52], 1),
    "TQ2_0": (256, 66, [64], 1),
    "Q4_K": (256, 144, [0, 2], 32 * 8),
    "Q6_K": (256, 210, [208], 64 * 16),
}
FILE_TYPES = {"F16": 1, "Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15, "Q1_0": 40, "Q2_0": 41, "TQ1_0": 36, "TQ2_0": 37}


def random_rows(rows: int, cols: int, type_name: str, rng: np.random.Generator) -> np.ndarray:
    """(rows, bytes per row) uint8 of random blocks, or (rows, cols) f16."""
    if type_name == "F16":
        # sign, exponent 2^-7 or 2^-6, random mantissa: an initialised model's size.
        bits = rng.integers(0, 1 << 16, size=(rows, cols), dtype=np.uint16)
        return ((bits & np.uint16(0x83FF)) | np.uint16(8 << 10) + (bits & np.uint16(1 << 10))).view(np.float16)
    per_block, block_bytes, scales, code = BLOCKS[type_name]
    assert cols % per_block == 0, f"rows of {cols} are not whole {type_name} blocks of {per_block}"
    blocks = rows * cols // per_block
    data = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
    for offset in scales:
        d = ((rng.random(blocks, dtype=np.float32) + 1) * 0.015 / code).astype(np.float16)
        data[:, offset : offset + 2] = d.view(np.uint8).reshape(blocks, 2)
    return data.reshape(rows, cols // per_block * block_bytes)


def more_bits(layer: int, layers: int) -> bool:
    """llama-quantize's use_more_bits: the first and last eighth, and every third between."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def copy_tokenizer(writer: gguf.GGUFWriter, vocab: int) -> None:
    """The demo model's tokenizer, its token list padded to `vocab` entries."""
    reader = gguf.GGUFReader(DEMO)
    field = lambda key: reader.fields[key]
    strings = lambda key: [bytes(field(key).parts[i]).decode() for i in field(key).data]
    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    pad = vocab - len(tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(bytes(field("tokenizer.ggml.pre").parts[-1]).decode())
    writer.add_token_list(tokens + [f"[PAD{i}]" for i in range(pad)])
    writer.add_token_types(types + [int(gguf.TokenType.UNUSED)] * pad)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(int(field("tokenizer.ggml.bos_token_id").parts[-1][0]))
    writer.add_eos_token_id(int(field("tokenizer.ggml.eos_token_id").parts[-1][0]))


def write(c: dict, type_name: str, out: Path) -> None:
    arch = {"lfm2": "lfm2", "lfm2_moe": "lfm2moe", "qwen3": "qwen3"}[c["model_type"]]
    layers, h, heads = c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"]
    d = c.get("head_dim", h // heads)
    kv_heads = c["num_key_value_heads"]
    attention = [kind == "full_attention" for kind in c.get("layer_types", ["full_attention"] * layers)]
    moe = arch == "lfm2moe"
    rng = np.random.default_rng(0)

    writer = gguf.GGUFWriter(out, arch)
    writer.add_block_count(layers)
    writer.add_context_length(c["max_position_embeddings"])
    writer.add_embedding_length(h)
    writer.add_feed_forward_length(c["intermediate_size"] if moe else ff_size(c))
    writer.add_head_count(heads)
    if arch == "qwen3":
        writer.add_head_count_kv(kv_heads)
        writer.add_key_length(d)
        writer.add_value_length(d)
    else:
        writer.add_head_count_kv([kv_heads if a else 0 for a in attention])
        writer.add_vocab_size(c["vocab_size"])
        writer.add_uint32(f"{arch}.shortconv.l_cache", c["conv_L_cache"])
    writer.add_rope_freq_base(c["rope_theta"])
    writer.add_layer_norm_rms_eps(c["norm_eps"])
    if moe:
        writer.add_expert_count(c["num_experts"])
        writer.add_expert_used_count(c["num_experts_per_tok"])
        writer.add_expert_feed_forward_length(c["moe_intermediate_size"])
        writer.add_leading_dense_block_count(c["num_dense_layers"])
        writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    writer.add_file_type(FILE_TYPES[type_name])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    copy_tokenizer(writer, c["vocab_size"])

    def matrix(name: str, rows: int, cols: int, experts: int = 0, bigger: bool = False) -> None:
        t = type_name
        if t == "Q4_K_M":
            t = "Q6_K" if bigger else "Q4_K"
        data = random_rows(max(experts, 1) * rows, cols, t, rng)
        if experts:
            data = data.reshape(experts, rows, data.shape[1])
        if t == "F16":
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType[t])

    def norm(name: str, n: int) -> None:
        writer.add_tensor(name, np.ones(n, dtype=np.float32))

    matrix("token_embd.weight", c["vocab_size"], h, bigger=True)
    norm("token_embd_norm.weight" if arch != "qwen3" else "output_norm.weight", h)
    for i in range(layers):
        p = f"blk.{i}"
        more = more_bits(i, layers)
        norm(f"{p}.attn_norm.weight", h)
        norm(f"{p}.ffn_norm.weight", h)
        if attention[i]:
            matrix(f"{p}.attn_q.weight", heads * d, h)
            matrix(f"{p}.attn_k.weight", kv_heads * d, h)
            matrix(f"{p}.attn_v.weight", kv_heads * d, h, bigger=more)
            matrix(f"{p}.attn_output.weight", h, heads * d)
            norm(f"{p}.attn_q_norm.weight", d)
            norm(f"{p}.attn_k_norm.weight", d)
        else:
            matrix(f"{p}.shortconv.in_proj.weight", 3 * h, h)
            writer.add_tensor(f"{p}.shortconv.conv.weight", rng.standard_normal((h, c["conv_L_cache"]), dtype=np.float32) * 0.1)
            matrix(f"{p}.shortconv.out_proj.weight", h, h)
        if moe and i >= c["num_dense_layers"]:
            e, ff = c["num_experts"], c["moe_intermediate_size"]
            writer.add_tensor(f"{p}.ffn_gate_inp.weight", rng.standard_normal((e, h), dtype=np.float32) * 0.02)
            writer.add_tensor(f"{p}.exp_probs_b.bias", np.zeros(e, dtype=np.float32))
            matrix(f"{p}.ffn_gate_exps.weight", ff, h, experts=e)
            matrix(f"{p}.ffn_up_exps.weight", ff, h, experts=e)
            matrix(f"{p}.ffn_down_exps.weight", h, ff, experts=e, bigger=more)
        else:
            ff = c["intermediate_size"] if arch == "qwen3" else ff_size(c)
            matrix(f"{p}.ffn_gate.weight", ff, h)
            matrix(f"{p}.ffn_up.weight", ff, h)
            matrix(f"{p}.ffn_down.weight", h, ff, bigger=more)
    if arch == "qwen3":
        matrix("output.weight", c["vocab_size"], h, bigger=True)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=list(ALL_SHAPES), required=True)
    parser.add_argument("--type", choices=list(FILE_TYPES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, help="fewer than the published count where disk or time forces it")
    args = parser.parse_args()
    if args.type == "Q2_0" and "Q2_0" not in gguf.GGMLQuantizationType.__members__:
        parser.error(f"the gguf package at {gguf.__file__} predates Q2_0: use llama.cpp's gguf-py")
    c = dict(ALL_SHAPES[args.shape])
    if args.layers:
        c["num_hidden_layers"] = args.layers
        if "layer_types" in c:
            c["layer_types"] = c["layer_types"][: args.layers]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".partial")
    write(c, args.type, partial)
    partial.rename(args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
