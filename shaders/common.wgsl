// Shared by every kernel; prepended to each kernel's own file.

// Weights stay at their file precision in VRAM, packed in u32 words.
// WEIGHT_DTYPE says how to unpack them (DType::shader_code on the Rust side), BIAS_DTYPE
// the same for a bias, which may differ (GGUF keeps biases f32 beside quantized weights).
const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;
override WEIGHT_DTYPE: u32 = DTYPE_F32;
override BIAS_DTYPE: u32 = DTYPE_F32;

// The u32 word that holds element `i` of a float tensor of `dtype`.
fn float_word(dtype: u32, i: u32) -> u32 {
    if dtype == DTYPE_F32 {
        return i;
    }
    return i >> 1u;
}

fn weight_word(i: u32) -> u32 {
    return float_word(WEIGHT_DTYPE, i);
}

// IEEE halves become f32 through `f16_bits_to_f32` and `f16_pair`, defined by
// half_hardware.wgsl or half_integer.wgsl, whichever the device can run.

// Element `i` of a float tensor of `dtype`, given the word that holds it. 16-bit
// elements are little-endian: the even element is the low half.
fn float_value(dtype: u32, word: u32, i: u32) -> f32 {
    if dtype == DTYPE_F32 {
        return bitcast<f32>(word);
    }
    let high = (i & 1u) == 1u;
    let half = select(word & 0xffffu, word >> 16u, high);
    if dtype == DTYPE_F16 {
        return f16_bits_to_f32(half);
    }
    return bitcast<f32>(half << 16u);
}

fn weight_value(word: u32, i: u32) -> f32 {
    return float_value(WEIGHT_DTYPE, word, i);
}

// Both elements of a word of a 16-bit `dtype` (F16 or BF16), even element first.
fn float_pair(dtype: u32, word: u32) -> vec2<f32> {
    if dtype == DTYPE_F16 {
        return f16_pair(word);
    }
    return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}

fn weight_pair(word: u32) -> vec2<f32> {
    return float_pair(WEIGHT_DTYPE, word);
}

// Per-forward values, written once before each batch (StepUniform on the Rust side).
struct Step {
    n_tokens: u32, // tokens in this batch
    pos: u32,      // cache position of the batch's first token
    _pad0: u32,
    _pad1: u32,
}
@group(1) @binding(0) var<uniform> step: Step;

// Workgroup counts above the per-dimension limit spill into y (Dispatch::encode).
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Sums and maxima across invocations: `group_reduce` (reduce_subgroups.wgsl or
// reduce_workgroup.wgsl, whichever the device can run) combines each of up to
// GROUP_VALUES values over groups of consecutive invocations, by `op`; a group is a
// power of two dividing the workgroup, at most REDUCE_WG, and group × values fit the
// scratch.
const REDUCE_WG: u32 = 256u;
const GROUP_VALUES: u32 = 32u;
alias GroupSums = array<f32, GROUP_VALUES>;
var<workgroup> group_scratch: array<f32, 1024>;
const SUM: u32 = 0u;
const MAX: u32 = 1u;

fn reduce_pair(op: u32, a: f32, b: f32) -> f32 {
    return select(a + b, max(a, b), op == MAX);
}

fn group_sums(inv: Invocation, group: u32, threads: u32, values: ptr<function, GroupSums>,
              count: u32) {
    group_reduce(inv, group, threads, values, count, SUM);
}

// group_reduce through workgroup memory: each round the lower half of a group's
// invocations combines the upper half's values into its own. Every invocation then
// reads its group's.
fn tree_reduce(lid: u32, group: u32, values: ptr<function, GroupSums>, count: u32, op: u32) {
    if group == 1u {
        return;
    }
    workgroupBarrier(); // earlier readers of group_scratch are done
    for (var v = 0u; v < count; v++) {
        group_scratch[lid * count + v] = (*values)[v];
    }
    workgroupBarrier();
    let lane = lid % group;
    for (var half = group / 2u; half > 0u; half >>= 1u) {
        if lane < half {
            for (var v = 0u; v < count; v++) {
                let at = lid * count + v;
                let other = group_scratch[at + half * count];
                group_scratch[at] = reduce_pair(op, group_scratch[at], other);
            }
        }
        workgroupBarrier();
    }
    for (var v = 0u; v < count; v++) {
        (*values)[v] = group_scratch[(lid - lane) * count + v];
    }
}

// Sum of `value` over a workgroup of `threads` invocations; every invocation gets it.
fn workgroup_sum(inv: Invocation, value: f32, threads: u32) -> f32 {
    return workgroup_reduce(inv, value, threads, SUM);
}

// The largest `value` of a workgroup of `threads` invocations, to every invocation.
fn workgroup_max(inv: Invocation, value: f32, threads: u32) -> f32 {
    return workgroup_reduce(inv, value, threads, MAX);
}

fn workgroup_reduce(inv: Invocation, value: f32, threads: u32, op: u32) -> f32 {
    var values: GroupSums;
    values[0] = value;
    group_reduce(inv, threads, threads, &values, 1u, op);
    return values[0];
}
