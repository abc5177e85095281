// Per-head RMSNorm (where the model has q/k norms) followed by rotary position
// embedding, in place, for the q or k heads of a batch; for q, then Llama 4's attention
// temperature where the model has one (Ministral 3).
// RoPE is the rotate-half form: element i pairs with i + head_dim/2. The cos/sin table
// is computed once on the CPU in f32, as transformers does, so long positions keep
// their precision; YaRN's attention factor scales cos and sin here, as transformers
// scales its cos/sin. One workgroup per (token, head).

struct Params {
    head_dim: u32,
    n_heads: u32,
    eps: f32,
    has_norm: u32,
    attention_factor: f32,
    temperature_beta: f32, // 0: no temperature
    temperature_floor: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> norm: array<u32>;    // (head_dim): q/k_layernorm
@group(0) @binding(1) var<storage, read> table: array<f32>;   // (max_pos, head_dim / 2, 2): cos, sin
@group(0) @binding(2) var<storage, read_write> x: array<f32>; // (n_tokens, n_heads, head_dim)
@group(0) @binding(3) var<uniform> params: Params;

// Selects rather than branches on the flag (see moe.wgsl); without a norm the read
// lands in the placeholder buffer, bounds-checked, and is discarded.
fn norm_weight(i: u32) -> f32 {
    return select(1.0, weight_value(norm[weight_word(i)], i), params.has_norm != 0u);
}

@compute @workgroup_size(REDUCE_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg);
    let t = id / params.n_heads;
    let head = id % params.n_heads;
    if t >= step.n_tokens {
        return;
    }
    // Bounded by the buffer too (see moe.wgsl: lavapipe would recompile per launch).
    let d = min(params.head_dim, arrayLength(&x));
    let base = (t * params.n_heads + head) * d;
    var sum = 0.0;
    for (var i = lid; i < d; i += REDUCE_WG) {
        let v = x[base + i];
        sum += v * v;
    }
    // Uniform control flow: every invocation takes part in the reduction.
    let total = workgroup_sum(lid, sum);
    let scale = select(1.0, inverseSqrt(total / f32(d) + params.eps), params.has_norm != 0u);
    let pos = step.pos + t;
    // 1 + beta · ln(1 + floor(pos / floor_scale)), after RoPE as in transformers.
    let temperature = 1.0 + params.temperature_beta * log(1.0 + f32(pos / params.temperature_floor));
    let half = d / 2u;
    let angle_base = pos * half;
    for (var i = lid; i < half; i += REDUCE_WG) {
        let j = i + half;
        let a = x[base + i] * scale * norm_weight(i);
        let b = x[base + j] * scale * norm_weight(j);
        let c = table[(angle_base + i) * 2u] * params.attention_factor;
        let s = table[(angle_base + i) * 2u + 1u] * params.attention_factor;
        x[base + i] = (a * c - b * s) * temperature;
        x[base + j] = (b * c + a * s) * temperature;
    }
}
