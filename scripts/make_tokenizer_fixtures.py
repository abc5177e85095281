"""Generate fixtures/tokenizers/{qwen2,tekken}: a tiny byte-level BPE per pre-tokenizer
that the runtime rebuilds from GGUF metadata, each as a tokenizer.json and as a GGUF file.

For each family this trains a small BPE with the family's tokenizer.json pipeline
(Qwen2's: NFC, then its split, digits one at a time; Mistral's tekken: its split with
case changes, `ignore_merges`), adds one token the merges can never make (so that
`ignore_merges` decides how a word encodes) and the family's added tokens, and writes:

- tokenizer.json, tokenizer_config.json: the HF tokenizer;
- <family>.gguf: the same vocabulary as llama.cpp's converter writes it (its own
  `get_vocab_base`, `_set_vocab_gpt2` and gguf-py's `SpecialVocab`, run on this directory
  with the pre-tokenizer name given instead of detected by hash), metadata only;
- reference.json: ids, tokens and decodings that HF `tokenizers` gives for tricky texts.

Needs llama.cpp's source (see make_gguf_fixtures.py) and scripts/requirements.txt:

    python scripts/make_tokenizer_fixtures.py --llama-cpp .../vendor/llama.cpp

Deterministic: running it again writes the same bytes.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "tokenizers"

# transformers' Qwen2Tokenizer (models/qwen2/tokenization_qwen2.py).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tekken.json's pattern, as transformers' fix_mistral_regex and llama-vocab.cpp quote it.
TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

VOCAB_SIZE = 640
# In the vocabulary, never made by a merge: ' xyzzy' is one token only with ignore_merges.
UNREACHABLE = "Ġxyzzy"

TEXTS = [
    "",
    "Hello, world! This is a simple test.",
    "12345 67 3.14159 1,000,000 2024-01-01",
    "I'VE been 'told he's there, 'RE you sure? We'Ve a'lL don't",
    "camelCaseWord HTTPServer iPhone XMLHttpRequest ABCdef",
    "path/to/file.txt a//b ./run.sh http://x.org/a/",
    "我想在apple工作1314151天～ 日本語のテキスト 안녕하세요",
    "🚀 (normal) 😶\u200d🌫️ (emojis concatenated) ✅ 🦙🦙",
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
    "   leading and trailing   ",
    "line one\r\nline two\n\n\tindented",
    "café naïve Ünïcödé résumé",
    # Decomposed accents: NFC (Qwen2's normalizer) composes them, tekken keeps them.
    "cafe\u0301 e\u0301le\u0300ve Ångstro\u0308m",
    "say xyzzy twice: xyzzy xyzzy, XYZZY",
]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Hello, world! This is a simple test.",
    "Numbers like 12345 and 3.14159 are read digit by digit; dates: 2024-01-01.",
    "I've been told he's there. You're sure? We'll see, they'd say. Don't.",
    "camelCaseWord and HTTPServer and iPhone and XMLHttpRequest in the code.",
    "Open path/to/file.txt, then run ./run.sh from http://example.org/docs/.",
    "Le café est très chaud, naïve résumé à la française. Ünïcödé Ångström.",
    "我想在apple工作。日本語のテキストを書きます。안녕하세요, 세계!",
    "Emoji time 🚀 ✅ 🦙 😶\u200d🌫️ 👋🌍",
    "line one\r\nline two\n\n\tindented with tabs\n    four spaces\n",
] * 20


def family_specs():
    """Per family: its pre-tokenizer name, tokenizer.json pipeline, the special tokens
    before the BPE and the added tokens (text, special) after it, the bos it adds (and
    the one config.json names), eos, and texts for its own tokens."""
    return [
        dict(
            name="qwen2",
            normalizer=normalizers.NFC(),
            split=QWEN2_SPLIT,
            ignore_merges=False,
            specials_first=[],
            # As Qwen3's tokenizer.json: the chat markers special; <think> and the
            # fim markers added but not special.
            added_after=[
                ("<|endoftext|>", True),
                ("<|im_start|>", True),
                ("<|im_end|>", True),
                ("<|fim_prefix|>", False),
                ("<think>", False),
                ("</think>", False),
            ],
            bos=None,
            config_bos="<|endoftext|>",
            eos="<|im_end|>",
            add_bos=False,
            texts=[
                "<|im_start|>user\nhi 12<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nok",
                "<|fim_prefix|>def f(x):<|endoftext|>",
            ],
        ),
        dict(
            name="tekken",
            normalizer=None,
            split=TEKKEN_SPLIT,
            ignore_merges=True,
            # As tekken.json: control tokens first, then the BPE.
            specials_first=["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[THINK]", "[/THINK]", "<pad>"],
            added_after=[],
            bos="<s>",
            config_bos="<s>",
            eos="</s>",
            add_bos=True,
            texts=["<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]hi 12[/INST][THINK]hm[/THINK]ok</s>"],
        ),
    ]


def train(spec) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(byte_fallback=False, ignore_merges=spec["ignore_merges"]))
    if spec["normalizer"] is not None:
        tokenizer.normalizer = spec["normalizer"]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(spec["split"]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=spec["specials_first"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)

    # One more vocabulary entry with no merge that makes it.
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    assert UNREACHABLE not in vocab
    vocab[UNREACHABLE] = len(vocab)
    tokenizer = Tokenizer.from_str(json.dumps(data))

    tokenizer.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in spec["added_after"]])
    if spec["bos"]:
        bos = spec["bos"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos}:1 $B:1",
            special_tokens=[(bos, tokenizer.token_to_id(bos))],
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


CONVERT = """
import sys
llama_cpp, hf_dir, pre, vocab_size, out = sys.argv[1:]
sys.path[:0] = [llama_cpp, llama_cpp + "/gguf-py"]
import gguf
from conversion import base

