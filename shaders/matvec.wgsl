// Matrix-vector product for decode: out[row] (+)= dot(weight[row, :], x) + bias[row].
// Decode is bound by reading the weights, so each weight byte is loaded once, 16 bytes
// at a time: a workgroup computes ROWS rows, and the ROW_THREADS threads of a row stride
// over it, neighbouring threads on neighbouring bytes. GGUF weights are taken 32
// elements (a block, or a sub-block of a K-quant) per step, their scales decoded once
// per step. The threads of a row meet in workgroup memory: one barrier per launch.
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

@group(0) @binding(0) var<storage, read> x: array<f32>;            // (n_tokens, k)
@group(0) @binding(1) var<storage, read> weight: array<vec4<u32>>; // (n, k), 16-byte padded
@group(0) @binding(2) var<storage, read> bias: array<u32>;         // (n) or unused
@group(0) @binding(3) var<storage, read> routing: array<u32>;      // routes (n_tokens, top_k, 2): expert, weight bits
@group(0) @binding(4) var<storage, read_write> out: array<f32>;    // (rows, n)
@group(0) @binding(5) var<uniform> params: Params;

// ops/linear.rs launches one workgroup per MATVEC_ROWS (= ROWS) rows.
const ROW_THREADS: u32 = 1u;
const ROWS: u32 = 256u;
const WG: u32 = 256u; // ROWS * ROW_THREADS

var<workgroup> partial: array<f32, WG>;

fn load_word(i: u32) -> u32 {
    return weight[i >> 2u][i & 3u];
}

fn x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg) * ROWS + lid / ROW_THREADS;
    let lane = lid % ROW_THREADS;
    let slot = id / params.n;
    let row = id % params.n;
    // No early return: every thread reaches the barrier.
    let live = slot < max(params.top_k, 1u);
    var x_row = select(0u, step.n_tokens - 1u, params.x_last == 1u);
    var w_row = row;
    var out_row = 0u;
    if live && params.experts > 0u {
        let expert = routing[slot * 2u];
        w_row = expert * (params.expert_stride / params.k) + params.row_offset + row;
        x_row = select(0u, slot, params.x_per_slot == 1u);
        out_row = slot;
    }
    var sum = 0.0;
    if live {
        sum = row_dot(w_row, x_row * params.k, lane);
    }
    partial[lid] = sum;
    workgroupBarrier();
    if !live || lane != 0u {
        return;
    }
    var y = 0.0;
    for (var i = 0u; i < ROW_THREADS; i++) {
        y += partial[lid + i];
    }
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

// This thread's share of dot(weight[w_row, :], x[xb ..]).
fn row_dot(w_row: u32, xb: u32, lane: u32) -> f32 {
    let k = params.k;
    var sum = 0.0;
    if WEIGHT_DTYPE > DTYPE_BF16 {
        let units = k / 32u;
        for (var u = lane; u < units; u += ROW_THREADS) {
            sum += unit_dot(w_row * units + u, xb + 32u * u);
        }
        return sum;
    }
    let per_word = select(2u, 1u, WEIGHT_DTYPE == DTYPE_F32);
    let words = k / per_word; // k is even for 16-bit weights (checked at load)
    let base = w_row * words;
    if words % 4u == 0u {
        for (var i = lane; i < words / 4u; i += ROW_THREADS) {
            let w = weight[base / 4u + i];
            let xi = xb + 4u * per_word * i;
            if WEIGHT_DTYPE == DTYPE_F32 {
                sum += dot(bitcast<vec4<f32>>(w), x4(xi));
            } else {
                sum += dot(pair_vec(w.x, w.y), x4(xi)) + dot(pair_vec(w.z, w.w), x4(xi + 4u));
            }
        }
        return sum;
    }
    // Rows not 16-byte aligned: a word at a time.
    for (var i = lane; i < words; i += ROW_THREADS) {
        let w = load_word(base + i);
        let xi = xb + per_word * i;
        if WEIGHT_DTYPE == DTYPE_F32 {
            sum += bitcast<f32>(w) * x[xi];
        } else {
            let p = weight_pair(w);
            sum += p.x * x[xi] + p.y * x[xi + 1u];
        }
    }
    return sum;
}

// The four 16-bit weights of two words, in element order.
fn pair_vec(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(weight_pair(a), weight_pair(b));
}

// The four bytes of `w` as values, lowest first.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu));
}

// The four low nibbles of the bytes of `w >> shift`, as values.
fn nibbles4(w: u32, shift: u32) -> vec4<f32> {
    return bytes4((w >> shift) & 0x0f0f0f0fu);
}

