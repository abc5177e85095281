"""Generate the 1-bit, 2-bit and ternary GGUF fixtures: `fixtures/gguf/qwen3-tiny-lowbit-Q1_0.gguf`
and `-Q2_0.gguf`, `qwen3-tiny-ternary-TQ1_0.gguf` and `-TQ2_0.gguf`, their references,
and `fixtures/gguf/dequant/<TYPE>.json` for the four types.

Bonsai 8B is Qwen3-8B with every weight matrix in Q1_0 (ggml type 41: 128 weights per
18-byte block, ±d), the embedding and the output head included; Ternary Bonsai's files
use Q2_0 (type 42: 64 weights per 18-byte block, {-1, 0, +1, +2}·d). BitNet b1.58
GGUFs use TQ1_0 (type 34: 256 weights per 54-byte block, five trits a byte) or TQ2_0
(type 35: 256 weights per 66-byte block, 2-bit codes), both {-1, 0, +1}·d. The fixtures
are tiny Qwen3s made for them: a Q1_0 row needs a multiple of 128 elements, more than
qwen3-tiny's hidden 64, so this makes its own source (hidden 128, 4 heads of 32, 2 KV
heads, feed-forward 256, 2 layers, untied head; make_fixtures.py's random weights,
seeded) with qwen3-tiny's tokenizer and prompt; a TQ row needs a multiple of 256, so
the ternary files have a second source with every matrix width 256 (hidden 256, 4
heads of 64, 2 KV heads, feed-forward 256, 2 layers, untied head). llama.cpp's
converter writes each as F32 and `llama-quantize --pure` packs every 2-D tensor
(embedding and output head too, through --token-embedding-type / --output-tensor-type)
with ggml's reference quantizers; the norms stay F32.

Beside each file, as make_gguf_fixtures.py writes them: `<file>.json` (tensors with
types, dimensions and the FNV-1a 64 of their dequantized f32 bytes, the prompt ids, a
24-token greedy continuation from full forward passes) and `<file>.logits.npy` (HF
transformers' Qwen3ForCausalLM in f32 on exactly the dequantized weights: saved as an
f32 checkpoint and loaded fresh with from_pretrained, so nothing but those weights
reaches the model).

The dequantization is this script's transcription of ggml-quants.c's
`dequantize_row_q1_0` / `dequantize_row_q2_0` (gguf-py has none for these types), and
gguf-py's for TQ1_0 / TQ2_0, held to ggml's own: `dequant/<TYPE>.json` holds random
blocks and blocks of the fixture files with the values ggml's `to_float` gives them,
through a helper compiled against llama.cpp's static ggml-base library, and the script
checks its dequantization against those values first. The Rust dequantizer is tested
against the same json.

The pinned gguf package predates Q2_0, so the files are read with llama.cpp's own
gguf-py (put first on the module path before anything imports `gguf`).

Needs llama.cpp's source built as make_gguf_fixtures.py describes (llama-quantize and
the static libraries), then

    python scripts/make_lowbit_fixtures.py --llama-cpp .../vendor/llama.cpp [--types TQ1_0 TQ2_0]
"""

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


TYPES = ("Q1_0", "Q2_0", "TQ1_0", "TQ2_0")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source dir, built")
    parser.add_argument("--types", nargs="+", choices=TYPES, default=TYPES, help="remake only these types' files")
    return parser.parse_args()


ARGS = arguments()
LLAMA_CPP = ARGS.llama_cpp.resolve()
sys.path.insert(0, str(LLAMA_CPP / "gguf-py"))

import gguf  # noqa: E402  (llama.cpp's, see the docstring)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig  # noqa: E402

import make_fixtures as hf  # noqa: E402
import make_gguf_fixtures as gg  # noqa: E402

SOURCE = hf.FixtureSpec(
    name="qwen3-tiny-lowbit",
    seed=7411,
    config={
        "hidden_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "num_hidden_layers": 2,
        "intermediate_size": 256,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
    },
    arch=hf.QWEN3,
)
# The K-quant Qwen3's shapes, every row 256 wide (a TQ block), with weights of its own.
TERNARY_SOURCE = hf.FixtureSpec(
    name="qwen3-tiny-ternary",
    seed=7412,
    config=dict(gg.KQUANT_QWEN3_SOURCE.config),
    arch=hf.QWEN3,
)
# The fixture whose tokenizer (and so prompt ids) the sources take.
TOKENIZER_FROM = "qwen3-tiny"


