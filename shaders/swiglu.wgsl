// SwiGLU gate: up = silu(gate) * up, in place on `up` (the w2 input).

struct Params {
    n: u32, // feed-forward width
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;     // (n_tokens, n): w1 x
@group(0) @binding(1) var<storage, read_write> up: array<f32>; // (n_tokens, n): w3 x
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * WG + lid;
    if i >= step.n_tokens * params.n {
        return;
    }
    let g = gate[i];
    up[i] = g / (1.0 + exp(-g)) * up[i];
}