// The four bytes of `w` as signed values.
fn i8x4(w: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// dot of the 32 weights of unit u (elements 32u .. 32u + 31 of the tensor) with
// x[xb ..][..32]. A unit is a whole Q8_0/Q4_x/Q5_x block, or a 32-element sub-block
// of a K-quant block (8 per block).
fn unit_dot(u: u32, xb: u32) -> f32 {
    switch WEIGHT_DTYPE {
        case DTYPE_Q8_0: {
            let b = u * 34u;
            var s = 0.0;
            for (var j = 0u; j < 8u; j++) {
                s += dot(i8x4(u32_at(b + 2u + 4u * j)), x4(xb + 4u * j));
            }
            return f16_at(b) * s;
        }
        case DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1: {
            // Byte i holds element i in its low nibble and i + 16 in its high one; Q5
            // adds bit i of qh as the fifth bit.
            let five = WEIGHT_DTYPE == DTYPE_Q5_0 || WEIGHT_DTYPE == DTYPE_Q5_1;
            let size = 18u + 2u * (WEIGHT_DTYPE - DTYPE_Q4_0); // 18, 20, 22, 24 bytes
            let b = u * size;
            let qs = b + size - 16u;
            var qh = 0u;
            if five {
                qh = u32_at(qs - 4u);
            }
            var qx = 0.0;
            var xs = 0.0;
            for (var j = 0u; j < 4u; j++) {
                let q = u32_at(qs + 4u * j);
                let lo = x4(xb + 4u * j);
                let hi = x4(xb + 16u + 4u * j);
                var q_lo = nibbles4(q, 0u);
                var q_hi = nibbles4(q, 4u);
                if five {
                    q_lo += 16.0 * bytes4(spread4(qh >> (4u * j)));
                    q_hi += 16.0 * bytes4(spread4(qh >> (16u + 4u * j)));
                }
                qx += dot(q_lo, lo) + dot(q_hi, hi);
                xs += dot(lo + hi, vec4<f32>(1.0));
            }
            let d = f16_at(b);
            switch WEIGHT_DTYPE {
                case DTYPE_Q4_0: { return d * (qx - 8.0 * xs); }
                case DTYPE_Q5_0: { return d * (qx - 16.0 * xs); }
                default: { return d * qx + f16_at(b + 2u) * xs; }
            }
        }
        case DTYPE_Q4_K, DTYPE_Q5_K: {
            // d, dmin, 12 bytes of 6-bit (scale, min) pairs, [Q5_K: 32 bytes of high
            // bits], 128 bytes of nibbles: sub-block j is the low (even j) or high
            // nibbles of bytes 32 (j / 2) .. + 31.
            let size = select(176u, 144u, WEIGHT_DTYPE == DTYPE_Q4_K);
            let b = (u / 8u) * size;
            let j = u % 8u;
            let qs = b + size - 128u + 32u * (j / 2u);
            var qx = 0.0;
            var xs = 0.0;
            for (var i = 0u; i < 8u; i++) {
                var q = nibbles4(u32_at(qs + 4u * i), 4u * (j % 2u));
                if WEIGHT_DTYPE == DTYPE_Q5_K {
                    q += 16.0 * bytes4((u32_at(b + 16u + 4u * i) >> j) & 0x01010101u);
                }
                let xv = x4(xb + 4u * i);
                qx += dot(q, xv);
                xs += dot(xv, vec4<f32>(1.0));
            }
            let scale_min = k_scale_min(b + 4u, j);
            return f16_at(b) * scale_min.x * qx - f16_at(b + 2u) * scale_min.y * xs;
        }
        case DTYPE_Q6_K: {
            // 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, d. Sub-
            // block j is quarter j % 4 of half j / 4, 16 elements per scale.
            let b = (u / 8u) * 210u;
            let half = (u % 8u) / 4u;
            let quarter = u % 4u;
            let ql = b + 64u * half + 32u * (quarter & 1u);
            let qh = b + 128u + 32u * half;
            var s = vec2<f32>(0.0);
            for (var i = 0u; i < 8u; i++) {
                let low = (u32_at(ql + 4u * i) >> (4u * (quarter / 2u))) & 0x0f0f0f0fu;
                let high = (u32_at(qh + 4u * i) >> (2u * quarter)) & 0x03030303u;
                let q = bytes4(low | (high << 4u)) - vec4<f32>(32.0);
                s[i / 4u] += dot(q, x4(xb + 4u * i));
            }
            let scales = b + 192u + 8u * half + 2u * quarter;
            return f16_at(b + 208u) * (i8_at(scales) * s.x + i8_at(scales + 1u) * s.y);
        }
        default: {
            return 0.0;
        }
    }
}

// Bits 0..3 of `bits` moved to bit 0 of bytes 0..3.
fn spread4(bits: u32) -> u32 {
    return (bits & 1u) | ((bits & 2u) << 7u) | ((bits & 4u) << 14u) | ((bits & 8u) << 21u);
}
