// Matrix-vector product for decode: out[row] (+)= dot(weight[row, :], x) + bias[row].
// Decode is bound by reading the weights: each weight byte is loaded once per token.
// The launch shape is the adapter's (gpu/tuning.rs): the ROW_THREADS threads of a row
// stride over it, neighbouring threads on neighbouring words (coalesced on a GPU), and
// each thread computes ROWS_PER_THREAD consecutive rows, so that every x value it loads
// serves that many rows (on a CPU adapter each load costs a loop over the SIMD lanes,
// and x would otherwise cost as much as the weights). GGUF weights are decoded a block,
// or a K-quant scale group, per step: scales once per step and row. The partial sums
// of a row meet through `group_sums` (common.wgsl): a subgroup sum each and one barrier
// where a row has the whole workgroup and the device has subgroup operations, a tree
// in workgroup memory otherwise.
// Expert mode (MoE, experts > 0): one matvec per routed slot s of the token, with the
// weight matrix of the expert the router chose for that slot; only those k experts'
// weights are read. A stack larger than one binding is launched once per part, each
// launch computing the slots whose expert its part holds. Two epilogues fuse the rest
// of the MoE feed-forward into the expert matvecs: `gated` (the up projection) writes
// silu(gate) * y, the gate projection's output bound where a bias would be; `combine`
// (the down projection) gives each output row the sum over the token's k slots of
// route weight * y, added into the residual stream. Params: linear_params.wgsl.
// Paired rows (PAIRED = 1): the matrix holds SwiGLU's gate rows and then its up rows,
// and output row r is silu(gate row r · x) * (up row r · x), both projections in one
// launch, each weight read once.
// Normalized input (NORM_DTYPE set): x is the residual stream and the matvec applies the
// RMSNorm before it itself, so that a token's norm takes no launch: x is multiplied by
// the norm weight as it is loaded, the row's threads add up x² beside the dot product,
// and the 1/rms factor scales the sum.
// Short conv (the `conv` entry): LFM2's in_proj and its gated short conv for one token
// in one launch. The matrix holds B's rows, then C's, then x's (n each, as in_proj
// writes them); channel r's three dot products meet in one thread, which computes
// C · conv(B · x) over this layer's conv state as shortconv.wgsl's `token` does, keeps
// the state it found in `conv_previous` and moves the state on. The conv weight
// (n, L) is bound where a bias would be, its dtype BIAS_DTYPE; there is no bias.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;   // (n_tokens, k), 16-byte padded
@group(0) @binding(1) var<storage, read> weight: array<vec4<u32>>; // (n, k)
@group(0) @binding(2) var<storage, read> bias: array<u32>;      // (n), gated: the gate (rows, n) f32, or unused
@group(0) @binding(3) var<storage, read> routing: array<u32>;   // routes (n_tokens, top_k, 2): expert, weight bits
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (rows, n)
@group(0) @binding(5) var<storage, read> norm: array<vec4<u32>>; // (k) RMSNorm weight, or unused
@group(0) @binding(6) var<uniform> params: Params;
@group(0) @binding(7) var<storage, read_write> conv_state: array<f32>;    // conv: (L-1, n), oldest first
@group(0) @binding(8) var<storage, read_write> conv_previous: array<f32>; // conv: the state found

override WG: u32 = 256u;
override ROW_THREADS: u32 = 16u;
override ROWS_PER_THREAD: u32 = 1u;
// The per-thread accumulators hold up to MAX_ROWS rows; WG * ROWS_PER_THREAD <= 256
// (gpu/tuning.rs checks both).
const MAX_ROWS: u32 = 8u;
// The RMSNorm weight's dtype code, or NO_NORM where x is read as it is.
const NO_NORM: u32 = 255u;
override NORM_DTYPE: u32 = NO_NORM;
override PAIRED: u32 = 0u;
alias Rows = array<f32, MAX_ROWS>;
alias RowIndex = array<u32, MAX_ROWS>;

