// Sparse mixture-of-experts routing for LFM2-MoE, around the expert matmuls:
// route:   a workgroup per token, its threads sharing the token's experts: sigmoid
//          router scores; the top-k experts by score + expert bias; their weights are
//          the scores without the bias, normalised to sum 1 when norm_topk_prob, times
//          routed_scaling_factor (as transformers' Lfm2MoeTopKRouter).
// lists:   a workgroup per expert: the list of a batch's routed slots (t * top_k + s)
//          that chose it, in order, so that a batch's matmul reads each expert's
//          weights once (a single token's expert matvecs read `routes` alone).
// combine: x[t] += sum_s weight[t, s] * expert_out[t * top_k + s], the residual add of a
//          batch (a single token's down projection adds its slots into x itself).
// token:   a single token's router projection and routing in one launch: the logits
//          from the residual stream x, normalized by the layer's feed-forward RMSNorm on
//          the way (float router weights: GGUF keeps the router f32), then as route.
//
// Mesa 22's lavapipe substitutes the values of uniforms that alone decide a branch or
// bound a loop, and where that halves the kernel or unrolls its loops (a few experts,
// a small top-k) it compiles the kernel again at every dispatch: milliseconds each, ten
// times a token's weights on an 8-expert model. So loop bounds here are clamped by
// buffer lengths (arrayLength: a bounds check too) and uniform flags feed selects.

struct Params {
    n_experts: u32,
    top_k: u32,
    hidden: u32,
    norm_topk_prob: u32,
    routed_scaling: f32,
    use_bias: u32,
    norm_eps: f32, // token: the feed-forward RMSNorm's epsilon
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> router_logits: array<f32>; // (n_tokens, n_experts)
@group(0) @binding(1) var<storage, read> expert_bias: array<u32>;   // (n_experts) or unused
@group(0) @binding(2) var<storage, read> expert_out: array<f32>;    // (n_tokens * top_k, hidden)
@group(0) @binding(3) var<storage, read_write> routes: array<u32>;  // (n_tokens, top_k, 2): expert, weight bits
@group(0) @binding(4) var<storage, read_write> slots: array<u32>;   // counts (n_experts), lists (n_experts, n_tokens)
@group(0) @binding(5) var<storage, read_write> x: array<f32>;       // (n_tokens, hidden)
// token: (n_experts, hidden), its rows whole vectors (ops/moe.rs checks the width).
@group(0) @binding(6) var<storage, read> router: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> norm: array<u32>;          // token: (hidden) RMSNorm weight
@group(0) @binding(8) var<uniform> params: Params;

const WG: u32 = 64u;
override NORM_DTYPE: u32 = DTYPE_F32;

// Experts and slots per token, as many as the buffers hold.
fn n_experts() -> u32 {
    return min(params.n_experts, arrayLength(&router_logits));
}

fn top_k() -> u32 {
    return min(params.top_k, arrayLength(&routes) / 2u);
}

// Scratch of one token's routing, one entry per expert (config/mod.rs's MAX_EXPERTS).
const MAX_EXPERTS: u32 = 256u;
var<workgroup> logits: array<f32, MAX_EXPERTS>;
var<workgroup> keys: array<f32, MAX_EXPERTS>;
var<workgroup> scores: array<f32, MAX_EXPERTS>;
var<workgroup> ranks: array<u32, MAX_EXPERTS>;

fn score(e: u32) -> f32 {
    return 1.0 / (1.0 + exp(-logits[e]));
}

// What experts are ranked by: the score, plus the expert's bias where the model has one
// (a select, not a branch on the uniform: lavapipe would specialise that too).
fn key(e: u32) -> f32 {
    let word = min(float_word(BIAS_DTYPE, e), arrayLength(&expert_bias) - 1u);
    let bias = float_value(BIAS_DTYPE, expert_bias[word], e);
    return score(e) + select(0.0, bias, params.use_bias == 1u);
}

// Token t's top-k experts and their weights, from its router logits in `logits`, into
// routes, by the `stride` threads of the workgroup: each thread ranks its experts in the
// order (key descending, index ascending), and the experts ranked below k are the
// picks, pick s the expert of rank s. A NaN key ranks last, so the ranks are always a
// permutation.
fn pick_experts(t: u32, lid: u32, stride: u32) {
    let experts = min(n_experts(), MAX_EXPERTS);
    let k = top_k();
    for (var e = lid; e < experts; e += stride) {
        let key = key(e);
        keys[e] = select(key, -3.0e38, key != key);
        scores[e] = score(e);
    }
    workgroupBarrier();
    for (var e = lid; e < experts; e += stride) {
        var rank = 0u;
        for (var j = 0u; j < experts; j++) {
            let ahead = keys[j] > keys[e] || (keys[j] == keys[e] && j < e);
            rank += select(0u, 1u, ahead);
        }
        ranks[e] = rank;
    }
    workgroupBarrier();
    // Every thread sums the picks' scores in the same order, so all agree.
    var total = 0.0;
    for (var e = 0u; e < experts; e++) {
        total += select(0.0, scores[e], ranks[e] < k);
    }
    let scale = select(1.0, 1.0 / (total + 1e-6), params.norm_topk_prob == 1u) * params.routed_scaling;
    for (var e = lid; e < experts; e += stride) {
        if ranks[e] < k {
            let slot = t * k + ranks[e];
            routes[slot * 2u] = e;
            routes[slot * 2u + 1u] = bitcast<u32>(scores[e] * scale);
        }
    }
    workgroupBarrier(); // the next token overwrites the scratch
}

@compute @workgroup_size(WG)
fn route(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = flat_workgroup(wid, nwg);
    if t >= step.n_tokens {
        return;
    }
    for (var e = lid; e < min(n_experts(), MAX_EXPERTS); e += WG) {
        logits[e] = router_logits[t * params.n_experts + e];
    }
    workgroupBarrier();
    pick_experts(t, lid, WG);
}

// Each thread's count of the expert's slots, then the counts of the threads before it.
const SCAN_ROUNDS: u32 = 6u;
const_assert((1u << SCAN_ROUNDS) == WG);
var<workgroup> counts: array<u32, WG>;

@compute @workgroup_size(WG)
fn lists(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let e = flat_workgroup(wid, nwg);
    if e >= n_experts() {
        return;
    }
    // Thread lid looks at a run of consecutive slots, so that its slots' places in the
    // list follow from the counts of the threads before it.
    let slot_count = step.n_tokens * top_k();
    let run = (slot_count + WG - 1u) / WG;
    let first = min(lid * run, slot_count);
    let end = min(first + run, slot_count);
    var count = 0u;
    for (var slot = first; slot < end; slot++) {
        count += select(0u, 1u, routes[slot * 2u] == e);
    }
    // An inclusive scan of the counts (Hillis-Steele).
    counts[lid] = count;
    workgroupBarrier();
    for (var r = 0u; r < SCAN_ROUNDS; r++) {
        let d = 1u << r;
        let before = select(0u, counts[max(lid, d) - d], lid >= d);
        workgroupBarrier();
        counts[lid] += before;
        workgroupBarrier();
    }
    var at = params.n_experts + e * step.n_tokens + counts[lid] - count;
    for (var slot = first; slot < end; slot++) {
        if routes[slot * 2u] == e {
            slots[at] = slot;
            at++;
        }
    }
    if lid == WG - 1u {
        slots[e] = counts[lid];
    }
}

@compute @workgroup_size(WG)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * WG + lid;
    if i >= step.n_tokens * params.hidden {
        return;
    }
    let t = i / params.hidden;
    let c = i % params.hidden;
    var sum = 0.0;
    for (var s = 0u; s < top_k(); s++) {
        let slot = t * params.top_k + s;
        sum += bitcast<f32>(routes[slot * 2u + 1u]) * expert_out[slot * params.hidden + c];
    }
    x[i] += sum;
}

