"""Convert the demo model to the GGUF file that lfm-edge runs by default,
`models/lfm2-demo-Q8_0.gguf`, and record its reference beside it.

The conversion is llama.cpp's own `convert_hf_to_gguf.py --outtype q8_0`, run on the
bf16 checkpoint of `models/lfm2-demo` (written by scripts/train_demo.py) exactly as
scripts/make_gguf_fixtures.py runs it (see there for where llama.cpp's source comes
from). `lfm2-demo-Q8_0.json` holds the greedy continuation of reference.json's prompt
that HF transformers computes in f32 from the weights gguf-py dequantizes from the
file, with every step's top-1/top-2 logit margin.

    python scripts/make_demo_gguf.py --llama-cpp .../vendor/llama.cpp
"""

import argparse
import importlib.metadata
import json
import sys
from pathlib import Path

import gguf
import torch
import transformers
from make_fixtures import MIN_GREEDY_MARGIN, write_json
from make_gguf_fixtures import convert, dequantized, load_dequantized_model
from tokenizers import Tokenizer
from train_demo import MODEL_DIR, greedy
from transformers import AutoConfig

GGUF_PATH = MODEL_DIR.parent / "lfm2-demo-Q8_0.gguf"


@torch.no_grad()
def write_reference() -> None:
    reader = gguf.GGUFReader(GGUF_PATH)
    config = AutoConfig.from_pretrained(MODEL_DIR)
    config._attn_implementation = "eager"
    model = load_dequantized_model(config, reader, dequantized(reader))
    source = json.loads((MODEL_DIR / "reference.json").read_text())
    greedy_ids, margins = greedy(model, source["prompt_ids"])
    if min(margins) < MIN_GREEDY_MARGIN:
        sys.exit(f"{GGUF_PATH.name}: greedy margin {min(margins)} below {MIN_GREEDY_MARGIN}")
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    write_json(
        GGUF_PATH.with_suffix(".json"),
        {
            "made_by": "convert_hf_to_gguf.py --outtype q8_0 models/lfm2-demo",
            "prompt_text": source["prompt_text"],
            "prompt_ids": source["prompt_ids"],
            "greedy_ids": greedy_ids,
            "greedy_text": tokenizer.decode(greedy_ids),
            "greedy_min_margin": min(margins),
            "greedy_margins": margins,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "gguf_version": importlib.metadata.version("gguf"),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source dir")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    convert(args.llama_cpp.resolve(), MODEL_DIR, "q8_0", GGUF_PATH)
    write_reference()
    print(f"wrote {GGUF_PATH} ({GGUF_PATH.stat().st_size} bytes) and its .json")


if __name__ == "__main__":
    main()