var<private> normed_row_start: u32; // where x's normalized row starts

fn load_word(i: u32) -> u32 {
    return weight[i >> 2u][i & 3u];
}

// x[i .. i + 4], i a multiple of 4: one vector load (on a CPU adapter, one loop over
// the lanes instead of four), times the norm weight where the input is normalized.
fn x4(i: u32) -> vec4<f32> {
    if NORM_DTYPE == NO_NORM {
        return x[i >> 2u];
    }
    return x[i >> 2u] * norm4(i - normed_row_start);
}

fn x1(i: u32) -> f32 {
    return x4(i & ~3u)[i & 3u];
}

// The norm weight's elements i .. i + 4, i a multiple of 4.
fn norm4(i: u32) -> vec4<f32> {
    if NORM_DTYPE == DTYPE_F32 {
        return bitcast<vec4<f32>>(norm[i >> 2u]);
    }
    let words = norm[i >> 3u];
    let pair = select(words.xy, words.zw, (i & 4u) != 0u);
    return vec4<f32>(float_pair(NORM_DTYPE, pair.x), float_pair(NORM_DTYPE, pair.y));
}

// Where the input is normalized: x's row `row` is the one normalized, and this thread's
// share of its Σ x²; 0 where x is read as it is.
fn normed_input(row: u32, lane: u32) -> f32 {
    if NORM_DTYPE == NO_NORM {
        return 0.0;
    }
    normed_row_start = row * params.k;
    return squares(lane);
}

// This thread's share of Σ x² over x's normalized row.
fn squares(lane: u32) -> f32 {
    var sum = 0.0;
    // In vectors of 4; bounded by the buffer too, as in rmsnorm.wgsl.
    let end = min((normed_row_start + params.k) / 4u, arrayLength(&x));
    for (var i = normed_row_start / 4u + lane; i < end; i += ROW_THREADS) {
        let v = x[i];
        sum += dot(v, v);
    }
    return sum;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        inv: Invocation) {
    let lid = inv.index;
    let group = flat_workgroup(wid, nwg) * (WG / ROW_THREADS) + lid / ROW_THREADS;
    let lane = lid % ROW_THREADS;
    // A slot's rows are padded to whole groups: the rows of a thread share one x row.
    let groups_per_slot = (params.n + ROWS_PER_THREAD - 1u) / ROWS_PER_THREAD;
    let first = (group % groups_per_slot) * ROWS_PER_THREAD;
    let combine = params.combine == 1u;
    // With combine, one output row per row of the matrix, whatever the slots.
    let live = group / groups_per_slot < select(max(params.top_k, 1u), 1u, combine);
    // Threads past the last slot compute slot 0 and drop it: no branch that differs
    // per thread surrounds the loads.
    let first_slot = select(0u, group / groups_per_slot, live);
    // The slots this thread's rows add up: its own, or with combine the token's k (the
    // bound clamped by the routing buffer's length, as a bounds check).
    let summed = select(1u, min(params.top_k, arrayLength(&routing) / 2u), combine);
    var sums: Rows;
    var up_sums: Rows;
    // A normalized input is the token's row (never a slot's): its x² once per thread.
    let squared = normed_input(select(0u, step.n_tokens - 1u, params.x_last == 1u), lane);
    // Whether this binding holds the expert of a slot summed (always, when dense).
    var held = false;
    for (var i = 0u; i < summed; i++) {
        let slot = first_slot + i;
        var w_first = 0u;
        var x_row = select(0u, step.n_tokens - 1u, params.x_last == 1u);
        var holds = true;
        var weight = 1.0;
        if params.experts > 0u {
            let expert = routing[slot * 2u] - params.expert_first; // wraps below the part
            holds = expert < params.expert_count;
            w_first = select(0u, expert, holds) * (params.expert_stride / params.k) + params.row_offset;
            x_row = select(0u, slot, params.x_per_slot == 1u);
            weight = select(1.0, bitcast<f32>(routing[slot * 2u + 1u]), combine);
        }
        var w_rows: RowIndex;
        for (var j = 0u; j < ROWS_PER_THREAD; j++) {
            w_rows[j] = w_first + min(first + j, params.n - 1u);
        }
        // Slots of other parts read no weights.
        let slot_sums = dots(w_rows, x_row * params.k, lane, select(0u, params.k, holds));
        for (var j = 0u; j < ROWS_PER_THREAD; j++) {
            sums[j] += weight * slot_sums[j];
        }
        if PAIRED == 1u {
            var up_rows: RowIndex;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                up_rows[j] = w_rows[j] + params.n;
            }
            up_sums = dots(up_rows, x_row * params.k, lane, select(0u, params.k, holds));
        }
        held = held || holds;
    }
    var no_sums: Rows;
    let sets = select(1u, 2u, PAIRED == 1u);
    let row_sums = add_partials(inv, sums, up_sums, no_sums, sets, squared);
    if !live || !held || lane != 0u {
        return;
    }
    for (var j = 0u; j < ROWS_PER_THREAD && first + j < params.n; j++) {
        let row = first + j;
        var y = row_sums[j];
        var up = row_sums[ROWS_PER_THREAD + j];
        if NORM_DTYPE != NO_NORM {
            let scale = input_scale(row_sums[sets * ROWS_PER_THREAD]);
            y *= scale;
            up *= scale;
        }
        if PAIRED == 1u {
            y = y / (1.0 + exp(-y)) * up;
        }
        if params.has_bias == 1u {
            let b = params.out_col + row;
            y += float_value(BIAS_DTYPE, bias[float_word(BIAS_DTYPE, b)], b);
        }
        let out_row = select(0u, first_slot, params.experts > 0u && !combine);
        let o = out_row * params.out_stride + params.out_col + row;
        if params.gated == 1u {
            let g = bitcast<f32>(bias[o]);
            y = g / (1.0 + exp(-g)) * y;
        }
        if params.accumulate == 1u {
            out[o] += y;
        } else {
            out[o] = y;
        }
    }
}