// x ⊙ norm weight, X_CHUNK elements at a time, shared by every expert's threads.
const X_CHUNK: u32 = 4u * REDUCE_WG;
var<workgroup> normed_chunk: array<vec4<f32>, REDUCE_WG>;

// The router's row e dotted with x ⊙ norm weight, from `stride` threads (lane `lane` of
// them); the caller scales by 1/rms. Every thread of the workgroup calls it: each
// chunk of x ⊙ norm weight is computed once, a vector per thread, into workgroup
// memory. A vector of the router holds 4 f32 weights or 8 halves (ops/moe.rs keeps
// rows whole vectors): one load each, so that the launch's one workgroup keeps many
// bytes in flight.
fn router_dot(lid: u32, e: u32, lane: u32, stride: u32, hidden: u32) -> f32 {
    let per_vector = select(8u, 4u, WEIGHT_DTYPE == DTYPE_F32);
    let row = e * (hidden / per_vector);
    var sum = vec4<f32>(0.0);
    for (var start = 0u; start < hidden; start += X_CHUNK) {
        workgroupBarrier(); // the chunk before is read
        let i = start + 4u * lid;
        normed_chunk[lid] = select(vec4<f32>(0.0), normed4(i), i < hidden);
        workgroupBarrier();
        let vectors = min(hidden - start, X_CHUNK) / per_vector;
        let first = row + start / per_vector;
        for (var v = lane; v < vectors; v += stride) {
            let w = router[first + v];
            if WEIGHT_DTYPE == DTYPE_F32 {
                sum += bitcast<vec4<f32>>(w) * normed_chunk[v];
            } else {
                sum += vec4<f32>(weight_pair(w.x), weight_pair(w.y)) * normed_chunk[2u * v];
                sum += vec4<f32>(weight_pair(w.z), weight_pair(w.w)) * normed_chunk[2u * v + 1u];
            }
        }
    }
    return dot(sum, vec4<f32>(1.0));
}

// x[i .. i + 4] times the norm weight (before 1/rms).
fn normed4(i: u32) -> vec4<f32> {
    var v: vec4<f32>;
    for (var j = 0u; j < 4u; j++) {
        let k = i + j;
        v[j] = x[k] * float_value(NORM_DTYPE, norm[float_word(NORM_DTYPE, k)], k);
    }
    return v;
}

@compute @workgroup_size(REDUCE_WG)
fn token(inv: Invocation) {
    let lid = inv.index;
    let hidden = min(params.hidden, arrayLength(&x));
    var squares = 0.0;
    for (var i = lid; i < hidden; i += REDUCE_WG) {
        squares += x[i] * x[i];
    }
    let inv_rms = inverseSqrt(workgroup_sum(inv, squares, REDUCE_WG) / f32(hidden) + params.norm_eps);
    // A power of two `stride` of threads per expert, as many as the experts leave: 8
    // each for 32 experts, 1 for 256.
    let experts = min(n_experts(), MAX_EXPERTS);
    let stride = REDUCE_WG >> (32u - countLeadingZeros(max(experts, 1u) - 1u));
    let e = lid / stride;
    let lane = lid % stride;
    var dot: GroupSums;
    dot[0] = select(0.0, router_dot(lid, min(e, experts - 1u), lane, stride, hidden), e < experts);
    group_sums(inv, stride, REDUCE_WG, &dot, 1u);
    if lane == 0u && e < experts {
        logits[e] = dot[0] * inv_rms;
    }
    workgroupBarrier();
    pick_experts(0u, lid, REDUCE_WG);
}
