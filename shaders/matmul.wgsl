// Tiled matrix multiply for prefill: out[t, n] (+)= dot(x[t, :], weight[n, :]) + bias[n].
// A workgroup computes a TILE_T x TILE_N block of out through workgroup memory; each
// thread owns 2 x 4 outputs. Params: linear_params.wgsl.
// Expert mode (MoE): the batch's routed slots are gathered per expert (moe.wgsl's
// `group`), and each workgroup multiplies one expert's slots by that expert's matrix,
// so every expert's weights are read once per batch: the experts of this binding
// (expert_first .. + expert_count), a stack larger than one binding taking a launch per part.

@group(0) @binding(0) var<storage, read> x: array<f32>;         // (n_tokens, k)
@group(0) @binding(1) var<storage, read> weight: array<u32>;    // (n, k)
@group(0) @binding(2) var<storage, read> bias: array<u32>;      // (n) or unused
@group(0) @binding(3) var<storage, read> routing: array<u32>;   // experts: slot counts (E), then slot lists (E, n_tokens)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (rows, n)
@group(0) @binding(5) var<uniform> params: Params;

// quant.wgsl reads the weights through this.
fn load_word(i: u32) -> u32 {
    return weight[i];
}

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
    let tiles_t = (step.n_tokens + TILE_T - 1u) / TILE_T;
    let tile = flat_workgroup(wid, nwg);
    // The expert's place in this binding, and in the routing lists.
    let local = tile / (tiles_t * tiles_n);
    if local >= max(params.expert_count, 1u) {
        return;
    }
    let expert = params.expert_first + local;
    let t0 = ((tile / tiles_n) % tiles_t) * TILE_T;
    let n0 = (tile % tiles_n) * TILE_N;
    let rows = batch_rows(expert);
    if t0 >= rows {
        return;
    }
    let w_base = local * params.expert_stride + params.row_offset * params.k;
    let tx = lid % 16u; // n = n0 + tx + 16 j
    let ty = lid / 16u; // t = t0 + ty + 16 i
    var acc: array<array<f32, 4>, 2>;
    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        for (var r = 0u; r < 2u; r++) {
            let idx = lid + r * WG;
            let t = t0 + idx / TILE_K;
            let kk = k0 + idx % TILE_K;
            var v = 0.0;
            if t < rows && kk < params.k {
                v = x[x_row(expert, t) * params.k + kk];
            }
            x_tile[idx] = v;
        }
        for (var r = 0u; r < 4u; r++) {
            let idx = lid + r * WG;
            let n = n0 + idx / TILE_K;
            let kk = k0 + idx % TILE_K;
            var w = 0.0;
            if n < params.n && kk < params.k {
                let e = w_base + n * params.k + kk;
                w = weight_at(e);
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
    for (var i = 0u; i < 2u; i++) {
        let t = t0 + ty + 16u * i;
        if t >= rows {
            continue;
        }
        let o_row = out_row(expert, t);
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + tx + 16u * j;
            if n < params.n {
                var y = acc[i][j];
                if params.has_bias == 1u {
                    let b = params.out_col + n;
                    y += float_value(BIAS_DTYPE, bias[float_word(BIAS_DTYPE, b)], b);
                }
                let o = o_row * params.out_stride + params.out_col + n;
                if params.accumulate == 1u {
                    out[o] += y;
                } else {
                    out[o] = y;
                }
            }
        }
    }
}

// Rows of the batch this workgroup's expert handles (all tokens when dense).
fn batch_rows(expert: u32) -> u32 {
    if params.experts == 0u {
        return step.n_tokens;
    }
    return routing[expert];
}

// The routed slot (t * top_k + s) at position i of an expert's list.
fn slot_at(expert: u32, i: u32) -> u32 {
    return routing[params.experts + expert * step.n_tokens + i];
}

fn x_row(expert: u32, i: u32) -> u32 {
    if params.experts == 0u {
        return i;
    }
    let slot = slot_at(expert, i);
    return select(slot / params.top_k, slot, params.x_per_slot == 1u);
}

fn out_row(expert: u32, i: u32) -> u32 {
    if params.experts == 0u {
        return i;
    }
    return slot_at(expert, i);
}
