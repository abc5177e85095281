"""Generate the GGUF test fixtures under `fixtures/gguf/`.

The GGUF files are made the way users get them: llama.cpp's own converter
(`convert_hf_to_gguf.py`) turns the tiny HF fixtures of `make_fixtures.py` (dense
`lfm2`, MoE `lfm2moe`, `qwen3`, and Ministral 3 as `mistral3`) into
F32/F16/BF16/Q8_0 files, and llama.cpp's `llama-quantize` makes the other types
from the F32 file. K-quants need rows that are a multiple of 256 elements, more
than the tiny fixtures' hidden and expert sizes (32 to 96), so three slightly
larger models (hidden 256: LFM2 dense and MoE, Qwen3; made with make_fixtures.py's
conventions) are converted for them.

The converter writes Ministral 3's q_proj/k_proj rows permuted (its LlamaModel
`permute`: each head's rotate-half pairs (i, i + d/2) become adjacent rows
(2i, 2i + 1), for ggml's interleaved RoPE); the references un-permute them.
Qwen3's it writes as they are (NEOX RoPE).

llama.cpp's converter writes no `lfm2moe.expert_weights_scale` (nor
`expert_weights_norm`): LFM2-MoE's `routed_scaling_factor` does not reach the GGUF
file, and llama.cpp's lfm2moe graph always normalizes the top-k router weights and
never scales them. The references follow the file, as llama.cpp does: HF's config
with `routed_scaling_factor` 1 (lfm2moe-tiny's source says 1.5; its `.json` lists
the changed value under `config_overrides`). Checked once by hand: llama.cpp's CPU
backend on lfm2moe-tiny's F32 conversion gives these logits within 4e-3 (its dense
F32 files: 3.6e-3), and is 0.5 to 2.5 off HF with the factor 1.5 at every position.

For every GGUF file this writes, beside it:
- `<file>.json`: how it was made, its tensors (ggml type, dimensions as GGUF
  lists them, an FNV-1a 64 hash of the gguf-py-dequantized f32 bytes), the
  prompt ids of the source fixture, a 24-token greedy continuation (no cache,
  eos ignored) with its minimum top-1/top-2 logit margin; for the F16 and Q8_0
  files, llama.cpp's own greedy continuation too (see below) where it agrees;
- `<file>.logits.npy`: float32 logits [n_prompt, vocab] of HF transformers'
  text model (Lfm2ForCausalLM, Lfm2MoeForCausalLM, Qwen3ForCausalLM,
  Ministral3ForCausalLM; the `.json`'s `hf_class`) in f32 on exactly the weights
  gguf-py dequantizes from the file.

And `dequant/<TYPE>.json` per supported type: raw blocks (random ones and ones
taken from the fixture files) with gguf-py's dequantization as f32 bits, and
`ggml_types.json`, llama.cpp's table of every ggml type's block layout.

Needs llama.cpp's source, which ships inside the llama-cpp-python sdist:

    pip download --no-binary llama-cpp-python --no-deps llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz
    cd llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \\
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \\
        -DLLAMA_BUILD_SERVER=OFF
    cmake --build build --target llama-quantize -j2

then `python scripts/make_gguf_fixtures.py --llama-cpp .../vendor/llama.cpp`
(with scripts/requirements.txt installed; `--only SOURCE...` remakes only the
files of those HF sources and leaves the rest of fixtures/gguf as it is). The
converter runs with its own bundled gguf-py; the references use the pinned `gguf`
package.

`llama_cpp_greedy_ids`: the script compiles `llama_cpp_greedy.cpp` (beside it; needs
a C++ compiler) against the static libraries that build leaves in build/, and runs it
on every F16 and Q8_0 file that llama.cpp can load: llama.cpp's CPU backend (that
x86-64 AVX2 build, one thread, its default context) decodes the prompt ids, then
feeds back its argmax for 24 tokens, eos ignored. Its activations are not HF's f32
ones (F16 weights take f16 activations, Q8_0 weights Q8_0-quantized ones): its
prompt logits are up to 0.55 off HF's on the dense Q8_0 file, and up to 0.7 (F16)
and 1.7 (Q8_0) on the MoE files where a router's top-k flips, so near-ties flip. Its
ids are recorded only where they equal HF's `greedy_ids`; where not, the script
prints where they part. A file llama.cpp refuses to load gets none: its LFM2 loader
knows no conv biases, so it refuses lfm2-tiny-attn-first (conv_bias=true), and its
Qwen3 loader no attention biases, so it refuses qwen3-tiny-bias.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoConfig, Lfm2MoeConfig, PretrainedConfig

import make_fixtures as hf

OUT_DIR = hf.FIXTURES_DIR / "gguf"

# The shapes of the models for K-quants: every weight row a multiple of 256 elements.
KQUANT_SHAPES = {
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "layer_types": ["conv", "full_attention"],
    "intermediate_size": 256,
    "conv_bias": False,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
}
KQUANT_SOURCE = hf.FixtureSpec(
    name="lfm2-tiny-kquant",
    seed=2222,  # greedy margins of its Q4_K_M and Q5_K_M files above 0.1
    config={**KQUANT_SHAPES, "block_auto_adjust_ff_dim": False},
)
# The MoE model for K-quants: the experts' rows too. A dense conv layer, then an
# attention MoE layer (Q4_K_M gives it Q4_K gate/up and Q6_K down expert stacks); the
# expert bias reorders the top-k as in lfm2moe-tiny.
KQUANT_MOE_SOURCE = hf.FixtureSpec(
    name="lfm2moe-tiny-kquant",
    seed=3338,  # greedy margin of its Q4_K_M file above 0.1
    config={
        **KQUANT_SHAPES,
        "moe_intermediate_size": 256,
        "num_dense_layers": 1,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "use_expert_bias": True,
        "norm_topk_prob": True,
        "routed_scaling_factor": 1.0,  # a GGUF file carries none (see above)
    },
    arch=hf.LFM2_MOE,
)
# Qwen3 for K-quants, untied (Q4_K_M gives its output Q6_K), 4 heads of 64: q/k norms
# and the attention width 256 too.
KQUANT_QWEN3_SOURCE = hf.FixtureSpec(
    name="qwen3-tiny-kquant",
    seed=7305,  # greedy margin of its Q4_K_M file above 0.1
    config={
        "hidden_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 256,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
    },
    arch=hf.QWEN3,
)

# llama.cpp's names of the pre-tokenizers (its `tokenizer.ggml.pre`) that split as the
# fixtures' tokenizers do, by config.json's model_type.
GGUF_PRE_TOKENIZER = {"lfm2": "lfm2", "lfm2_moe": "lfm2", "qwen3": "qwen2", "mistral3": "tekken"}
# The families whose q/k rows the converter permutes (see the docstring).
PERMUTED_QK = {"mistral3"}


@dataclass(frozen=True)
class GgufSpec:
    source: str  # HF fixture directory name
    outtype: str  # converter --outtype, or llama-quantize type applied to the F32 file
    quantize_args: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.source}-{self.outtype.upper()}.gguf"

    @property
    def converted(self) -> bool:
        return not self.quantize_args and self.outtype in ("f32", "f16", "bf16", "q8_0")


CONV, ATTN, KQ = "lfm2-tiny-conv-first", "lfm2-tiny-attn-first", KQUANT_SOURCE.name
MOE, KQ_MOE = "lfm2moe-tiny", KQUANT_MOE_SOURCE.name
QWEN3, QWEN3_BIAS, KQ_QWEN3 = "qwen3-tiny", "qwen3-tiny-bias", KQUANT_QWEN3_SOURCE.name
MINISTRAL3 = "ministral3-tiny"
# Made here (in a temporary directory), not committed as HF fixtures, each with the
# tokenizer (and so the prompt ids) of the fixture named beside it.
GENERATED_SOURCES = ((KQUANT_SOURCE, CONV), (KQUANT_MOE_SOURCE, CONV), (KQUANT_QWEN3_SOURCE, QWEN3))
SPECS = [
    GgufSpec(CONV, "f32"),
    GgufSpec(CONV, "bf16"),
    GgufSpec(CONV, "q8_0"),
    GgufSpec(CONV, "q4_0", ("--pure",)),
    GgufSpec(CONV, "q5_1", ("--pure",)),
    GgufSpec(ATTN, "f16"),
    GgufSpec(ATTN, "q4_1", ("--pure",)),
    GgufSpec(ATTN, "q5_0", ("--pure",)),
    # Dense F16 that llama.cpp loads (attn-first's conv biases it refuses). Listed after
    # attn-first's F16 file, whose embedding blocks dequant/F16.json samples.
    GgufSpec(CONV, "f16"),
    # llama-quantize's own mixtures, as the official releases ship them: Q4_K and Q6_K,
    # Q5_K and Q6_K.
    GgufSpec(KQ, "q4_k_m"),
    GgufSpec(KQ, "q5_k_m"),
    GgufSpec(MOE, "f16"),
    # Q8_0 with the tied embedding kept F16, as llama-quantize's --token-embedding-type
    # offers: with a Q8_0 embedding too (as `--outtype q8_0` converts it, bytes alike),
    # the greedy margin of this model is only 0.008.
    GgufSpec(MOE, "q8_0", ("--pure", "--token-embedding-type", "f16")),
    GgufSpec(MOE, "q4_0", ("--pure",)),
    GgufSpec(KQ_MOE, "q4_k_m"),
    # The other types on MoE too, listed last so that each type's first file (whose
    # blocks dequant/<TYPE>.json samples) stays the dense one. No MoE F32 file: it
    # would add ~1.3 MB, F32 weights are covered by conv-first's, and every MoE file
    # keeps its norms and router in F32.
    GgufSpec(MOE, "bf16"),
    # Its embedding F16, as the Q8_0 file's: with a Q4_1 one the greedy margin is 0.007.
    GgufSpec(MOE, "q4_1", ("--pure", "--token-embedding-type", "f16")),
    GgufSpec(MOE, "q5_0", ("--pure",)),
    GgufSpec(MOE, "q5_1", ("--pure",)),
    GgufSpec(KQ_MOE, "q5_k_m"),
    # Qwen3 and Ministral 3, after every LFM2 file (dequant/ samples those).
    GgufSpec(QWEN3, "f32"),
    GgufSpec(QWEN3, "f16"),
    GgufSpec(QWEN3, "bf16"),
    GgufSpec(QWEN3, "q8_0"),
    GgufSpec(QWEN3, "q4_0", ("--pure",)),
    GgufSpec(QWEN3_BIAS, "f32"),
    GgufSpec(QWEN3_BIAS, "f16"),
    GgufSpec(QWEN3_BIAS, "bf16"),
    GgufSpec(QWEN3_BIAS, "q8_0"),
    GgufSpec(KQ_QWEN3, "q4_k_m"),
    GgufSpec(MINISTRAL3, "f32"),
    GgufSpec(MINISTRAL3, "f16"),
    GgufSpec(MINISTRAL3, "bf16"),
    GgufSpec(MINISTRAL3, "q8_0"),
    GgufSpec(MINISTRAL3, "q4_0", ("--pure",)),
]

# The types whose greedy continuation llama.cpp's is checked against (see the docstring).
LLAMA_CPP_GREEDY_TYPES = ("f16", "q8_0")

SUPPORTED_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
# Per type: this many random blocks, then as many from a fixture file (values for the
# one-element-block types F32/F16/BF16).
SAMPLE_BLOCKS = 2
PLAIN_VALUES = 32

CONVERT_WRAPPER = """
import runpy, sys
llama_cpp, pre, *argv = sys.argv[1:]
sys.path[:0] = [llama_cpp, llama_cpp + "/gguf-py"]
from conversion import base, lfm2
# The converter names the pre-tokenizer by hashing a tokenization; our tiny
# tokenizers' hashes are unknown to it, but they split exactly as `pre` does.
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
# It squeezes every conv.conv tensor from [H, 1, L] to [H, L], which fails on the
# 1-D conv.conv.bias of conv_bias models (published LFM2s have none): pass that as is.
squeezing = lfm2.LFM2Model.modify_tensors
def modify_tensors(self, data, name, bid):
    if name.endswith("conv.conv.bias"):
        return base.TextModel.modify_tensors(self, data, name, bid)
    return squeezing(self, data, name, bid)
