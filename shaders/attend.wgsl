// Causal attention over the KV cache, prepended (after kv.wgsl) to attention.wgsl and
// rope.wgsl (whose `token` entry rotates a token's q and k and attends in the same
// launch). The including kernel declares `k_cache`, `v_cache` (u32 words of
// WEIGHT_DTYPE, kv.wgsl), `pages` and `out`, and runs ATTEND_WG threads.
// A workgroup attends with the HEADS query heads of one kv head (a GQA group, or part
// of it) of TOKENS consecutive tokens at once, so that each key and value it loads
// serves all of those queries; each query sees the keys before its own end. Keys are
// visited in blocks of ATTEND_WG with an online softmax (running max and sum), so any
// context length works in fixed workgroup memory; a workgroup may take a range of the
// keys, its result then being a partial one (`Attended`) that a later launch combines
// with the other ranges'.

const ATTEND_WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
const DIMS_PER_THREAD: u32 = 4u; // MAX_HEAD_DIM / ATTEND_WG
// Queries per workgroup (heads × tokens), and their elements (queries × head_dim);
// ops/attention.rs mirrors both.
const MAX_QUERIES: u32 = 8u;
const MAX_QUERY: u32 = 1024u;
override HEADS: u32 = 1u;
override TOKENS: u32 = 1u;
override QUERIES: u32 = HEADS * TOKENS;

// Query g (head g % HEADS of token g / HEADS) at g × d, scaled by 1/sqrt(d).
var<workgroup> q_rows: array<f32, MAX_QUERY>;
var<workgroup> probs: array<f32, MAX_QUERIES * ATTEND_WG>; // query g's at g × ATTEND_WG
var<workgroup> key_rows: array<u32, ATTEND_WG>; // cache rows of the block's keys
// The newest key and value, where they are not yet in the cache for every workgroup
// (`fresh`): as the cache holds them, rounded to its element type.
var<workgroup> k_fresh: array<f32, MAX_HEAD_DIM>;
var<workgroup> v_fresh: array<f32, MAX_HEAD_DIM>;

alias QueryValues = array<f32, MAX_QUERIES>;
alias QueryEnds = array<u32, MAX_QUERIES>;

// Where a workgroup's attention stands after its keys, for each of its queries: the
// largest score, Σ exp(score - largest), and this thread's dimensions (lid + r ×
// ATTEND_WG) of Σ exp(score - largest) · value.
struct Attended {
    largest: QueryValues,
    total: QueryValues,
    acc: array<array<f32, DIMS_PER_THREAD>, MAX_QUERIES>,
}

// Elements e and e + 1 (e even) of the key cache: one word of an f16 cache.
fn cached_k_pair(e: u32) -> vec2<f32> {
    if WEIGHT_DTYPE == DTYPE_F16 {
        return weight_pair(k_cache[e / 2u]);
    }
    return vec2<f32>(bitcast<f32>(k_cache[e]), bitcast<f32>(k_cache[e + 1u]));
}

// Element e of the value cache.
fn cached_v(e: u32) -> f32 {
    return weight_value(v_cache[weight_word(e)], e);
}

// Attention of the queries in q_rows over keys first .. end of the kv head whose
// elements start at `kv_col` of a cache row of `kv_stride` elements, query g seeing
// those before ends[g] (at most `end`); key `newest` is k_fresh and v_fresh instead of
// the cache's (0xffffffff: none).
fn attend(inv: Invocation, first: u32, end: u32, ends: QueryEnds, newest: u32, d: u32,
          kv_col: u32, kv_stride: u32) -> Attended {
    let lid = inv.index;
    var a: Attended;
    for (var g = 0u; g < QUERIES; g++) {
        a.largest[g] = -3.0e38;
    }
    for (var block = first; block < end; block += ATTEND_WG) {
        // Each thread scores one key of the block, for every query.
        let key = block + lid;
        var scores: GroupSums;
        if key < end {
            key_rows[lid] = kv_row(key);
            let k_base = key_rows[lid] * kv_stride + kv_col;
            // A pair of elements per load (head_dim is even, rows start at even elements).
            for (var i = 0u; i < d; i += 2u) {
                let fresh = vec2<f32>(k_fresh[i], k_fresh[i + 1u]);
                let k = select(cached_k_pair(k_base + i), fresh, key == newest);
                for (var g = 0u; g < QUERIES; g++) {
                    scores[g] += q_rows[g * d + i] * k.x;
                    scores[g] += q_rows[g * d + i + 1u] * k.y;
                }
            }
        }
        for (var g = 0u; g < QUERIES; g++) {
            scores[g] = select(-3.0e38, scores[g], key < ends[g]);
        }
        var block_max = scores;
        group_reduce(inv, ATTEND_WG, ATTEND_WG, &block_max, QUERIES, MAX);
        var block_sum: GroupSums;
        for (var g = 0u; g < QUERIES; g++) {
            block_max[g] = max(a.largest[g], block_max[g]);
            block_sum[g] = select(0.0, exp(scores[g] - block_max[g]), key < ends[g]);
            probs[g * ATTEND_WG + lid] = block_sum[g];
        }
        // Its barriers also make every thread's probs and key_rows visible.
        group_sums(inv, ATTEND_WG, ATTEND_WG, &block_sum, QUERIES);
        var rescale: QueryValues;
        for (var g = 0u; g < QUERIES; g++) {
            rescale[g] = exp(a.largest[g] - block_max[g]);
            a.total[g] = a.total[g] * rescale[g] + block_sum[g];
            a.largest[g] = block_max[g];
        }
        // Each thread accumulates its own dimensions over the block's keys.
        let block_keys = min(ATTEND_WG, end - block);
        for (var r = 0u; r < DIMS_PER_THREAD; r++) {
            let dim = lid + r * ATTEND_WG;
            if dim < d {
                var sums: QueryValues;
                for (var g = 0u; g < QUERIES; g++) {
                    sums[g] = a.acc[g][r] * rescale[g];
                }
                for (var j = 0u; j < block_keys; j++) {
                    let e = key_rows[j] * kv_stride + kv_col + dim;
                    let v = select(cached_v(e), v_fresh[dim], block + j == newest);
                    for (var g = 0u; g < QUERIES; g++) {
                        sums[g] += probs[g * ATTEND_WG + j] * v;
                    }
                }
                for (var g = 0u; g < QUERIES; g++) {
                    a.acc[g][r] = sums[g];
                }
            }
        }
        workgroupBarrier();
    }
    return a;
}

// Query g's attention output, from a workgroup that took all the keys: out[base + dim].
fn write_attended(lid: u32, a: Attended, g: u32, d: u32, base: u32) {
    for (var r = 0u; r < DIMS_PER_THREAD; r++) {
        let dim = lid + r * ATTEND_WG;
        if dim < d {
            out[base + dim] = a.acc[g][r] / a.total[g];
        }
    }
}
