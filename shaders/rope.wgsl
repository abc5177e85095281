// Per-head RMSNorm (where the model has q/k norms) followed by rotary position
// embedding, in place, for the q and the k heads of a batch in one launch; for q, then
// Llama 4's attention temperature where the model has one (Ministral 3). q and k are
// columns of one row per token (a projection writes q, k and v side by side): q's heads
// from column 0, k's from column k_col.
// RoPE is the rotate-half form: element i pairs with i + head_dim/2. The cos/sin table
// is computed once on the CPU in f32, as transformers does, so long positions keep
// their precision; YaRN's attention factor scales cos and sin here, as transformers
// scales its cos/sin. One workgroup per (token, head), q's heads first.

struct Params {
    head_dim: u32,
    n_heads: u32,    // q's
    n_kv_heads: u32, // k's
    eps: f32,
    has_q_norm: u32,
    has_k_norm: u32,
    attention_factor: f32,
    temperature_beta: f32, // 0: no temperature
    temperature_floor: u32,
    qkv_stride: u32, // elements from one token's row of qkv to the next
    k_col: u32,      // k's first column
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> q_norm: array<u32>;   // (head_dim): q_layernorm
@group(0) @binding(1) var<storage, read> k_norm: array<u32>;   // (head_dim): k_layernorm
@group(0) @binding(2) var<storage, read> table: array<f32>;    // (max_pos, head_dim / 2, 2): cos, sin
@group(0) @binding(3) var<storage, read_write> qkv: array<f32>; // (n_tokens, qkv_stride): q's heads, k's, v's
@group(0) @binding(4) var<uniform> params: Params;

// Selects rather than branches on the flags (see moe.wgsl); without a norm the read
// lands in the placeholder buffer, bounds-checked, and is discarded.
fn norm_weight(is_q: bool, i: u32) -> f32 {
    let qw = weight_value(q_norm[weight_word(i)], i);
    let kw = weight_value(k_norm[weight_word(i)], i);
    let has = select(params.has_k_norm, params.has_q_norm, is_q) != 0u;
    return select(1.0, select(kw, qw, is_q), has);
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
    let base = t * params.qkv_stride + select(params.k_col, 0u, is_q) + head * d;
    var sum = 0.0;
    for (var i = lid; i < d; i += REDUCE_WG) {
        let v = qkv[base + i];
        sum += v * v;
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
    for (var i = lid; i < half; i += REDUCE_WG) {
        let j = i + half;
        let a = qkv[base + i] * scale * norm_weight(is_q, i);
        let b = qkv[base + j] * scale * norm_weight(is_q, j);
        let c = table[(angle_base + i) * 2u] * params.attention_factor;
        let s = table[(angle_base + i) * 2u + 1u] * params.attention_factor;
        qkv[base + i] = (a * c - b * s) * temperature;
        qkv[base + j] = (b * c + a * s) * temperature;
    }
}