def source_of(type_name: str) -> hf.FixtureSpec:
    """The source a type's file packs: TQ rows need whole 256-weight blocks."""
    return TERNARY_SOURCE if type_name.startswith("TQ") else SOURCE

Q1_0 = gguf.GGMLQuantizationType.Q1_0
Q2_0 = gguf.GGMLQuantizationType.Q2_0

# Prints ggml's `to_float` of the blocks on stdin (type id in argv[1]) as f32 bytes.
GGML_DEQUANT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ggml.h"
int main(int argc, char **argv) {
    enum ggml_type type = (enum ggml_type) atoi(argv[1]);
    const struct ggml_type_traits *traits = ggml_get_type_traits(type);
    static unsigned char in[1 << 20];
    size_t n = fread(in, 1, sizeof in, stdin);
    if (n % traits->type_size != 0) return 1;
    int64_t k = (int64_t) (n / traits->type_size) * traits->blck_size;
    float *out = (float *) malloc(k * sizeof(float));
    traits->to_float(in, out, k);
    fwrite(out, sizeof(float), k, stdout);
    return 0;
}
"""


def dequantize_q1_0(raw: np.ndarray) -> np.ndarray:
    """dequantize_row_q1_0: d (f16), 16 bytes; bit j % 8 of byte j / 8 is element j,
    1 for d and 0 for -d."""
    blocks = raw.reshape(-1, 18)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)
    bits = np.unpackbits(blocks[:, 2:], axis=1, bitorder="little")
    return np.where(bits == 1, d, -d).astype(np.float32)


def dequantize_q2_0(raw: np.ndarray) -> np.ndarray:
    """dequantize_row_q2_0: d (f16), 16 bytes; bits 2 (j % 4) of byte j / 4 are element
    j's code q, and the value is ((int) q - 1) * d."""
    blocks = raw.reshape(-1, 18)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)
    codes = (blocks[:, 2:, None] >> np.array([0, 2, 4, 6], dtype=np.uint8)) & 3
    q = codes.reshape(len(blocks), 64).astype(np.int32) - 1
    return q.astype(np.float32) * d


