// Per-head RMSNorm (where the model has q/k norms) followed by rotary position
// embedding for the q and the k heads of a batch in one launch; for q, then Llama 4's
// attention temperature where the model has one (Ministral 3). q, k and v are columns
// of one row per token (a projection writes them side by side): q's heads from column
// 0, k's from k_col, v's from v_col. q and k are rotated in place (attention reads q
// there); the rotated keys, and the values, also join the KV cache: token t's become
// position step.pos + t, in the block the page table gives, stored as the cache's
// element type (kv.wgsl), so that the store takes no launch of its own.
// RoPE is the rotate-half form: element i pairs with i + head_dim/2. The cos/sin table
// is computed once on the CPU in f32, as transformers does, so long positions keep
// their precision; YaRN's attention factor scales cos and sin here, as transformers
// scales its cos/sin. One workgroup per (token, head), q's heads first; k head h's
// also stores v head h. A thread takes elements i, i + 1 (i even) with their partners
// i + d/2, i + 1 + d/2 (head_dim a multiple of 4), the pairs an f16 cache packs in a word.

struct Params {
    head_dim: u32,
    n_heads: u32,    // q's
    n_kv_heads: u32, // k's and v's
    eps: f32,
    has_q_norm: u32,
    has_k_norm: u32,
    attention_factor: f32,
    temperature_beta: f32, // 0: no temperature
    temperature_floor: u32,
    qkv_stride: u32, // elements from one token's row of qkv to the next
    k_col: u32,      // k's first column
    v_col: u32,      // v's first column
}

@group(0) @binding(0) var<storage, read> q_norm: array<u32>;        // (head_dim): q_layernorm
@group(0) @binding(1) var<storage, read> k_norm: array<u32>;        // (head_dim): k_layernorm
@group(0) @binding(2) var<storage, read> table: array<f32>;         // (max_pos, head_dim / 2, 2): cos, sin
@group(0) @binding(3) var<storage, read> pages: array<u32>;         // position / BLOCK_TOKENS -> block
@group(0) @binding(4) var<storage, read_write> qkv: array<f32>;     // (n_tokens, qkv_stride): q's heads, k's, v's
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>; // (blocks * BLOCK_TOKENS, n_kv_heads * head_dim)
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>; // (blocks * BLOCK_TOKENS, n_kv_heads * head_dim)
@group(0) @binding(7) var<uniform> params: Params;

// The q/k norms' element type (WEIGHT_DTYPE is the cache's).
override NORM_DTYPE: u32 = DTYPE_F32;

// Selects rather than branches on the flags (see moe.wgsl); without a norm the read
// lands in the placeholder buffer, bounds-checked, and is discarded.
fn norm_weight(is_q: bool, i: u32) -> f32 {
    let qw = float_value(NORM_DTYPE, q_norm[float_word(NORM_DTYPE, i)], i);
    let kw = float_value(NORM_DTYPE, k_norm[float_word(NORM_DTYPE, i)], i);
    let has = select(params.has_k_norm, params.has_q_norm, is_q) != 0u;
    return select(1.0, select(kw, qw, is_q), has);
}

// Elements i and i + 1 of a head at `base`, normalised by `scale` and the norm weights.
fn normed_pair(is_q: bool, base: u32, i: u32, scale: f32) -> vec2<f32> {
    let x = vec2<f32>(qkv[base + i], qkv[base + i + 1u]);
    return x * scale * vec2<f32>(norm_weight(is_q, i), norm_weight(is_q, i + 1u));
}

// Cache elements e and e + 1 (e even) of the keys and of the values.
fn store_kv(e: u32, k: vec2<f32>, v: vec2<f32>) {
    let w = kv_word(e);
    let kw = kv_words(k);
    let vw = kv_words(v);
    k_cache[w] = kw.x;
    v_cache[w] = vw.x;
    if kv_pair_words() == 2u {
        k_cache[w + 1u] = kw.y;
        v_cache[w + 1u] = vw.y;
    }
}

@compute @workgroup_size(REDUCE_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg);
    let heads = params.n_heads + params.n_kv_heads;
    let t = id / heads;
    let is_q = id % heads < params.n_heads;
    let head = select(id % heads - params.n_heads, id % heads, is_q);
    if t >= step.n_tokens {
        return;
    }
    // Bounded by the buffer too (see moe.wgsl: lavapipe would recompile per launch).
    let d = min(params.head_dim, arrayLength(&qkv));
    let row = t * params.qkv_stride;
    let base = row + select(params.k_col, 0u, is_q) + head * d;
    var sum = 0.0;
    for (var i = lid; i < d; i += REDUCE_WG) {
        let x = qkv[base + i];
        sum += x * x;
    }
    // Uniform control flow: every invocation takes part in the reduction.
    let total = workgroup_sum(lid, sum);
    let has_norm = select(params.has_k_norm, params.has_q_norm, is_q) != 0u;
    let scale = select(1.0, inverseSqrt(total / f32(d) + params.eps), has_norm);
    let pos = step.pos + t;
    // 1 + beta · ln(1 + floor(pos / floor_scale)) for q, after RoPE as in transformers.
    let beta = select(0.0, params.temperature_beta, is_q);
    let temperature = 1.0 + beta * log(1.0 + f32(pos / params.temperature_floor));
    let half = d / 2u;
    let angle_base = pos * half;
    let v_base = row + params.v_col + head * d;
    // This head's first element in the cache row of `pos`.
    let cached = kv_row(pos) * params.n_kv_heads * d + head * d;
    for (var p = lid; p < half / 2u; p += REDUCE_WG) {
        let i = 2u * p;
        let j = i + half;
        let a = normed_pair(is_q, base, i, scale);
        let b = normed_pair(is_q, base, j, scale);
        let at = (angle_base + i) * 2u;
        let c = vec2<f32>(table[at], table[at + 2u]) * params.attention_factor;
        let s = vec2<f32>(table[at + 1u], table[at + 3u]) * params.attention_factor;
        let ra = (a * c - b * s) * temperature;
        let rb = (b * c + a * s) * temperature;
        qkv[base + i] = ra.x;
        qkv[base + i + 1u] = ra.y;
        qkv[base + j] = rb.x;
        qkv[base + j + 1u] = rb.y;
        if !is_q {
            store_kv(cached + i, ra, vec2<f32>(qkv[v_base + i], qkv[v_base + i + 1u]));
            store_kv(cached + j, rb, vec2<f32>(qkv[v_base + j], qkv[v_base + j + 1u]));
        }
    }
}
