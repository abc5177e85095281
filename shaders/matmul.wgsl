// Tiled matrix multiply for prefill: out[t, n] (+)= dot(x[t, :], weight[n, :]) + bias[n].
// A workgroup computes a TILE_T x TILE_N block of out through workgroup memory; each
// thread owns 2 x 4 outputs. Each step along k takes 32 elements: a GGUF row's 32 are
// decoded once, by one thread, a whole block (or K-quant group) with its scales
// (quant.wgsl's group32), and the tiles are read four elements at a time.
// Params: linear_params.wgsl.
// Expert mode (MoE): the batch's routed slots are gathered per expert (moe.wgsl's
// `route`; expert_lists.wgsl reads the lists), and each workgroup multiplies one
// expert's slots by that expert's matrix, so every expert's weights are read once per
// batch: the experts of this binding (expert_first .. + expert_count), a stack larger
// than one binding taking a launch per part.

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

// Tokens per tile: 32, or 8 or 16 for small batches (ops/linear.rs), whose tiles would
// otherwise be mostly rows past the batch or the expert's slots.
override TILE_T: u32 = 32u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 32u;
// 16 threads across n, TILE_T / 2 down t: 256 threads, or 64 or 128 for small tiles.
override WG: u32 = 8u * TILE_T;
// A tile row: TILE_K elements as vectors, and one more vector, so that the threads
// reading rows 16 apart fall in different memory banks.
const ROW_VECS: u32 = TILE_K / 4u + 1u;

var<workgroup> x_tile: array<vec4<f32>, 288>; // the larger tile's 32 tokens * ROW_VECS
var<workgroup> w_tile: array<vec4<f32>, 576>; // TILE_N * ROW_VECS

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
    let half_t = TILE_T / 2u;
    let tx = lid % 16u; // n = n0 + tx + 16 j
    let ty = lid / 16u; // t = t0 + ty + half_t i
    var acc: array<array<f32, 4>, 2>;
    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        // x: TILE_T rows of 32, four elements a thread, zero past the batch and k.
        for (var r = 0u; r < TILE_T * TILE_K / (4u * WG); r++) {
            let v = lid + r * WG; // vector v of the tile
            let t = t0 + v / (TILE_K / 4u);
            let kk = k0 + 4u * (v % (TILE_K / 4u));
            var xv = vec4<f32>(0.0);
            if t < rows {
                let row = x_row(expert, t) * params.k;
                for (var c = 0u; c < 4u; c++) {
                    xv[c] = select(0.0, x[row + min(kk + c, params.k - 1u)], kk + c < params.k);
                }
            }
            x_tile[(v / (TILE_K / 4u)) * ROW_VECS + v % (TILE_K / 4u)] = xv;
        }
        // weight: TILE_N rows of 32. A GGUF row's 32 elements are one group (rows hold
        // whole blocks, so k % 32 == 0), decoded by thread n of the first TILE_N; float
        // rows (any k) are read an element at a time by every thread.
        if WEIGHT_DTYPE > DTYPE_BF16 {
            if lid < TILE_N {
                let n = min(n0 + lid, params.n - 1u);
                let group = group32((w_base + n * params.k + k0) / 32u);
                for (var v = 0u; v < TILE_K / 4u; v++) {
                    w_tile[lid * ROW_VECS + v] = group[v];
                }
            }
        } else {
            for (var r = 0u; r < TILE_N * TILE_K / (4u * WG); r++) {
                let v = lid + r * WG;
                let n = n0 + v / (TILE_K / 4u);
                let kk = k0 + 4u * (v % (TILE_K / 4u));
                var wv = vec4<f32>(0.0);
                for (var c = 0u; c < 4u; c++) {
                    let e = w_base + min(n, params.n - 1u) * params.k + min(kk + c, params.k - 1u);
                    wv[c] = select(0.0, weight_at(e), kk + c < params.k);
                }
                w_tile[(v / (TILE_K / 4u)) * ROW_VECS + v % (TILE_K / 4u)] = wv;
            }
        }
        workgroupBarrier();
        for (var v = 0u; v < TILE_K / 4u; v++) {
            let a0 = x_tile[ty * ROW_VECS + v];
            let a1 = x_tile[(ty + half_t) * ROW_VECS + v];
            for (var j = 0u; j < 4u; j++) {
                let b = w_tile[(tx + 16u * j) * ROW_VECS + v];
                acc[0][j] += dot(a0, b);
                acc[1][j] += dot(a1, b);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 2u; i++) {
        let t = t0 + ty + half_t * i;
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
