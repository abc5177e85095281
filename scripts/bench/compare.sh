#!/usr/bin/env bash
# lfm-edge against llama.cpp's Vulkan backend, on the same device, in one run.
#
# Builds llama.cpp (the source shipped in the llama-cpp-python sdist on PyPI) with
# -DGGML_VULKAN=ON into its own build directory, writes models at the published shapes
# with random blocks (random_gguf.py: LFM2 350M to 8B-A1B, and Qwen3-8B, Bonsai 8B's
# shape), runs llama-bench and `lfm-edge bench` on the same GGUF files, and prints a
# markdown table (table.py): prefill and decode tok/s of both, their ratio, and decode
# as a fraction of the adapter's copy bandwidth.
#
# Needs Python with numpy and the PyPI package `gguf`, and, unless the binaries are
# given: cargo, cmake, a C++17 compiler, the Vulkan loader, headers and glslc (Debian:
# libvulkan-dev glslc spirv-headers). This llama.cpp needs Vulkan headers 1.3.261 or
# newer (VK_EXT_layer_settings); Debian 12 ships 1.3.239, so there point
# VULKAN_INCLUDE_DIR at newer ones, e.g. Debian 13's libvulkan-dev unpacked with
# `apt-get download libvulkan-dev/trixie && dpkg -x libvulkan-dev_*.deb DIR` (then
# VULKAN_INCLUDE_DIR=DIR/usr/include). Debian 12's glslc lacks the cooperative-matrix
# and integer-dot extensions, which llama.cpp's fast GPU paths need: give a newer one
# with GLSLC.
#
# Settings, from the environment:
#   RUNS     space-separated SHAPE:TYPE pairs; else every SHAPE with every TYPE of
#   SHAPES   comma-separated, of 350M 1.2B 2.6B 8B-A1B Qwen3-8B
#            (default 1.2B; 350M on a CPU adapter such as lavapipe)
#   TYPES    comma-separated, of F16 Q8_0 Q4_0 Q4_K_M Q1_0 Q2_0
#            (default F16,Q8_0,Q4_0,Q4_K_M)
#   LAYERS   fewer layers than published, for every model (where disk forces it)
#   PROMPT, GEN, REPEAT   tokens of the prompt, tokens generated, runs of each
#            (default 512, 128, 5; 64, 16, 2 on a CPU adapter, where a token takes
#            a large fraction of a second)
#   WORK     sources, builds, models and results (default target/bench)
#   OURS     a built lfm-edge binary (default: cargo build --release)
#   LLAMA_BIN            a folder holding a built llama-bench (default: build it)
#   LLAMA_CPP_PYTHON     the sdist version holding llama.cpp (default 0.3.36)
#   VULKAN_INCLUDE_DIR, GLSLC   Vulkan headers and glslc for the llama.cpp build
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-$REPO/target/bench}
VERSION=${LLAMA_CPP_PYTHON:-0.3.36}
TYPES=${TYPES:-F16,Q8_0,Q4_0,Q4_K_M}
mkdir -p "$WORK/src" "$WORK/results" "$WORK/models"

echo "== lfm-edge" >&2
if [[ -z ${OURS:-} ]]; then
    cargo build --release -p lfm-edge --manifest-path "$REPO/Cargo.toml" >&2
    OURS=${CARGO_TARGET_DIR:-$REPO/target}/release/lfm-edge
fi
adapter=$("$OURS" info --model "$REPO/models/lfm2-demo-Q8_0.gguf" --backend vulkan | sed -n 's/^adapter: //p')
echo "adapter: $adapter" >&2
if [[ $adapter == *", Cpu)" ]]; then
    SHAPES=${SHAPES:-350M} PROMPT=${PROMPT:-64} GEN=${GEN:-16} REPEAT=${REPEAT:-2}
    # llama.cpp skips CPU Vulkan devices unless they are named.
    export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
else
    SHAPES=${SHAPES:-1.2B} PROMPT=${PROMPT:-512} GEN=${GEN:-128} REPEAT=${REPEAT:-5}
fi
if [[ -z ${RUNS:-} ]]; then
    RUNS=$(for shape in ${SHAPES//,/ }; do for type in ${TYPES//,/ }; do echo -n "$shape:$type "; done; done)
fi

echo "== llama.cpp (llama-cpp-python $VERSION sdist), Vulkan backend" >&2
if [[ -z ${LLAMA_BIN:-} ]]; then
    LLAMA=$WORK/src/llama_cpp_python-$VERSION/vendor/llama.cpp
    if [[ ! -d $LLAMA ]]; then
        python3 -m pip download --no-binary :all: --no-deps -d "$WORK/src" "llama-cpp-python==$VERSION" >&2
        tar -xzf "$WORK/src/llama_cpp_python-$VERSION.tar.gz" -C "$WORK/src"
    fi
    options=()
    [[ -n ${VULKAN_INCLUDE_DIR:-} ]] && options+=(-DVulkan_INCLUDE_DIR="$VULKAN_INCLUDE_DIR")
    [[ -n ${GLSLC:-} ]] && options+=(-DVulkan_GLSLC_EXECUTABLE="$GLSLC")
    cmake -S "$LLAMA" -B "$LLAMA/build-vulkan" -DCMAKE_BUILD_TYPE=Release -DGGML_VULKAN=ON \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
        "${options[@]}" >&2
    cmake --build "$LLAMA/build-vulkan" --target llama-bench -j "$(nproc)" >&2
    LLAMA_BIN=$LLAMA/build-vulkan/bin
fi

echo "== models: $RUNS" >&2
for run in $RUNS; do
    model=$WORK/models/${run/:/-}.gguf
    if [[ ! -e $model ]]; then
        python3 "$REPO/scripts/bench/random_gguf.py" --shape "${run%%:*}" --type "${run##*:}" \
            --out "$model" ${LAYERS:+--layers "$LAYERS"} >&2 &
    fi
done
wait

results=$WORK/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
for run in $RUNS; do
    name=${run/:/-}
    echo "== $name: llama-bench, then lfm-edge bench (pp$PROMPT, tg$GEN, $REPEAT runs)" >&2
    "$LLAMA_BIN/llama-bench" -m "$WORK/models/$name.gguf" -p "$PROMPT" -n "$GEN" -r "$REPEAT" \
        -o json >"$results/$name.llama.json" || echo "llama-bench failed on $name" >&2
    "$OURS" bench --model "$WORK/models/$name.gguf" --backend vulkan --prompt-tokens "$PROMPT" \
        --gen-tokens "$GEN" --repeat "$REPEAT" >"$results/$name.ours.txt" || echo "lfm-edge failed on $name" >&2
done
python3 "$REPO/scripts/bench/table.py" "$results"