def dequantize(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """A reader tensor's values in numpy order ([rows, cols])."""
    if qtype not in (Q1_0, Q2_0):
        return gguf.quants.dequantize(data, qtype)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    values = (dequantize_q1_0 if qtype == Q1_0 else dequantize_q2_0)(np.ascontiguousarray(data).view(np.uint8))
    return values.reshape(*data.shape[:-1], data.shape[-1] // type_size * block_size)


def build_ggml_dequant(out: Path) -> Path:
    source = out.with_suffix(".cpp")
    source.write_text(GGML_DEQUANT_C)
    build = LLAMA_CPP / "build" / "ggml" / "src"
    libs = [build / "libggml-base.a"]
    openmp = ["-fopenmp"] if "GGML_OPENMP:BOOL=ON" in (LLAMA_CPP / "build/CMakeCache.txt").read_text() else []
    cmd = ["c++", "-O1", f"-I{LLAMA_CPP}/ggml/include", str(source), *map(str, libs), *openmp,
           "-lpthread", "-lm", "-o", str(out)]
    subprocess.run(cmd, check=True)
    return out


def ggml_dequantize(tool: Path, raw: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    run = subprocess.run([str(tool), str(int(qtype))], input=raw.tobytes(), capture_output=True, check=True)
    return np.frombuffer(run.stdout, dtype="<f4")


def quantize(f32: Path, name: str, out: Path) -> str:
    """llama-quantize: every 2-D tensor in `name`, the norms kept F32. Returns the command
    line as the json records it."""
    args = ["--pure", "--token-embedding-type", name.lower(), "--output-tensor-type", name.lower()]
    tool = LLAMA_CPP / "build" / "bin" / "llama-quantize"
    subprocess.run([str(tool), *args, str(f32), str(out), name, "1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return " ".join(["llama-quantize", *args, "<F32 file>", name])


def fresh_f32_model(model: torch.nn.Module, out_dir: Path) -> torch.nn.Module:
    """`model` saved in f32 and loaded back with from_pretrained (eager attention),
    checked to hold the very same weights."""
    model.save_pretrained(out_dir)
    fresh = type(model).from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    hf.check_tying(fresh)
    ours, theirs = model.state_dict(), fresh.state_dict()
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        assert torch.equal(value, theirs[name]), name
    return fresh


def write_references(path: Path, type_name: str, source_dir: Path, made_by: str, tmp: Path) -> None:
    reader = gguf.GGUFReader(path)
    tensors = {t.name: (t, dequantize(t.data, t.tensor_type)) for t in reader.tensors}
    for name, (t, _) in tensors.items():
        expected = type_name if len(t.shape) == 2 else "F32"
        assert t.tensor_type.name == expected, f"{path.name} {name}: {t.tensor_type.name}"
    config = AutoConfig.from_pretrained(source_dir)
    config._attn_implementation = "eager"
    model = gg.load_dequantized_model(config, reader, tensors)
    model = fresh_f32_model(model, tmp / f"{path.stem}-hf")
    prompt_ids = json.loads((hf.FIXTURES_DIR / TOKENIZER_FROM / "reference.json").read_text())["prompt_ids"]
    with torch.no_grad():
        logits = hf.forward_logits(model, prompt_ids)
        greedy_ids, min_margin = hf.greedy_continuation(model, prompt_ids)
    np.save(path.with_suffix(".logits.npy"), logits.numpy().astype("<f4"))
    hf.write_json(
        path.with_suffix(".json"),
        {
            "source": source_of(type_name).name,
            "made_by": made_by,
            "tensors": {
                name: {
                    "type": t.tensor_type.name,
                    "dims": [int(d) for d in t.shape],
                    "dequantized_fnv1a64": gg.fnv1a64(values.astype("<f4").tobytes()),
                }
                for name, (t, values) in tensors.items()
            },
            "prompt_ids": prompt_ids,
            "greedy_ids": greedy_ids,
            "greedy_min_margin": min_margin,
            "logits_max_abs": float(logits.abs().max()),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "gguf_py": "llama.cpp's bundled gguf-py " + importlib.metadata.version("gguf"),
            "hf_class": type(model).__name__,
        },
    )
    assert min_margin >= hf.MIN_GREEDY_MARGIN, f"{path.name}: greedy margin {min_margin} too small"


def write_dequant_reference(qtype: gguf.GGMLQuantizationType, fixture: Path, tool: Path) -> None:
    """Random blocks (finite scales of either sign, every bit pattern) and the first
    blocks of the fixture's embedding, with ggml's values for them."""
    rng = np.random.default_rng(4142 + int(qtype))
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = gg.random_blocks(qtype, rng)
    embedding = next(t for t in gguf.GGUFReader(fixture).tensors if t.name == "token_embd.weight")
    taken = np.array(embedding.data.view(np.uint8).reshape(-1)[: gg.SAMPLE_BLOCKS * type_size])
    raw = np.concatenate([blocks, taken])
    values = ggml_dequantize(tool, raw, qtype)
    ours = dequantize(raw.reshape(1, -1), qtype).reshape(-1)
    assert np.array_equal(values.view("<u4"), ours.view("<u4")), f"{qtype.name}: dequantization differs from ggml"
    hf.write_json(
        gg.OUT_DIR / "dequant" / f"{qtype.name}.json",
        {"type": qtype.name, "bytes_hex": raw.tobytes().hex(), "f32_bits": values.view("<u4").tolist()},
    )


def main() -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tool = build_ggml_dequant(tmp / "ggml_dequant")
        for spec in {source_of(name).name: source_of(name) for name in ARGS.types}.values():
            gg.make_generated_source(spec, TOKENIZER_FROM, tmp / spec.name)
            gg.convert(LLAMA_CPP, tmp / spec.name, "f32", tmp / f"{spec.name}-F32.gguf")
        for name in ARGS.types:
            source = source_of(name).name
            out = gg.OUT_DIR / f"{source}-{name}.gguf"
            made_by = quantize(tmp / f"{source}-F32.gguf", name, out)
            write_dequant_reference(gguf.GGMLQuantizationType[name], out, tool)
            write_references(out, name, tmp / source, made_by, tmp)
            print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