class Vocab:
    # The converter's own steps, on a model that is only a tokenizer.
    get_vocab_base = base.TextModel.get_vocab_base
    _set_vocab_gpt2 = base.TextModel._set_vocab_gpt2
    does_token_look_special = base.TextModel.does_token_look_special
    def __init__(self):
        self.dir_model = __import__("pathlib").Path(hf_dir)
        self.hparams = {"vocab_size": int(vocab_size)}
        self.gguf_writer = gguf.GGUFWriter(out, "tokenizer-only")
    def get_vocab_base_pre(self, tokenizer):
        return pre

v = Vocab()
v._set_vocab_gpt2()
v.gguf_writer.write_header_to_file()
v.gguf_writer.write_kv_data_to_file()
v.gguf_writer.write_tensors_to_file()
v.gguf_writer.close()
"""


def make(spec, llama_cpp: Path) -> None:
    out = OUT_DIR / spec["name"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tokenizer = train(spec)
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
    }
    write_json(out / "tokenizer_config.json", config)

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp)
        for name in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(out / name, hf_dir / name)
        # config.json's ids, as a model directory has them (Qwen names a bos it never adds).
        write_json(
            hf_dir / "config.json",
            {
                "bos_token_id": tokenizer.token_to_id(spec["config_bos"]),
                "eos_token_id": tokenizer.token_to_id(spec["eos"]),
            },
        )
        # A model's embedding is often wider than its tokenizer: [PAD{i}] fillers.
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True) + 3
        gguf_path = out / f"{spec['name']}.gguf"
        cmd = [sys.executable, "-c", CONVERT, str(llama_cpp), str(hf_dir), spec["name"], str(vocab_size), str(gguf_path)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    cases = []
    for text in TEXTS + spec["texts"]:
        encoding = tokenizer.encode(text)
        cases.append(
            {
                "text": text,
                "ids": encoding.ids,
                "tokens": encoding.tokens,
                "decoded": tokenizer.decode(encoding.ids, skip_special_tokens=False),
                "decoded_skip_special": tokenizer.decode(encoding.ids, skip_special_tokens=True),
            }
        )
    pair = tokenizer.encode(TEXTS[1], TEXTS[2])
    write_json(
        out / "reference.json",
        {
            "made_by": "scripts/make_tokenizer_fixtures.py with tokenizers " + __import__("tokenizers").__version__,
            "pre": spec["name"],
            "cases": cases,
            "pair": {"texts": [TEXTS[1], TEXTS[2]], "ids": pair.ids},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp's source tree")
    args = parser.parse_args()
    for spec in family_specs():
        make(spec, args.llama_cpp.resolve())


if __name__ == "__main__":
    main()