// Each row's sums over its ROW_THREADS threads, for the first `sets` row sets (`sums`,
// `up_sums`, `x_sums`), then the sum of `squared` (x²) where the input is normalized:
// set s's row j at s * ROWS_PER_THREAD + j, x² after the sets.
fn add_partials(inv: Invocation, sums: Rows, up_sums: Rows, x_sums: Rows, sets: u32,
                squared: f32) -> GroupSums {
    var values: GroupSums;
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        values[j] = sums[j];
        values[ROWS_PER_THREAD + j] = up_sums[j];
        values[2u * ROWS_PER_THREAD + j] = x_sums[j];
    }
    let count = sets * ROWS_PER_THREAD;
    values[count] = squared;
    group_sums(inv, ROW_THREADS, WG, &values, count + u32(NORM_DTYPE != NO_NORM));
    return values;
}

// The RMSNorm's 1/rms of a normalized input, given the row's Σ x².
fn input_scale(squares: f32) -> f32 {
    return inverseSqrt(squares / f32(params.k) + params.norm_eps);
}

@compute @workgroup_size(WG)
fn conv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        inv: Invocation) {
    let lid = inv.index;
    let group = flat_workgroup(wid, nwg) * (WG / ROW_THREADS) + lid / ROW_THREADS;
    let lane = lid % ROW_THREADS;
    let h = params.n;
    let first = group * ROWS_PER_THREAD;
    let squared = normed_input(0u, lane); // one token
    var b_rows: RowIndex;
    var c_rows: RowIndex;
    var x_rows: RowIndex;
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        b_rows[j] = min(first + j, h - 1u);
        c_rows[j] = b_rows[j] + h;
        x_rows[j] = b_rows[j] + 2u * h;
    }
    let b_sums = dots(b_rows, 0u, lane, params.k);
    let c_sums = dots(c_rows, 0u, lane, params.k);
    let x_sums = dots(x_rows, 0u, lane, params.k);
    let row_sums = add_partials(inv, b_sums, c_sums, x_sums, 3u, squared);
    if lane != 0u {
        return;
    }
    var scale = 1.0;
    if NORM_DTYPE != NO_NORM {
        scale = input_scale(row_sums[3u * ROWS_PER_THREAD]);
    }
    let l = params.conv_len;
    for (var j = 0u; j < ROWS_PER_THREAD && first + j < h; j++) {
        let c = first + j;
        let bx = (row_sums[j] * scale) * (row_sums[2u * ROWS_PER_THREAD + j] * scale);
        // Σ_k w[c, k] · Bx[t - (L-1) + k]: the state's L-1 values, then this token's.
        var y = 0.0;
        for (var k = 0u; k < l; k++) {
            let e = c * l + k;
            let w = float_value(BIAS_DTYPE, bias[float_word(BIAS_DTYPE, e)], e);
            y += w * select(conv_state[k * h + c], bx, k == l - 1u);
        }
        out[c] = (row_sums[ROWS_PER_THREAD + j] * scale) * y;
        for (var k = 0u; k < l - 1u; k++) {
            conv_previous[k * h + c] = conv_state[k * h + c];
        }
        for (var k = 0u; k < l - 1u; k++) {
            conv_state[k * h + c] = select(conv_state[(k + 1u) * h + c], bx, k + 2u == l);
        }
    }
}

