// One token's causal attention over the KV cache, prepended (after kv.wgsl) to
// attention.wgsl and rope.wgsl (whose `token` entry rotates a token's q and k and
// attends in the same launch). The including kernel declares `k_cache`, `v_cache` (u32
// words of WEIGHT_DTYPE, kv.wgsl), `pages` and `out`, and runs ATTEND_WG threads.
// Keys are visited in blocks of ATTEND_WG with an online softmax (running max and
// sum), so any context length works in fixed workgroup memory.

const ATTEND_WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
const DIMS_PER_THREAD: u32 = 4u; // MAX_HEAD_DIM / ATTEND_WG

var<workgroup> q_row: array<f32, MAX_HEAD_DIM>; // the query, scaled by 1/sqrt(d)
var<workgroup> probs: array<f32, ATTEND_WG>;
var<workgroup> key_rows: array<u32, ATTEND_WG>; // cache rows of the block's keys
// The newest key and value, where they are not yet in the cache for every workgroup
// (`fresh`): as the cache holds them, rounded to its element type.
var<workgroup> k_fresh: array<f32, MAX_HEAD_DIM>;
var<workgroup> v_fresh: array<f32, MAX_HEAD_DIM>;

// Element e of the key (or value) cache.
fn cached_k(e: u32) -> f32 {
    return weight_value(k_cache[weight_word(e)], e);
}

fn cached_v(e: u32) -> f32 {
    return weight_value(v_cache[weight_word(e)], e);
}

// out[out_base .. + d] = softmax(q_row · keysᵀ) · values over keys 0 .. n_keys of the
// kv head whose elements start at `kv_col` of a cache row of `kv_stride` elements.
// With `fresh`, the last key and value are k_fresh and v_fresh instead of the cache's.
fn attend(inv: Invocation, n_keys: u32, d: u32, kv_col: u32, kv_stride: u32, out_base: u32,
          fresh: bool) {
    let lid = inv.index;
    var running_max = -3.0e38;
    var running_sum = 0.0;
    var acc: array<f32, DIMS_PER_THREAD>;
    let newest = select(0xffffffffu, n_keys - 1u, fresh);
    for (var block = 0u; block < n_keys; block += ATTEND_WG) {
        // Each thread scores one key of the block.
        let key = block + lid;
        var score = -3.0e38;
        if key < n_keys {
            key_rows[lid] = kv_row(key);
            let k_base = key_rows[lid] * kv_stride + kv_col;
            score = 0.0;
            for (var i = 0u; i < d; i++) {
                let k = select(cached_k(k_base + i), k_fresh[i], key == newest);
                score += q_row[i] * k;
            }
        }
        let block_max = max(running_max, workgroup_max(inv, score, ATTEND_WG));
        let p = select(0.0, exp(score - block_max), key < n_keys);
        probs[lid] = p;
        // Its barriers also make every thread's probs and key_rows visible.
        let block_sum = workgroup_sum(inv, p, ATTEND_WG);
        let rescale = exp(running_max - block_max);
        running_sum = running_sum * rescale + block_sum;
        running_max = block_max;
        // Each thread accumulates its own dimensions over the block's keys.
        let block_keys = min(ATTEND_WG, n_keys - block);
        for (var r = 0u; r < DIMS_PER_THREAD; r++) {
            let dim = lid + r * ATTEND_WG;
            if dim < d {
                var a = acc[r] * rescale;
                for (var j = 0u; j < block_keys; j++) {
                    let e = key_rows[j] * kv_stride + kv_col + dim;
                    let v = select(cached_v(e), v_fresh[dim], block + j == newest);
                    a += probs[j] * v;
                }
                acc[r] = a;
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < DIMS_PER_THREAD; r++) {
        let dim = lid + r * ATTEND_WG;
        if dim < d {
            out[out_base + dim] = acc[r] / running_sum;
        }
    }
}
