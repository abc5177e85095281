"""Benchmark models: LFM2 at its published shapes, with random weights.

Decode speed depends on the shapes and the bytes per weight, not on what the weights
say, so random weights at the real configs measure what a trained checkpoint would.
For each shape this writes, under OUT/<shape>/:

- `hf/`: config.json (the published config), model.safetensors in bf16, and the
  tokenizer of the bundled demo model (the vocabulary is padded to 65536 rows by the
  embedding; benchmarks feed token ids, not text);
- `<shape>-<TYPE>.gguf`: llama.cpp's converter on `hf/` for F16, BF16 and Q8_0, and
  llama-quantize on the F16 file for Q4_0 and Q4_K_M, as the official releases are
  made.

The safetensors file is written tensor by tensor from random 16-bit patterns, so an
8B model never sits in memory as f32. Nothing here is committed; files already present
are kept. This is the path through llama.cpp's own converter and quantizer (moe_pair.py
uses it, and the bf16 safetensors benchmarks); compare.sh writes its GGUF files
straight from random blocks with random_gguf.py, which takes its shapes from here.

    python scripts/bench/make_models.py --llama-cpp DIR [--quantize BIN] [--out DIR] \\
        --shapes 350M,1.2B --types bf16,F16,Q8_0,Q4_0,Q4_K_M
"""

import argparse
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent.parent
REPO = SCRIPTS.parent
TOKENIZER_DIR = REPO / "models" / "lfm2-demo"

COMMON = {
    "bos_token_id": 1,
    "eos_token_id": 7,
    "pad_token_id": 0,
    "conv_L_cache": 3,
    "conv_bias": False,
    "norm_eps": 1e-05,
    "max_position_embeddings": 128000,
    "rope_theta": 1000000.0,
    "vocab_size": 65536,
    "tie_word_embeddings": True,
}


def layer_types(n_layers: int, attention: list[int]) -> list[str]:
    return ["full_attention" if i in attention else "conv" for i in range(n_layers)]


def dense(hidden: int, layers: int, heads: int, ff: int, auto_adjust: bool, attention: list[int]) -> dict:
    return {
        **COMMON,
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "block_ff_dim": ff,
        "intermediate_size": ff,
        "block_auto_adjust_ff_dim": auto_adjust,
        "block_ffn_dim_multiplier": 1.0,
        "block_multiple_of": 256,
        "layer_types": layer_types(layers, attention),
    }


# The published config.json of each model (LiquidAI/LFM2-*), weights aside.
SHAPES = {
    "350M": dense(1024, 16, 16, 6656, True, [2, 5, 8, 10, 12, 14]),
    "1.2B": dense(2048, 16, 32, 12288, True, [2, 5, 8, 10, 12, 14]),
    "2.6B": dense(2048, 30, 32, 10752, False, [2, 5, 9, 13, 17, 21, 24, 27]),
    "8B-A1B": {
        **COMMON,
        "architectures": ["Lfm2MoeForCausalLM"],
        "model_type": "lfm2_moe",
        "hidden_size": 2048,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 7168,
        "moe_intermediate_size": 1792,
        "num_experts": 32,
        "num_experts_per_tok": 4,
        "num_dense_layers": 2,
        "norm_topk_prob": True,
        "routed_scaling_factor": 1.0,
        "use_expert_bias": True,
        "layer_types": layer_types(24, [2, 6, 10, 14, 18, 21]),
    },
}

CONVERTED = ("F16", "BF16", "Q8_0")  # by convert_hf_to_gguf.py; the rest by llama-quantize
QUANTIZED = ("Q4_0", "Q4_K_M")


