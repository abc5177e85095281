#!/usr/bin/env bash
# lfm-edge against llama.cpp's Vulkan backend, on the same device, in one run.
#
# Builds llama.cpp (the source shipped in the llama-cpp-python sdist on PyPI) with
# -DGGML_VULKAN=ON into its own build directory, makes LFM2 models at the published
# shapes with random weights (make_models.py), runs llama-bench and `lfm-edge bench` on
# the same GGUF files, and prints a markdown table (table.py): prefill and decode tok/s
# of both, their ratio, and decode as a fraction of the adapter's copy bandwidth.
#
# Needs cmake, a C++17 compiler, the Vulkan loader, headers and glslc (Debian:
# libvulkan-dev glslc), Python with scripts/requirements.txt, and cargo. This llama.cpp
# needs Vulkan headers 1.3.261 or newer (VK_EXT_layer_settings); Debian 12 ships 1.3.239,
# so there point VULKAN_INCLUDE_DIR at newer ones, e.g. Debian 13's libvulkan-dev
# unpacked with `apt-get download libvulkan-dev/trixie && dpkg -x libvulkan-dev_*.deb DIR`
# (then VULKAN_INCLUDE_DIR=DIR/usr/include).
#
# Settings, from the environment:
#   SHAPES   comma-separated, of 350M 1.2B 2.6B 8B-A1B
#            (default 1.2B; 350M on a CPU adapter such as lavapipe)
#   TYPES    comma-separated GGUF types, of F16 BF16 Q8_0 Q4_0 Q4_K_M
#            (default F16,Q8_0,Q4_0,Q4_K_M)
#   PROMPT, GEN, REPEAT   tokens of the prompt, tokens generated, runs of each
#            (default 512, 128, 5; 64, 16, 2 on a CPU adapter, where a token takes
#            a large fraction of a second)
#   WORK     sources, builds, models and results (default target/bench)
#   LLAMA_CPP_PYTHON      the sdist version holding llama.cpp (default 0.3.36)
#   VULKAN_INCLUDE_DIR    Vulkan headers for the llama.cpp build (default: the system's)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-$REPO/target/bench}
VERSION=${LLAMA_CPP_PYTHON:-0.3.36}
TYPES=${TYPES:-F16,Q8_0,Q4_0,Q4_K_M}
JOBS=$(nproc)
mkdir -p "$WORK/src" "$WORK/results"

echo "== lfm-edge" >&2
cargo build --release -p lfm-edge --manifest-path "$REPO/Cargo.toml" >&2
OURS=${CARGO_TARGET_DIR:-$REPO/target}/release/lfm-edge
adapter=$("$OURS" info --model "$REPO/models/lfm2-demo" --backend vulkan | sed -n 's/^adapter: //p')
echo "adapter: $adapter" >&2
if [[ $adapter == *", Cpu)" ]]; then
    SHAPES=${SHAPES:-350M} PROMPT=${PROMPT:-64} GEN=${GEN:-16} REPEAT=${REPEAT:-2}
    # llama.cpp skips CPU Vulkan devices unless they are named.
    export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
else
    SHAPES=${SHAPES:-1.2B} PROMPT=${PROMPT:-512} GEN=${GEN:-128} REPEAT=${REPEAT:-5}
fi

echo "== llama.cpp (llama-cpp-python $VERSION sdist), Vulkan backend" >&2
LLAMA=$WORK/src/llama_cpp_python-$VERSION/vendor/llama.cpp
if [[ ! -d $LLAMA ]]; then
    python3 -m pip download --no-binary :all: --no-deps -d "$WORK/src" "llama-cpp-python==$VERSION" >&2
    tar -xzf "$WORK/src/llama_cpp_python-$VERSION.tar.gz" -C "$WORK/src"
fi
BUILD=$LLAMA/build-vulkan
headers=()
if [[ -n ${VULKAN_INCLUDE_DIR:-} ]]; then
    headers=(-DVulkan_INCLUDE_DIR="$VULKAN_INCLUDE_DIR")
fi
cmake -S "$LLAMA" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_VULKAN=ON -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF "${headers[@]}" >&2
cmake --build "$BUILD" --target llama-bench llama-quantize -j "$JOBS" >&2

echo "== models: $SHAPES in $TYPES" >&2
python3 "$REPO/scripts/bench/make_models.py" --llama-cpp "$LLAMA" \
    --quantize "$BUILD/bin/llama-quantize" --out "$WORK/models" \
    --shapes "$SHAPES" --types "$TYPES" >&2 2>"$WORK/models.log"

results=$WORK/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
for shape in ${SHAPES//,/ }; do
    for type in ${TYPES//,/ }; do
        model=$WORK/models/$shape/LFM2-$shape-$type.gguf
        echo "== $shape $type: llama-bench, then lfm-edge bench (pp$PROMPT, tg$GEN, $REPEAT runs)" >&2
        "$BUILD/bin/llama-bench" -m "$model" -p "$PROMPT" -n "$GEN" -r "$REPEAT" -o json \
            >"$results/$shape-$type.llama.json"
        "$OURS" bench --model "$model" --backend vulkan --prompt-tokens "$PROMPT" \
            --gen-tokens "$GEN" --repeat "$REPEAT" >"$results/$shape-$type.ours.txt"
    done
done
python3 "$REPO/scripts/bench/table.py" "$results"
