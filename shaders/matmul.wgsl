// Tiled matrix multiply for prefill: out[t, n] (+)= dot(x[t, :], weight[n, :]) + bias[n].
// A workgroup computes a TILE_T x TILE_N block of out through workgroup memory; each
// thread owns 2 x 4 outputs. Same Params as matvec.wgsl.

struct Params {
    k: u32,
    n: u32,
    x_last: u32,      // unused here: a batch always uses all its rows
    out_at_pos: u32,  // 1: row t goes to row step.pos + t (the KV cache)
    accumulate: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;         // (n_tokens, k)
@group(0) @binding(1) var<storage, read> weight: array<u32>;    // (n, k)
@group(0) @binding(2) var<storage, read> bias: array<u32>;      // (n) or unused
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // (rows, n)
@group(0) @binding(4) var<uniform> params: Params;

const TILE_T: u32 = 32u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const WG: u32 = 256u; // 16 x 16 threads

var<workgroup> x_tile: array<f32, 512>;  // TILE_T * TILE_K
var<workgroup> w_tile: array<f32, 1024>; // TILE_N * TILE_K

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tiles_n = (params.n + TILE_N - 1u) / TILE_N;
    let tile = flat_workgroup(wid, nwg);
    let t0 = (tile / tiles_n) * TILE_T;
    let n0 = (tile % tiles_n) * TILE_N;
    if t0 >= step.n_tokens {
        return;
    }
    let tx = lid % 16u; // n = n0 + tx + 16 j
    let ty = lid / 16u; // t = t0 + ty + 16 i
    var acc: array<array<f32, 4>, 2>;
    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        for (var r = 0u; r < 2u; r++) {
            let idx = lid + r * WG;
            let t = t0 + idx / TILE_K;
            let kk = k0 + idx % TILE_K;
            x_tile[idx] = select(0.0, x[t * params.k + kk], t < step.n_tokens && kk < params.k);
        }
        for (var r = 0u; r < 4u; r++) {
            let idx = lid + r * WG;
            let n = n0 + idx / TILE_K;
            let kk = k0 + idx % TILE_K;
            var w = 0.0;
            if n < params.n && kk < params.k {
                let e = n * params.k + kk;
                w = weight_value(weight[weight_word(e)], e);
            }
            w_tile[idx] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a0 = x_tile[ty * TILE_K + kk];
            let a1 = x_tile[(ty + 16u) * TILE_K + kk];
            for (var j = 0u; j < 4u; j++) {
                let b = w_tile[(tx + 16u * j) * TILE_K + kk];
                acc[0][j] += a0 * b;
                acc[1][j] += a1 * b;
            }
        }
        workgroupBarrier();
    }
    let row_base = select(0u, step.pos, params.out_at_pos == 1u);
    for (var i = 0u; i < 2u; i++) {
        let t = t0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + tx + 16u * j;
            if t < step.n_tokens && n < params.n {
                var y = acc[i][j];
                if params.has_bias == 1u {
                    y += weight_value(bias[weight_word(n)], n);
                }
                let o = (row_base + t) * params.n + n;
                if params.accumulate == 1u {
                    out[o] += y;
                } else {
                    out[o] = y;
                }
            }
        }
    }
}
