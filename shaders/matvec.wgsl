// Matrix-vector product for decode: out[row] (+)= dot(weight[row, :], x) + bias[row].
// One workgroup per output row; the threads stride over the row so that neighbouring
// threads read neighbouring weight words.
// Expert mode (MoE, experts > 0): one matvec per routed slot s of the token, with the
// weight matrix of the expert the router chose for that slot; only those k experts'
// weights are read.

struct Params {
    k: u32,           // input width
    n: u32,           // output rows
    x_last: u32,      // 1: read the batch's last row of x (logits of a prefill)
    out_col: u32,     // first output column (a weight split across bindings: its rows)
    accumulate: u32,  // 1: add to out (the residual stream)
    has_bias: u32,
    experts: u32,        // 0: dense; else the number of experts
    top_k: u32,          // routed slots per token
    expert_stride: u32,  // weight elements from one expert's matrices to the next
    row_offset: u32,     // first row of this matrix inside an expert (the up half)
    x_per_slot: u32,     // 1: slot s reads x row s (down projection); 0: the token's row
    out_stride: u32,  // output row width (n unless split)
}

@group(0) @binding(0) var<storage, read> x: array<f32>;         // (n_tokens, k)
@group(0) @binding(1) var<storage, read> weight: array<u32>;    // (n, k)
@group(0) @binding(2) var<storage, read> bias: array<u32>;      // (n) or unused
@group(0) @binding(3) var<storage, read> routing: array<u32>;   // routes (n_tokens, top_k, 2): expert, weight bits
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (rows, n)
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(REDUCE_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg);
    let slot = id / params.n;
    let row = id % params.n;
    if slot >= max(params.top_k, 1u) {
        return;
    }
    let k = params.k;
    var x_row = select(0u, step.n_tokens - 1u, params.x_last == 1u);
    var w_row = row;
    var out_row = 0u;
    if params.experts > 0u {
        let expert = routing[slot * 2u];
        w_row = expert * (params.expert_stride / k) + params.row_offset + row;
        x_row = select(0u, slot, params.x_per_slot == 1u);
        out_row = slot;
    }
    let x_base = x_row * k;
    var sum = 0.0;
    if WEIGHT_DTYPE == DTYPE_F32 {
        let w_base = w_row * k;
        for (var i = lid; i < k; i += REDUCE_WG) {
            sum += x[x_base + i] * bitcast<f32>(weight[w_base + i]);
        }
    } else if WEIGHT_DTYPE == DTYPE_F16 || WEIGHT_DTYPE == DTYPE_BF16 {
        // Two 16-bit weights per word; k is even (checked at load).
        let words = k / 2u;
        let w_base = w_row * words;
        for (var j = lid; j < words; j += REDUCE_WG) {
            let w = weight_pair(weight[w_base + j]);
            sum += x[x_base + 2u * j] * w.x + x[x_base + 2u * j + 1u] * w.y;
        }
    } else {
        let w_base = w_row * k;
        for (var i = lid; i < k; i += REDUCE_WG) {
            sum += x[x_base + i] * weight_at(w_base + i);
        }
    }
    let total = workgroup_sum(lid, sum);
    if lid == 0u {
        var y = total;
        if params.has_bias == 1u {
            let b = params.out_col + row;
            y += float_value(BIAS_DTYPE, bias[float_word(BIAS_DTYPE, b)], b);
        }
        let o = out_row * params.out_stride + params.out_col + row;
        if params.accumulate == 1u {
            out[o] += y;
        } else {
            out[o] = y;
        }
    }
}
