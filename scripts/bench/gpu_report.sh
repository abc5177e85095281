#!/usr/bin/env bash
# Everything a GPU run reports, on a machine that has the GPU but no toolchain: built
# binaries in, a report folder out.
#
#   OURS=bin/lfm-edge LLAMA_BIN=bin [TESTS="bin/test-*"] scripts/bench/gpu_report.sh OUT
#
# 1. The adapter (`lfm-edge info`).
# 2. Test binaries built elsewhere (`cargo test --release --no-run`, e.g. reference,
#    kernels, linear, lowbit, moe), run here: correctness on this GPU. They find the
#    fixtures through the path they were built at, so run from a checkout at that path
#    (or a link to it).
# 3. compare.sh on RUNS (default: LFM2 350M and 1.2B in F16, Q8_0, Q4_0, Q4_K_M,
#    8B-A1B in Q4_0 and Q4_K_M, Qwen3-8B in Q1_0), prompt 512, 128 generated, 3 runs.
# 4. `bench --profile` of a dense, a MoE and a 1-bit model: time per kernel family, of
#    a decoded token and of a 512-token prompt's batch.
# 5. The same three with sums by subgroups and by a tree (`bench --sums`), where the
#    adapter has subgroup operations.
# 6. A sweep of decode's matvec launch shapes (`bench --matvec-launch`) on the same
#    three, to check `Tuning::GPU` and `Tuning::GPU_SUBGROUPS` on this GPU, and rows
#    sharing each x load (2 and 4 rows per thread, a workgroup per row set, so that
#    the sums stay subgroup sums): decode, and the matvec alone on a large matrix.
# 7. Prefill of 512 and of 64 tokens (a MoE batch's experts then get 8 slots each) by
#    each projection kernel (`bench --prefill-launch`): the tiled one, the GPU's,
#    against blocks of rows × tokens in registers, the CPU adapters'; llama.cpp's
#    beside them.
# 8. Decode at a depth of 4096 tokens (`bench --depth`, llama-bench's `-d`) on the
#    dense and the MoE model: ours with the adapter's key ranges, with a single range
#    (`--key-ranges 1,256`) and with smaller ones, llama.cpp's, and our profile there.
#
# Each step has a time limit, so that a slow or hanging step leaves the others' results.
# Needs Python with numpy and the PyPI package `gguf` (random_gguf.py writes the models).
set -uo pipefail

OUT=${1:?usage: gpu_report.sh OUT}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
: "${OURS:?OURS: a built lfm-edge}" "${LLAMA_BIN:?LLAMA_BIN: a folder holding llama-bench}"
WORK=${WORK:-$REPO/target/bench}
mkdir -p "$OUT" "$WORK/models"
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }

echo "== adapter"
"$OURS" info --model "$REPO/models/lfm2-demo-Q8_0.gguf" --backend vulkan 2>&1 | tee "$OUT/adapter.txt"

echo "== tests"
for test in ${TESTS:-}; do
    echo "== $test"
    timeout 120 "$test" --test-threads 4 2>&1 | grep -E "^test .*FAILED|test result|panicked"
done | tee "$OUT/tests.txt"

echo "== compare ($(elapsed) s)"
RUNS=${RUNS:-"350M:F16 350M:Q8_0 350M:Q4_0 350M:Q4_K_M 1.2B:F16 1.2B:Q8_0 1.2B:Q4_0 1.2B:Q4_K_M 8B-A1B:Q4_0 8B-A1B:Q4_K_M Qwen3-8B:Q1_0"}
OURS=$OURS LLAMA_BIN=$LLAMA_BIN WORK=$WORK RUNS=$RUNS PROMPT=${PROMPT:-512} GEN=${GEN:-128} \
    REPEAT=${REPEAT:-3} timeout "${COMPARE_TIMEOUT:-360}" bash "$REPO/scripts/bench/compare.sh" \
    >"$OUT/table.md" 2>"$OUT/compare.log"
