"""A benchmark model: Qwen3-8B at its published shapes with random 1-bit or 2-bit
weights, as Bonsai 8B is published (every 2-D tensor, the embedding and the output head
included, in Q1_0; norms in F32).

Decode speed depends on the shapes and the bytes per weight, not on what the weights
say, so random blocks measure what the trained file would. The GGUF file is written
block by block with the `gguf` package (no f16 model of 16 GB is ever made), with
llama.cpp's `qwen3` metadata and tensor names, and the tokenizer of the bundled demo
model (the embedding has Qwen3's 151 936 rows; benchmarks feed token ids, not text).
Nothing here is committed.

    python scripts/bench/make_lowbit_model.py --type Q1_0 --out target/bench/qwen3-8b-Q1_0.gguf \\
        [--layers 36]
"""

import argparse
from pathlib import Path

import gguf
import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
DEMO = REPO / "models" / "lfm2-demo-Q8_0.gguf"

# Qwen3-8B's config.json.
QWEN3_8B = {
    "hidden": 4096,
    "layers": 36,
    "heads": 32,
    "kv_heads": 8,
    "head_dim": 128,
    "ff": 12288,
    "vocab": 151936,
    "eps": 1e-6,
    "theta": 1e6,
    "context": 40960,
}

# ggml type id, weights per block, bytes per block (ggml-common.h).
TYPES = {"Q1_0": (41, 128, 18), "Q2_0": (42, 64, 18)}


def random_blocks(rows: int, cols: int, qtype: str, rng: np.random.Generator) -> np.ndarray:
    """(rows, bytes per row) uint8: each block an f16 scale near 0.02, then random bits."""
    _, per_block, block_bytes = TYPES[qtype]
    blocks = rows * cols // per_block
    data = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
    scales = (rng.random(blocks, dtype=np.float32) * 0.02 + 0.01).astype(np.float16)
    data[:, :2] = scales.view(np.uint8).reshape(blocks, 2)
    return data.reshape(rows, cols // per_block * block_bytes)


def copy_tokenizer(writer: gguf.GGUFWriter, vocab: int) -> None:
    """The demo model's tokenizer, its token list padded to `vocab` entries."""
    reader = gguf.GGUFReader(DEMO)
    field = lambda key: reader.fields[key]
    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode() for i in field("tokenizer.ggml.tokens").data]
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    merges = [bytes(field("tokenizer.ggml.merges").parts[i]).decode() for i in field("tokenizer.ggml.merges").data]
    pad = vocab - len(tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(bytes(field("tokenizer.ggml.pre").parts[-1]).decode())
    writer.add_token_list(tokens + [f"[PAD{i}]" for i in range(pad)])
    writer.add_token_types(types + [int(gguf.TokenType.UNUSED)] * pad)
    writer.add_token_merges(merges)
    for key, add in [
        ("tokenizer.ggml.bos_token_id", writer.add_bos_token_id),
        ("tokenizer.ggml.eos_token_id", writer.add_eos_token_id),
    ]:
        add(int(field(key).parts[-1][0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--type", choices=sorted(TYPES), default="Q1_0")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=QWEN3_8B["layers"], help="fewer where disk or time forces it")
    args = parser.parse_args()
    c = dict(QWEN3_8B, layers=args.layers)
    rng = np.random.default_rng(0)
    qtype = gguf.GGMLQuantizationType(TYPES[args.type][0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(args.out, "qwen3")
    writer.add_block_count(c["layers"])
    writer.add_context_length(c["context"])
    writer.add_embedding_length(c["hidden"])
    writer.add_feed_forward_length(c["ff"])
    writer.add_head_count(c["heads"])
    writer.add_head_count_kv(c["kv_heads"])
    writer.add_key_length(c["head_dim"])
    writer.add_value_length(c["head_dim"])
    writer.add_rope_freq_base(c["theta"])
    writer.add_layer_norm_rms_eps(c["eps"])
    copy_tokenizer(writer, c["vocab"])

    h, d, q, kv, ff = c["hidden"], c["head_dim"], c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"], c["ff"]

    def matrix(name: str, rows: int, cols: int) -> None:
        data = random_blocks(rows, cols, args.type, rng)
        writer.add_tensor(name, data, raw_shape=(rows, data.shape[1]), raw_dtype=qtype)

    def norm(name: str, n: int) -> None:
        writer.add_tensor(name, np.ones(n, dtype=np.float32))

    matrix("token_embd.weight", c["vocab"], h)
    for i in range(c["layers"]):
        p = f"blk.{i}"
        norm(f"{p}.attn_norm.weight", h)
        matrix(f"{p}.attn_q.weight", q, h)
        matrix(f"{p}.attn_k.weight", kv, h)
        matrix(f"{p}.attn_v.weight", kv, h)
        matrix(f"{p}.attn_output.weight", h, q)
        norm(f"{p}.attn_q_norm.weight", d)
        norm(f"{p}.attn_k_norm.weight", d)
        norm(f"{p}.ffn_norm.weight", h)
        matrix(f"{p}.ffn_gate.weight", ff, h)
        matrix(f"{p}.ffn_up.weight", ff, h)
        matrix(f"{p}.ffn_down.weight", h, ff)
    norm("output_norm.weight", h)
    matrix("output.weight", c["vocab"], h)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    print(f"{args.out}: {args.out.stat().st_size / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
