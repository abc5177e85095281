// Causal grouped-query attention over the KV cache, one workgroup per (token, head).
// Keys are visited in blocks of WG with an online softmax (running max and sum), so
// any context length works in fixed workgroup memory. Token t of the batch sits at
// position step.pos + t and sees keys 0..=step.pos + t, whose rows the page table
// gives (kv.wgsl). The cache holds f32 values or f16 pairs packed in u32 words;
// WEIGHT_DTYPE says which. Queries are the first columns of a token's row of qkv, where
// the projection wrote q, k and v side by side.

struct Params {
    head_dim: u32,
    n_heads: u32,
    n_kv_heads: u32,
    scale: f32, // 1 / sqrt(head_dim)
    qkv_stride: u32, // elements from one token's row of qkv to the next
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;       // (n_tokens, qkv_stride): q's heads first
@group(0) @binding(1) var<storage, read> pages: array<u32>;     // position / BLOCK_TOKENS -> block
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;   // (blocks * BLOCK_TOKENS, n_kv_heads, head_dim)
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;   // (blocks * BLOCK_TOKENS, n_kv_heads, head_dim)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (n_tokens, n_heads, head_dim)
@group(0) @binding(5) var<uniform> params: Params;

const WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
const DIMS_PER_THREAD: u32 = 4u; // MAX_HEAD_DIM / WG

var<workgroup> q_row: array<f32, MAX_HEAD_DIM>;
var<workgroup> probs: array<f32, WG>;
var<workgroup> key_rows: array<u32, WG>; // cache rows of the block's keys

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg);
    let t = id / params.n_heads;
    let head = id % params.n_heads;
    if t >= step.n_tokens {
        return;
    }
    // Bounded by the buffer too, which changes nothing but keeps lavapipe from
    // recompiling the kernel at every launch (see moe.wgsl).
    let d = min(params.head_dim, arrayLength(&qkv));
    let kv_head = head / (params.n_heads / params.n_kv_heads);
    let kv_stride = params.n_kv_heads * d;
    let q_base = t * params.qkv_stride + head * d;
    for (var i = lid; i < d; i += WG) {
        q_row[i] = qkv[q_base + i] * params.scale;
    }
    workgroupBarrier();

    let n_keys = step.pos + t + 1u;
    var running_max = -3.0e38;
    var running_sum = 0.0;
    var acc: array<f32, DIMS_PER_THREAD>;
    for (var block = 0u; block < n_keys; block += WG) {
        // Each thread scores one key of the block.
        let key = block + lid;
        var score = -3.0e38;
        if key < n_keys {
            key_rows[lid] = kv_row(key);
            let k_base = key_rows[lid] * kv_stride + kv_head * d;
            score = 0.0;
            for (var i = 0u; i < d; i++) {
                let e = k_base + i;
                score += q_row[i] * weight_value(k_cache[weight_word(e)], e);
            }
        }
        probs[lid] = score;
        workgroupBarrier();
        var block_max = running_max;
        for (var j = 0u; j < WG; j++) {
            block_max = max(block_max, probs[j]);
        }
        workgroupBarrier();
        let p = select(0.0, exp(score - block_max), key < n_keys);
        probs[lid] = p;
        workgroupBarrier();
        let rescale = exp(running_max - block_max);
        var block_sum = 0.0;
        for (var j = 0u; j < WG; j++) {
            block_sum += probs[j];
        }
        running_sum = running_sum * rescale + block_sum;
        running_max = block_max;
        // Each thread accumulates its own dimensions over the block's keys.
        let block_keys = min(WG, n_keys - block);
        for (var r = 0u; r < DIMS_PER_THREAD; r++) {
            let dim = lid + r * WG;
            if dim < d {
                var a = acc[r] * rescale;
                for (var j = 0u; j < block_keys; j++) {
                    let e = key_rows[j] * kv_stride + kv_head * d + dim;
                    a += probs[j] * weight_value(v_cache[weight_word(e)], e);
                }
                acc[r] = a;
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < DIMS_PER_THREAD; r++) {
        let dim = lid + r * WG;
        if dim < d {
            out[(t * params.n_heads + head) * d + dim] = acc[r] / running_sum;
        }
    }
}
