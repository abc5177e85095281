// Matrix multiply for prefill on CPU adapters (lavapipe): out[t, n] (+)= dot(x[t, :],
// weight[n, :]) + bias[n], without workgroup memory. On a CPU rasteriser the SIMD lanes
// are invocations and every load, from storage or workgroup memory alike, is a loop
// over the lanes: a tiled matmul pays more for its tile reads than for its arithmetic.
// Here each thread keeps a block of ROWS_PER_THREAD rows × TOKENS_PER_THREAD tokens in
// registers: per 32 (or 4) elements of k it decodes each of its rows once and loads x
// once per token, so that each load feeds many multiply-adds. GPUs take matmul.wgsl.
// Params (linear_params.wgsl), bindings and expert mode as matmul.wgsl: a workgroup
// takes one expert's slots, TOKENS_PER_THREAD of them, for its block of rows.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;   // (n_tokens, k)
@group(0) @binding(1) var<storage, read> weight: array<u32>;    // (n, k)
@group(0) @binding(2) var<storage, read> bias: array<u32>;      // (n) or unused
@group(0) @binding(3) var<storage, read> routing: array<u32>;   // experts: slot counts (E), then slot lists (E, n_tokens)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (n_tokens, n)
@group(0) @binding(5) var<uniform> params: Params;

override WG: u32 = 32u;
override ROWS_PER_THREAD: u32 = 4u;
override TOKENS_PER_THREAD: u32 = 8u;
// Bounds of the two overrides: the sizes of the register block.
const MAX_ROWS: u32 = 4u;
const MAX_TOKENS: u32 = 16u;

// quant.wgsl reads the weights through this.
fn load_word(i: u32) -> u32 {
    return weight[i];
}

// x[i .. i + 4], i a multiple of 4: one vector load (on a CPU adapter, one loop over
// the lanes instead of four).
fn x4(i: u32) -> vec4<f32> {
    return x[i >> 2u];
}

fn x1(i: u32) -> f32 {
    return x[i >> 2u][i & 3u];
}

// Elements 4i .. 4i + 3 of a float weight tensor whose rows are 4-element aligned.
fn float4(i: u32) -> vec4<f32> {
    if WEIGHT_DTYPE == DTYPE_F32 {
        let b = 4u * i;
        return bitcast<vec4<f32>>(vec4<u32>(weight[b], weight[b + 1u], weight[b + 2u], weight[b + 3u]));
    }
    return vec4<f32>(weight_pair(weight[2u * i]), weight_pair(weight[2u * i + 1u]));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let rows_per_group = WG * ROWS_PER_THREAD;
    let groups_n = (params.n + rows_per_group - 1u) / rows_per_group;
    let groups_t = (step.n_tokens + TOKENS_PER_THREAD - 1u) / TOKENS_PER_THREAD;
    let tile = flat_workgroup(wid, nwg);
    // The expert's place in this binding, and in the routing lists.
    let local = tile / (groups_n * groups_t);
    if local >= max(params.expert_count, 1u) {
        return;
    }
    let expert = params.expert_first + local;
    let first_row = (tile % groups_n) * rows_per_group + lid * ROWS_PER_THREAD;
    let first_token = ((tile / groups_n) % groups_t) * TOKENS_PER_THREAD;
    let tokens = batch_rows(expert);
    if first_token >= tokens {
        return;
    }
    let k = params.k;
    // Rows and tokens past the end repeat the last one (and are not written): no
    // branch that differs per thread surrounds the loads.
    let w_first = local * (params.expert_stride / k) + params.row_offset;
    var rows: array<u32, MAX_ROWS>;
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        rows[j] = w_first + min(first_row + j, params.n - 1u);
    }
    var x_rows: array<u32, MAX_TOKENS>;
    for (var t = 0u; t < TOKENS_PER_THREAD; t++) {
        x_rows[t] = x_row(expert, min(first_token + t, tokens - 1u)) * k;
    }
    var acc: array<array<f32, MAX_TOKENS>, MAX_ROWS>;
    if WEIGHT_DTYPE > DTYPE_BF16 {
        // 32 elements per step; quantized rows hold whole blocks, so k % 32 == 0.
        let groups = k / 32u;
        for (var g = 0u; g < groups; g++) {
            var w: array<array<vec4<f32>, 8>, MAX_ROWS>;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                w[j] = group32(rows[j] * groups + g);
            }
            for (var t = 0u; t < TOKENS_PER_THREAD; t++) {
                for (var v = 0u; v < 8u; v++) {
                    let xv = x4(x_rows[t] + 32u * g + 4u * v);
                    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                        acc[j][t] += dot(w[j][v], xv);
                    }
                }
            }
        }
    } else if k % 4u == 0u {
        for (var i = 0u; i < k / 4u; i++) {
            var w: array<vec4<f32>, MAX_ROWS>;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                w[j] = float4(rows[j] * (k / 4u) + i);
            }
            for (var t = 0u; t < TOKENS_PER_THREAD; t++) {
                let xv = x4(x_rows[t] + 4u * i);
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    acc[j][t] += dot(w[j], xv);
                }
            }
        }
    } else {
        // Rows not 4-element aligned: an element at a time.
        for (var i = 0u; i < k; i++) {
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                let e = rows[j] * k + i;
                let w = weight_value(weight[weight_word(e)], e);
                for (var t = 0u; t < TOKENS_PER_THREAD; t++) {
                    acc[j][t] += w * x1(x_rows[t] + i);
                }
            }
        }
    }
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        let row = first_row + j;
        if row >= params.n {
            break;
        }
        var b = 0.0;
        if params.has_bias == 1u {
            let c = params.out_col + row;
            b = float_value(BIAS_DTYPE, bias[float_word(BIAS_DTYPE, c)], c);
        }
        for (var t = 0u; t < TOKENS_PER_THREAD && first_token + t < tokens; t++) {
            let o = out_row(expert, first_token + t) * params.out_stride + params.out_col + row;
            if params.accumulate == 1u {
                out[o] += acc[j][t] + b;
            } else {
                out[o] = acc[j][t] + b;
            }
        }
    }
}