lfm2.LFM2Model.modify_tensors = modify_tensors
sys.argv = ["convert_hf_to_gguf.py", *argv]
runpy.run_path(llama_cpp + "/convert_hf_to_gguf.py", run_name="__main__")
"""


def fnv1a64(data: bytes) -> str:
    """FNV-1a 64 as hex: cheap to recompute in the Rust tests without a dependency."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def convert(llama_cpp: Path, hf_dir: Path, outtype: str, out: Path) -> None:
    pre = GGUF_PRE_TOKENIZER[hf.arch_of(hf_dir).model_type]
    cmd = [sys.executable, "-c", CONVERT_WRAPPER, str(llama_cpp), pre, str(hf_dir), "--outtype", outtype, "--outfile", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def quantize(llama_cpp: Path, f32: Path, spec: GgufSpec, out: Path) -> None:
    tool = llama_cpp / "build" / "bin" / "llama-quantize"
    cmd = [str(tool), *spec.quantize_args, str(f32), str(out), spec.outtype.upper(), "1"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_llama_cpp_greedy(llama_cpp: Path, out: Path) -> Path:
    """Compiles llama_cpp_greedy.cpp against llama.cpp's static CPU build."""
    build = llama_cpp / "build"
    libs = [build / "src/libllama.a", *(build / f"ggml/src/lib{lib}.a" for lib in ("ggml", "ggml-cpu", "ggml-base"))]
    source = Path(__file__).with_name("llama_cpp_greedy.cpp")
    # ggml uses OpenMP where the compiler has it (GGML_OPENMP's default): link its runtime.
    openmp = ["-fopenmp"] if "GGML_OPENMP:BOOL=ON" in (build / "CMakeCache.txt").read_text() else []
    cmd = ["c++", "-O2", "-std=c++17", f"-I{llama_cpp}/include", f"-I{llama_cpp}/ggml/include", str(source),
           *map(str, libs), *openmp, "-lpthread", "-ldl", "-lm", "-o", str(out)]
    subprocess.run(cmd, check=True)
    return out


# llama_cpp_greedy.cpp's exit status when llama.cpp refuses the model file.
LOAD_FAILED = 2


def llama_cpp_greedy(tool: Path, path: Path, prompt_ids: list[int]) -> tuple[list[int], list[float]] | None:
    """llama.cpp's greedy tokens (eos ignored) and their top-1/top-2 logit margins, or
    None where llama.cpp cannot load the file."""
    cmd = [str(tool), str(path), str(hf.GREEDY_STEPS), *map(str, prompt_ids)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode == LOAD_FAILED:
        return None
    run.check_returncode()
    lines = run.stdout.splitlines()
    steps = [line.split() for line in lines]
    assert len(steps) == hf.GREEDY_STEPS, lines
    return [int(token) for token, _ in steps], [float(margin) for _, margin in steps]


def llama_cpp_reference(
    tool: Path,
    spec: GgufSpec,
    path: Path,
    model: torch.nn.Module,
    prompt_ids: list[int],
    greedy_ids: list[int],
) -> dict:
    """`llama_cpp_greedy_ids` for the json where llama.cpp's continuation equals HF's;
    else prints where and by how much they part."""
    if spec.outtype not in LLAMA_CPP_GREEDY_TYPES:
        return {}
    greedy = llama_cpp_greedy(tool, path, prompt_ids)
    if greedy is None:
        print(f"{path.name}: llama.cpp cannot load it: no llama_cpp_greedy_ids")
        return {}
    ids, margins = greedy
    if ids == greedy_ids:
        return {"llama_cpp_greedy_ids": ids, "llama_cpp_greedy_min_margin": min(margins)}
    k = next(i for i, (a, b) in enumerate(zip(ids, greedy_ids)) if a != b)
    with torch.no_grad():
        logits = hf.forward_logits(model, prompt_ids + greedy_ids[:k])[-1]
    hf_margin = float(logits[greedy_ids[k]] - logits[ids[k]])
    print(f"{path.name}: llama.cpp's greedy token {k} is {ids[k]} (margin {margins[k]:.4f} in its logits), "
          f"HF's {greedy_ids[k]} (margin {hf_margin:.4f} over {ids[k]}): not recorded")
    return {}


def make_generated_source(spec: hf.FixtureSpec, tokenizer_from: str, out_dir: Path) -> None:
    """A hidden-256 model, seeded like make_fixtures.py's, with the tokenizer of the
    fixture `tokenizer_from`."""
    hf.save_model(spec, out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(hf.FIXTURES_DIR / tokenizer_from / name, out_dir / name)


def dequantized(reader: gguf.GGUFReader) -> dict[str, tuple[gguf.ReaderTensor, np.ndarray]]:
    return {t.name: (t, gguf.quants.dequantize(t.data, t.tensor_type)) for t in reader.tensors}


def metadata(reader: gguf.GGUFReader, key: str, default):
    field = reader.get_field(key)
    return default if field is None else field.contents()


def config_overrides(config: PretrainedConfig, reader: gguf.GGUFReader) -> dict:
    """The source config's values that the GGUF file says otherwise (see the docstring):
    the router's scale, which llama.cpp's converter does not write."""
    if not isinstance(config, Lfm2MoeConfig):
        return {}
    scale = metadata(reader, "lfm2moe.expert_weights_scale", 1.0)
    return {"routed_scaling_factor": scale} if scale != config.routed_scaling_factor else {}


# transformers holds each MoE layer's experts fused ([E, 2I, H] gate rows then up rows,
# and [E, H, I]); the converter stacks the checkpoint's per-expert w1/w3/w2 into one
# [E, rows, cols] tensor each, under the name `layers.N.feed_forward.experts.wK.weight`.
FUSED_EXPERTS = {"gate_up_proj": ("w1", "w3"), "down_proj": ("w2",)}


def converter_names(hf_name: str, tied: bool) -> list[str]:
    """The names, as the converter hands them to gguf-py's name table, of the tensors
    that make up one HF parameter (in the order it concatenates them)."""
    if hf_name == "lm_head.weight" and tied:  # not in the file, it is the embedding
        return ["model.embed_tokens.weight"]
    if hf_name.endswith(".expert_bias"):  # the converter renames it so, for exp_probs_b.bias
        return [hf_name + ".bias"]
    layer, experts, fused = hf_name.partition(".experts.")
    if experts:
        return [f"{layer.removeprefix('model.')}.experts.{w}.weight" for w in FUSED_EXPERTS[fused]]
    return [hf_name]


def unpermute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Undoes the converter's LlamaModel.permute of q_proj/k_proj rows: per head, rows
    (2i, 2i + 1) back to (i, i + head_dim/2)."""
    shape = rows.shape
    return rows.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def load_dequantized_model(config: PretrainedConfig, reader: gguf.GGUFReader, tensors: dict) -> torch.nn.Module:
    """The family's text-only causal LM (for Ministral 3 Ministral3ForCausalLM, the
    language model of the checkpoint's Mistral3ForConditionalGeneration) in f32 with
    every weight taken from the GGUF file, mapped back to its HF name by gguf-py's own
    name table (the one the converter used)."""
    family = hf.ARCHS[config.model_type]
    text = config.get_text_config()
    model = family.causal_lm(config).to(torch.float32).eval()
    arch = gguf.MODEL_ARCH[reader.get_field("general.architecture").contents().upper()]
    name_map = gguf.get_tensor_name_map(arch, text.num_hidden_layers)
    heads = {"q_proj": text.num_attention_heads, "k_proj": text.num_key_value_heads}
    state, used = {}, set()
    for hf_name, param in model.state_dict().items():
        names = [
            name_map.get_name(n, try_suffixes=(".weight", ".bias"))
            for n in converter_names(hf_name, text.tie_word_embeddings)
        ]
        used.update(names)
        parts = [tensors[name][1] for name in names]
        value = np.concatenate(parts, axis=-2) if len(parts) > 1 else parts[0]
        projection = hf_name.split(".")[-2]
        if config.model_type in PERMUTED_QK and projection in heads:
            value = unpermute(value, heads[projection])
        # reshape: the converter squeezed the conv kernel [H, 1, L] to [H, L].
        state[hf_name] = torch.from_numpy(np.ascontiguousarray(value)).reshape(param.shape)
    assert used == set(tensors), f"GGUF tensors with no HF parameter: {set(tensors) - used}"
    model.load_state_dict(state)
    hf.check_tying(model)
    return model


def write_references(spec: GgufSpec, path: Path, source_dir: Path, greedy_tool: Path) -> None:
    reader = gguf.GGUFReader(path)
    tensors = dequantized(reader)
    config = AutoConfig.from_pretrained(source_dir)
    overrides = config_overrides(config, reader)
    config.update(overrides)
    config.get_text_config()._attn_implementation = "eager"
    model = load_dequantized_model(config, reader, tensors)
    # The generated models share a fixture's tokenizer, so its prompt ids too.
    prompt_fixture = {source.name: fixture for source, fixture in GENERATED_SOURCES}.get(spec.source, spec.source)
    prompt_ids = json.loads((hf.FIXTURES_DIR / prompt_fixture / "reference.json").read_text())["prompt_ids"]
    with torch.no_grad():
        logits = hf.forward_logits(model, prompt_ids)
        greedy_ids, min_margin = hf.greedy_continuation(model, prompt_ids)
    llama_cpp = llama_cpp_reference(greedy_tool, spec, path, model, prompt_ids, greedy_ids)
    np.save(path.with_suffix(".logits.npy"), logits.numpy().astype("<f4"))
    hf.write_json(
        path.with_suffix(".json"),
        {
            "source": spec.source,
            "made_by": "convert_hf_to_gguf.py --outtype " + spec.outtype
            if spec.converted
            else " ".join(["llama-quantize", *spec.quantize_args, "<F32 file>", spec.outtype.upper()]),
            "tensors": {
                name: {
                    "type": t.tensor_type.name,
                    "dims": [int(d) for d in t.shape],
                    "dequantized_fnv1a64": fnv1a64(values.astype("<f4").tobytes()),
                }
                for name, (t, values) in tensors.items()
            },
            **({"config_overrides": overrides} if overrides else {}),
            "prompt_ids": prompt_ids,
            "greedy_ids": greedy_ids,
            "greedy_min_margin": min_margin,
            **llama_cpp,
            "logits_max_abs": float(logits.abs().max()),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "gguf_version": importlib.metadata.version("gguf"),
            "hf_class": type(model).__name__,
        },
    )
    assert min_margin >= hf.MIN_GREEDY_MARGIN, f"{path.name}: greedy margin {min_margin} too small"


def random_blocks(qtype: gguf.GGMLQuantizationType, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes with every f16 scale field finite (a random f16 can be inf or
    NaN, whose payload numpy and Rust need not propagate alike)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if block_size == 1:
        values = rng.standard_normal(PLAIN_VALUES).astype("<f4")
        return gguf.quants.quantize(values, qtype).view(np.uint8)
    blocks = rng.integers(0, 256, size=(SAMPLE_BLOCKS, type_size), dtype=np.uint8)
    # Byte offsets of each type's f16 fields (ggml-common.h).
    half_fields = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
                   "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
                   "Q1_0": [0], "Q2_0": [0], "TQ1_0": [52], "TQ2_0": [64]}[qtype.name]
    scales = rng.uniform(-0.05, 0.05, size=(SAMPLE_BLOCKS, len(half_fields))).astype("<f2").view(np.uint8)
    for i, offset in enumerate(half_fields):
        blocks[:, offset : offset + 2] = scales[:, 2 * i : 2 * i + 2]
    return blocks.reshape(-1)


def fixture_blocks(qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """The first blocks of the first 2-D tensor of this type in the fixture files."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_bytes = (SAMPLE_BLOCKS if block_size > 1 else PLAIN_VALUES) * type_size
    for spec in SPECS:
        for t in gguf.GGUFReader(OUT_DIR / spec.file_name).tensors:
            if t.tensor_type == qtype and len(t.shape) == 2:
                return np.array(t.data.view(np.uint8).reshape(-1)[:n_bytes])
    raise AssertionError(f"no fixture tensor of type {qtype.name}")


def write_dequant_references() -> None:
    out_dir = OUT_DIR / "dequant"
    out_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(20240)
    for name in SUPPORTED_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        raw = np.concatenate([random_blocks(qtype, rng), fixture_blocks(qtype)])
        values = gguf.quants.dequantize(raw, qtype).astype("<f4")
        hf.write_json(
            out_dir / f"{name}.json",
            {
                "type": name,
                "bytes_hex": raw.tobytes().hex(),
                "f32_bits": values.view("<u4").tolist(),
            },
        )


def write_type_table(llama_cpp: Path) -> None:
    """The block layouts of llama.cpp's own gguf-py: the pinned gguf package predates
    Q2_0 and still sizes Q8_1 blocks with f32 scales (40 bytes, ggml's are 36)."""
    spec = importlib.util.spec_from_file_location("llama_cpp_gguf_constants", llama_cpp / "gguf-py/gguf/constants.py")
    constants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(constants)
    hf.write_json(
        OUT_DIR / "ggml_types.json",
        [
            {"name": t.name, "id": int(t), "block_size": size[0], "block_bytes": size[1]}
            for t, size in constants.GGML_QUANT_SIZES.items()
        ],
    )


def main() -> None:
    names = list(dict.fromkeys(spec.source for spec in SPECS))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source dir, built as above")
    parser.add_argument(
        "--only", nargs="+", choices=names, metavar="SOURCE",
        help=f"remake only these sources' files (of {names}), not dequant/ nor ggml_types.json",
    )
    args = parser.parse_args()
    llama_cpp = args.llama_cpp.resolve()
    only = set(args.only or names)

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    # Overwrites its files and deletes nothing: make_lowbit_fixtures.py writes here too.
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        greedy_tool = build_llama_cpp_greedy(llama_cpp, tmp / "llama_cpp_greedy")
        generated = {source.name: (source, fixture) for source, fixture in GENERATED_SOURCES}
        sources = {}
        for name in (name for name in names if name in only):
            if name in generated:
                sources[name] = tmp / name
                make_generated_source(*generated[name], sources[name])
            else:
                sources[name] = hf.FIXTURES_DIR / name
            convert(llama_cpp, sources[name], "f32", tmp / f"{name}-F32.gguf")
        for spec in (spec for spec in SPECS if spec.source in only):
            out = OUT_DIR / spec.file_name
            if spec.converted:
                convert(llama_cpp, sources[spec.source], spec.outtype, out)
            else:
                quantize(llama_cpp, tmp / f"{spec.source}-F32.gguf", spec, out)
            write_references(spec, out, sources[spec.source], greedy_tool)
            print(f"wrote {out} ({out.stat().st_size} bytes)")
    if args.only is None:
        write_dequant_references()
        write_type_table(llama_cpp)


if __name__ == "__main__":
    main()
