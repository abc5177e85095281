"""The README's table of what the demo model's GGUF variants lose against its bf16
checkpoint, measured by `lfm-edge perplexity` and `lfm-edge bench`.

Text: Julius Caesar, a play scripts/train_demo.py holds out (written by
scripts/make_perplexity_reference.py --held-out). Variants: models/lfm2-demo-Q8_0.gguf
(committed) and Q4_0 and Q4_K_M files that llama.cpp's `llama-quantize` makes here from
an F32 conversion of models/lfm2-demo (llama.cpp's converter, run as
scripts/make_gguf_fixtures.py runs it); they are left in target/perplexity/, not
committed. The bf16 checkpoint's log-probabilities are saved once (--save-logits) and
each variant is compared with them (--kl-base), llama-perplexity's default context of
512 tokens.

    python scripts/perplexity_table.py --llama-cpp .../vendor/llama.cpp \\
        [--lfm-edge target/release/lfm-edge]
"""

import argparse
import json
import re
import subprocess
from pathlib import Path

from make_gguf_fixtures import convert
from make_perplexity_reference import play
from train_demo import MODEL_DIR, REPO

WORK = REPO / "target" / "perplexity"
TEXT = WORK / "julius_caesar.txt"
BASELINE = WORK / "demo-bf16.kld"
QUANTIZED = ("Q4_0", "Q4_K_M")


def run(*cmd) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout


def variants(llama_cpp: Path) -> list[tuple[str, Path]]:
    """(type, file) of each variant, made when missing."""
    f32 = WORK / "lfm2-demo-F32.gguf"
    if not f32.exists():
        convert(llama_cpp, MODEL_DIR, "f32", f32)
    files = [("Q8_0", MODEL_DIR.parent / "lfm2-demo-Q8_0.gguf")]
    for qtype in QUANTIZED:
        out = WORK / f"lfm2-demo-{qtype}.gguf"
        if not out.exists():
            run(llama_cpp / "build" / "bin" / "llama-quantize", f32, out, qtype, 1)
        files.append((qtype, out))
    return files


def perplexity(lfm_edge: Path, model: Path, *args) -> dict:
    out = run(lfm_edge, "perplexity", "--model", model, "--file", TEXT, "--json", *args)
    return json.loads(out.strip().splitlines()[-1])


def decode_speed(lfm_edge: Path, model: Path) -> str:
    """`bench`'s decode tok/s: 128 tokens from an empty cache (its prompt within the
    demo model's 512 positions)."""
    out = run(lfm_edge, "bench", "--model", model, "--prompt-tokens", 256, "--gen-tokens", 128)
    mean, sd = re.search(r"^decode tok/s: ([0-9.]+) ± ([0-9.]+)", out, re.M).groups()
    return f"{float(mean):.0f} ± {float(sd):.0f}"


def mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source dir")
    parser.add_argument("--lfm-edge", type=Path, default=REPO / "target" / "release" / "lfm-edge")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if not TEXT.exists():
        TEXT.write_text(play("julius_caesar_gut.txt"))
    files = variants(args.llama_cpp.resolve())
    base = perplexity(args.lfm_edge, MODEL_DIR, "--save-logits", BASELINE)
    print(f"{base['chunks']} chunks of {base['context']} tokens, {base['tokens_scored']} tokens "
          f"({base['bytes_scored']} bytes) scored\n")
    print("| model | size | decode tok/s | PPL | mean KLD | top-1 agreement | bits per byte |")
    print("|---|---|---|---|---|---|---|")
    speed = decode_speed(args.lfm_edge, MODEL_DIR)
    size = mib(MODEL_DIR / "model.safetensors")
    print(f"| bf16 (baseline) | {size} | {speed} | {base['ppl']:.3f} | — | — | {base['bits_per_byte']:.4f} |")
    for qtype, path in files:
        r = perplexity(args.lfm_edge, path, "--kl-base", BASELINE)
        speed = decode_speed(args.lfm_edge, path)
        print(f"| {qtype} | {mib(path)} | {speed} | {r['ppl']:.3f} | {r['kld_mean']:.6f} | "
              f"{100 * r['top1_agree']:.2f} % | {r['bits_per_byte']:.4f} |")


if __name__ == "__main__":
    main()
