// Per-head RMSNorm followed by rotary position embedding, in place, for the q or k
// heads of a batch (LFM2 normalises q and k per head before RoPE).
// RoPE is the rotate-half form: element i pairs with i + head_dim/2. The cos/sin table
// is computed once on the CPU in f32, as transformers does, so long positions keep
// their precision. One workgroup per (token, head).

struct Params {
    head_dim: u32,
    n_heads: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> norm: array<u32>;    // (head_dim): q/k_layernorm
@group(0) @binding(1) var<storage, read> table: array<f32>;   // (max_pos, head_dim / 2, 2): cos, sin
@group(0) @binding(2) var<storage, read_write> x: array<f32>; // (n_tokens, n_heads, head_dim)
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(REDUCE_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg);
    let t = id / params.n_heads;
    let head = id % params.n_heads;
    if t >= step.n_tokens {
        return;
    }
    let d = params.head_dim;
    let base = (t * params.n_heads + head) * d;
    var sum = 0.0;
    for (var i = lid; i < d; i += REDUCE_WG) {
        let v = x[base + i];
        sum += v * v;
    }
    let scale = inverseSqrt(workgroup_sum(lid, sum) / f32(d) + params.eps);
    let half = d / 2u;
    let angle_base = (step.pos + t) * half;
    for (var i = lid; i < half; i += REDUCE_WG) {
        let a = x[base + i] * scale * weight_value(norm[weight_word(i)], i);
        let j = i + half;
        let b = x[base + j] * scale * weight_value(norm[weight_word(j)], j);
        let c = table[(angle_base + i) * 2u];
        let s = table[(angle_base + i) * 2u + 1u];
        x[base + i] = a * c - b * s;
        x[base + j] = b * c + a * s;
    }
}