cat "$OUT/table.md"

PROFILED=${PROFILED:-"1.2B-Q4_0 8B-A1B-Q4_0 Qwen3-8B-Q1_0"}
echo "== profile ($(elapsed) s)"
for name in $PROFILED; do
    echo "== $name"
    timeout 60 "$OURS" bench --model "$WORK/models/$name.gguf" --backend vulkan \
        --prompt-tokens 512 --gen-tokens 32 --repeat 1 --profile 2>&1 | grep -v "^\[20"
done | tee "$OUT/profile.txt"

echo "== sums: subgroups against a tree in workgroup memory ($(elapsed) s)"
for sums in subgroups workgroup; do
    for name in $PROFILED; do
        echo "$sums $name $(timeout 60 "$OURS" bench --model "$WORK/models/$name.gguf" \
            --backend vulkan --prompt-tokens 16 --gen-tokens 64 --repeat 2 \
            --sums "$sums" 2>&1 | grep "decode tok/s")"
    done
done | tee "$OUT/sums.txt"

echo "== matvec launch shapes ($(elapsed) s)"
for shape in 256,64,1 64,64,1 64,64,2 64,64,4 32,32,4 128,64,2 64,32,4 256,32,1; do
    for name in $PROFILED; do
        echo "$shape $name $(timeout 60 "$OURS" bench --model "$WORK/models/$name.gguf" \
            --backend vulkan --prompt-tokens 16 --gen-tokens 64 --repeat 2 \
            --matvec-launch "$shape" 2>&1 | grep -E "^(decode tok/s|matvec probe)" | tr '\n' ' ')"
    done
done | tee "$OUT/shapes.txt"

echo "== prefill kernels ($(elapsed) s)"
for prompt in 512 64; do
    for name in ${PREFILLED:-"1.2B-Q4_0 8B-A1B-Q4_0"}; do
        model="$WORK/models/$name.gguf"
        for launch in tiled 32,4,16 64,2,16 128,1,8; do
            echo "$launch $name $(timeout 60 "$OURS" bench --model "$model" --backend vulkan \
                --prompt-tokens "$prompt" --gen-tokens 1 --repeat 2 \
                --prefill-launch "$launch" 2>&1 | grep "prefill tok/s")"
        done
        echo "llama.cpp $name $(timeout 60 "$LLAMA_BIN/llama-bench" -m "$model" -p "$prompt" \
            -n 0 -r 2 -o md 2>/dev/null | grep -E "pp$prompt")"
    done
done | tee "$OUT/prefill.txt"

echo "== decode at a depth of ${DEPTH:-4096} ($(elapsed) s)"
for name in ${DEEP:-"1.2B-Q4_0 8B-A1B-Q4_0"}; do
    model="$WORK/models/$name.gguf"
    for ranges in default 1,256 8,64; do
        split=()
        [ "$ranges" = default ] || split=(--key-ranges "$ranges")
        echo "ours $ranges $name $(timeout 90 "$OURS" bench --model "$model" --backend vulkan \
            --depth "${DEPTH:-4096}" --prompt-tokens 64 --gen-tokens 64 --repeat 2 \
            ${split[@]+"${split[@]}"} 2>&1 | grep "^decode tok/s")"
    done
    echo "llama.cpp $name $(timeout 90 "$LLAMA_BIN/llama-bench" -m "$model" -p 0 -n 64 \
        -d "${DEPTH:-4096}" -r 2 -o md 2>/dev/null | grep -E "tg64")"
    echo "== profile at that depth: $name"
    timeout 90 "$OURS" bench --model "$model" --backend vulkan --depth "${DEPTH:-4096}" \
        --prompt-tokens 16 --gen-tokens 16 --repeat 1 --profile 2>&1 | grep -v "^\[20"
done | tee "$OUT/depth.txt"
echo "== done ($(elapsed) s)"
