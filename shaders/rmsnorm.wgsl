// RMSNorm over rows: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight.
// One workgroup per row (token).

struct Params {
    n: u32,     // row length
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;         // (n_tokens, n)
@group(0) @binding(1) var<storage, read> weight: array<u32>;    // (n)
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // (n_tokens, n)
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(REDUCE_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        inv: Invocation) {
    let lid = inv.index;
    let row = flat_workgroup(wid, nwg);
    if row >= step.n_tokens {
        return;
    }
    // Bounded by the buffer too, which changes nothing but keeps lavapipe from
    // recompiling the kernel at every launch (see moe.wgsl).
    let n = min(params.n, arrayLength(&x));
    let base = row * n;
    var sum = 0.0;
    for (var i = lid; i < n; i += REDUCE_WG) {
        let v = x[base + i];
        sum += v * v;
    }
    let scale = inverseSqrt(workgroup_sum(inv, sum, REDUCE_WG) / f32(n) + params.eps);
    for (var i = lid; i < n; i += REDUCE_WG) {
        out[base + i] = x[base + i] * scale * weight_value(weight[weight_word(i)], i);
    }
}