def ff_size(c: dict) -> int:
    """transformers' auto-adjust rule for the dense feed-forward width."""
    ff = c["intermediate_size"]
    if c.get("block_auto_adjust_ff_dim"):
        ff = int(2 * c["block_ff_dim"] / 3)
        ff = int(c["block_ffn_dim_multiplier"] * ff)
        multiple = c["block_multiple_of"]
        ff = multiple * ((ff + multiple - 1) // multiple)
    return ff


def tensors(c: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(HF name, shape, kind) of every weight, kind "norm" (ones), "f32" or "bf16"."""
    h, heads, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    d = h // heads
    out = [("model.embed_tokens.weight", (c["vocab_size"], h), "bf16"), ("model.embedding_norm.weight", (h,), "norm")]
    for i, kind in enumerate(c["layer_types"]):
        p = f"model.layers.{i}"
        out += [(f"{p}.operator_norm.weight", (h,), "norm"), (f"{p}.ffn_norm.weight", (h,), "norm")]
        if kind == "conv":
            out += [
                (f"{p}.conv.in_proj.weight", (3 * h, h), "bf16"),
                (f"{p}.conv.conv.weight", (h, 1, c["conv_L_cache"]), "bf16"),
                (f"{p}.conv.out_proj.weight", (h, h), "bf16"),
            ]
        else:
            a = f"{p}.self_attn"
            out += [
                (f"{a}.q_proj.weight", (heads * d, h), "bf16"),
                (f"{a}.k_proj.weight", (kv * d, h), "bf16"),
                (f"{a}.v_proj.weight", (kv * d, h), "bf16"),
                (f"{a}.out_proj.weight", (h, heads * d), "bf16"),
                (f"{a}.q_layernorm.weight", (d,), "norm"),
                (f"{a}.k_layernorm.weight", (d,), "norm"),
            ]
        f = f"{p}.feed_forward"
        if c["model_type"] == "lfm2_moe" and i >= c["num_dense_layers"]:
            e, ff = c["num_experts"], c["moe_intermediate_size"]
            out += [(f"{f}.gate.weight", (e, h), "bf16"), (f"{f}.expert_bias", (e,), "f32")]
            for k in range(e):
                out += [
                    (f"{f}.experts.{k}.w1.weight", (ff, h), "bf16"),
                    (f"{f}.experts.{k}.w3.weight", (ff, h), "bf16"),
                    (f"{f}.experts.{k}.w2.weight", (h, ff), "bf16"),
                ]
        else:
            ff = ff_size(c)
            out += [(f"{f}.w1.weight", (ff, h), "bf16"), (f"{f}.w3.weight", (ff, h), "bf16"), (f"{f}.w2.weight", (h, ff), "bf16")]
    return out


def random_bf16(rng: np.random.Generator, n: int) -> np.ndarray:
    """bf16 bit patterns of magnitude in [2^-7, 2^-5) with random sign: weights of an
    initialised model's size, made from random bits without any float arithmetic."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    exponent = np.uint16(120 << 7) + (bits & np.uint16(1 << 7))  # 2^-7 or 2^-6
    return (bits & np.uint16(0x807F)) | exponent


def write_safetensors(c: dict, path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    specs = tensors(c)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, kind in specs:
        size = int(np.prod(shape)) * (4 if kind == "f32" else 2)
        header[name] = {"dtype": "F32" if kind == "f32" else "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    chunk = 1 << 24
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for name, shape, kind in specs:
            n = int(np.prod(shape))
            if kind == "norm":
                f.write(np.full(n, 0x3F80, dtype=np.uint16).tobytes())  # bf16 1.0
            elif kind == "f32":
                f.write(np.zeros(n, dtype=np.float32).tobytes())  # expert_bias
            else:
                for start in range(0, n, chunk):
                    f.write(random_bf16(rng, min(chunk, n - start)).tobytes())


def make_hf(shape: str, out: Path) -> Path:
    hf = out / shape / "hf"
    if (hf / "model.safetensors").exists():
        return hf
    hf.mkdir(parents=True, exist_ok=True)
    config = {**SHAPES[shape], "torch_dtype": "bfloat16"}
    (hf / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / name, hf / name)
    partial = hf / "model.safetensors.partial"
    write_safetensors(config, partial, seed=list(SHAPES).index(shape))
    partial.rename(hf / "model.safetensors")
    print(f"wrote {hf}", file=sys.stderr)
    return hf


def make_gguf(shape: str, gguf_type: str, out: Path, llama_cpp: Path, quantize: Path) -> Path:
    path = out / shape / f"LFM2-{shape}-{gguf_type}.gguf"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    if gguf_type in CONVERTED:
        sys.path.insert(0, str(SCRIPTS))
        from make_gguf_fixtures import convert  # the converter, with its pre-tokenizer wrapper

        convert(llama_cpp, make_hf(shape, out), gguf_type.lower(), partial)
    else:
        f16 = make_gguf(shape, "F16", out, llama_cpp, quantize)
        subprocess.run([str(quantize), str(f16), str(partial), gguf_type], check=True, stdout=subprocess.DEVNULL)
    partial.rename(path)
    print(f"wrote {path}", file=sys.stderr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", type=Path, help="llama.cpp source (its converter makes the GGUF types)")
    parser.add_argument("--quantize", type=Path, help="llama-quantize [default: LLAMA_CPP/build/bin/llama-quantize]")
    parser.add_argument("--out", type=Path, default=REPO / "target" / "bench" / "models")
    parser.add_argument("--shapes", default="350M", help=f"comma-separated, of {','.join(SHAPES)}")
    parser.add_argument("--types", default="F16,Q8_0,Q4_0", help=f"comma-separated: bf16 (safetensors), {','.join(CONVERTED + QUANTIZED)}")
    args = parser.parse_args()
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r} ({', '.join(SHAPES)})")
        for gguf_type in args.types.split(","):
            if gguf_type == "bf16":
                print(make_hf(shape, args.out))
            elif gguf_type in CONVERTED + QUANTIZED:
                if args.llama_cpp is None:
                    parser.error(f"{gguf_type} needs --llama-cpp")
                quantize = args.quantize or args.llama_cpp / "build" / "bin" / "llama-quantize"
                print(make_gguf(shape, gguf_type, args.out, args.llama_cpp, quantize))
            else:
                parser.error(f"unknown type {gguf_type!r}")


if __name__ == "__main__":
    main()