// This thread's share of dot(weight[w_rows[j], :k], x[xb ..]) for each of its rows;
// rows are params.k wide, k is params.k or 0.
fn dots(w_rows: RowIndex, xb: u32, lane: u32, k: u32) -> Rows {
    var acc: Rows;
    if WEIGHT_DTYPE > DTYPE_BF16 {
        let size = unit_elements();
        let units = k / size;
        for (var u = lane; u < units; u += ROW_THREADS) {
            var first_units: RowIndex;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                first_units[j] = w_rows[j] * units + u;
            }
            unit_dots(first_units, xb + size * u, &acc);
        }
        return acc;
    }
    let per_word = select(2u, 1u, WEIGHT_DTYPE == DTYPE_F32);
    let words = k / per_word; // k is even for 16-bit weights (checked at load)
    // Rows 16-byte aligned: four words per step; else one.
    let width = select(1u, 4u, words % 4u == 0u);
    for (var i = lane; i < words / width; i += ROW_THREADS) {
        let xi = xb + width * per_word * i;
        if width == 1u {
            var xv = vec2<f32>(x1(xi), 0.0);
            if per_word == 2u {
                xv.y = x1(xi + 1u);
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                let w = load_word(w_rows[j] * words + i);
                if WEIGHT_DTYPE == DTYPE_F32 {
                    acc[j] += bitcast<f32>(w) * xv.x;
                } else {
                    acc[j] += dot(weight_pair(w), xv);
                }
            }
            continue;
        }
        let x0 = x4(xi);
        var x1 = vec4<f32>(0.0);
        if per_word == 2u {
            x1 = x4(xi + 4u);
        }
        for (var j = 0u; j < ROWS_PER_THREAD; j++) {
            let base = w_rows[j] * words + 4u * i;
            let w = weight[base / 4u];
            if WEIGHT_DTYPE == DTYPE_F32 {
                acc[j] += dot(bitcast<vec4<f32>>(w), x0);
            } else {
                acc[j] += dot(pair_vec(w.x, w.y), x0) + dot(pair_vec(w.z, w.w), x1);
            }
        }
    }
    return acc;
}

// The four 16-bit weights of two words, in element order.
fn pair_vec(a: u32, b: u32) -> vec4<f32> {
    return vec4<f32>(weight_pair(a), weight_pair(b));
}
