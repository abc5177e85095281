"""MoE against dense decode speed on one device, in one run (issue 19's held-out pair).

Three small LFM2 models of about the same active size (6 layers, hidden 256, the demo
model's 4096-token vocabulary, Q8_0): dense (feed-forward 512), and LFM2-MoE with its
first two layers dense and the other four of 8 or 32 experts, top-3, expert
feed-forward 128. Random weights (make_models.py's), converted by llama.cpp's
converter. Each `lfm-edge` binary given benches each model in turn, `--runs` times
over, interleaved so that a busy machine slows them alike; the table gives the median
decode tok/s and MoE over dense.

    python scripts/bench/moe_pair.py --llama-cpp DIR [--out DIR] [--runs 3] \\
        BIN [BIN ...]

Several binaries compare builds (before and after a change) in one run.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from make_models import COMMON, TOKENIZER_DIR, layer_types, write_safetensors

SCRIPTS = Path(__file__).resolve().parent.parent
LAYERS = 6
BASE = {
    **COMMON,
    "vocab_size": 4096,
    "hidden_size": 256,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "layer_types": layer_types(LAYERS, [2, 4]),
}
MODELS = {
    "dense": {
        **BASE,
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "block_ff_dim": 512,
        "block_auto_adjust_ff_dim": False,
        "block_ffn_dim_multiplier": 1.0,
        "block_multiple_of": 256,
    },
    **{
        f"moe{experts}": {
            **BASE,
            "architectures": ["Lfm2MoeForCausalLM"],
            "model_type": "lfm2_moe",
            "moe_intermediate_size": 128,
            "num_experts": experts,
            "num_experts_per_tok": 3,
            "num_dense_layers": 2,
            "norm_topk_prob": True,
            "routed_scaling_factor": 1.0,
            "use_expert_bias": True,
        }
        for experts in (8, 32)
    },
}


def make(name: str, out: Path, llama_cpp: Path) -> Path:
    gguf = out / f"{name}-Q8_0.gguf"
    if gguf.exists():
        return gguf
    hf = out / name
    hf.mkdir(parents=True, exist_ok=True)
    config = {**MODELS[name], "torch_dtype": "bfloat16"}
    (hf / "config.json").write_text(json.dumps(config, indent=2))
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / file, hf / file)
    write_safetensors(config, hf / "model.safetensors", seed=list(MODELS).index(name))
    sys.path.insert(0, str(SCRIPTS))
    from make_gguf_fixtures import convert  # the converter, with its pre-tokenizer wrapper

    partial = gguf.with_suffix(".partial")
    convert(llama_cpp, hf, "q8_0", partial)
    partial.rename(gguf)
    return gguf


def decode_rate(binary: str, model: Path, prompt: int, gen: int) -> float:
    env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    args = [binary, "bench", "--model", str(model), "--prompt-tokens", str(prompt)]
    args += ["--gen-tokens", str(gen), "--repeat", "2"]
    text = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout
    return float(re.search(r"^decode tok/s: ([\d.]+)", text, re.M).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binaries", nargs="+", help="lfm-edge binaries to compare")
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source (its converter)")
    parser.add_argument("--out", type=Path, default=SCRIPTS.parent / "target" / "bench" / "moe_pair")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=32)
    args = parser.parse_args()
    models = {name: make(name, args.out, args.llama_cpp) for name in MODELS}
    rates = {(b, m): [] for b in args.binaries for m in models}
    for run in range(args.runs):
        for binary in args.binaries:
            for name, path in models.items():
                rate = decode_rate(binary, path, args.prompt_tokens, args.gen_tokens)
                rates[binary, name].append(rate)
                print(f"run {run + 1}: {binary} {name} {rate:.1f} tok/s", file=sys.stderr)
    print("| binary | " + " | ".join(f"{m} decode tok/s" for m in models) + " | moe8 / dense | moe32 / dense |")
    print("|---|" + "--:|" * (len(models) + 2))
    for binary in args.binaries:
        median = {m: statistics.median(rates[binary, m]) for m in models}
        cells = [f"{median[m]:.1f}" for m in models]
        cells += [f"{median[m] / median['dense']:.2f}" for m in ("moe8", "moe32")]
        print(f"| {binary} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
