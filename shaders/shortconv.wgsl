// LFM2's gated short convolution (the part between in_proj and out_proj).
// in_proj gives, per token, B, C and x (each `hidden` wide, in that order).
// main:         out[t] = C[t] * (bias + sum_k w[k] * Bx[t - (L-1) + k]),  Bx = B * x,
//               where positions before the batch come from the conv state.
// update_state: the state becomes the last L-1 values of Bx, ready for the next batch.
// token:        both for a single token, in one launch: a thread per channel, which
//               alone reads and writes that channel's state, and keeps the state it
//               found in `previous`, so that the session can take the token back (a
//               greedy step fed ahead, session/ahead.rs).
// The state is all a conv layer carries between batches: (L-1, hidden) floats.

struct Params {
    hidden: u32,
    l_cache: u32,  // kernel length L
    has_bias: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> bcx: array<f32>;         // (n_tokens, 3, hidden)
@group(0) @binding(1) var<storage, read> weight: array<u32>;      // (hidden, 1, L)
@group(0) @binding(2) var<storage, read> bias: array<u32>;        // (hidden) or unused
@group(0) @binding(3) var<storage, read_write> state: array<f32>; // (L-1, hidden), oldest first
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // (n_tokens, hidden)
@group(0) @binding(5) var<storage, read_write> previous: array<f32>; // (L-1, hidden): token's
@group(0) @binding(6) var<uniform> params: Params;

const WG: u32 = 256u;

// B * x of channel c at batch position s; s < 0 reaches back into the state.
fn bx(s: i32, c: u32) -> f32 {
    let h = params.hidden;
    if s < 0 {
        return state[u32(i32(params.l_cache) - 1 + s) * h + c];
    }
    let row = u32(s) * 3u * h;
    return bcx[row + c] * bcx[row + 2u * h + c];
}

// C · (bias + sum_k w[k] · Bx[t - (L-1) + k]) of channel c at batch position t.
fn conv(t: u32, c: u32) -> f32 {
    let h = params.hidden;
    let l = params.l_cache;
    var y = 0.0;
    if params.has_bias == 1u {
        y = float_value(BIAS_DTYPE, bias[float_word(BIAS_DTYPE, c)], c);
    }
    for (var k = 0u; k < l; k++) {
        let e = c * l + k;
        y += weight_value(weight[weight_word(e)], e) * bx(i32(t + k) - i32(l - 1u), c);
    }
    return bcx[t * 3u * h + h + c] * y;
}

// Channel c's state moved past a batch of n_tokens.
fn shift_state(c: u32, n_tokens: u32) {
    // Slot j takes position n_tokens - (L-1) + j. When that is still in the old state,
    // it is slot j + n_tokens: always a later slot, not yet overwritten.
    let keep = i32(params.l_cache) - 1;
    for (var j = 0; j < keep; j++) {
        let value = bx(i32(n_tokens) - keep + j, c);
        state[u32(j) * params.hidden + c] = value;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * WG + lid;
    let h = params.hidden;
    if i >= step.n_tokens * h {
        return;
    }
    out[i] = conv(i / h, i % h);
}

@compute @workgroup_size(WG)
fn update_state(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let c = flat_workgroup(wid, nwg) * WG + lid;
    if c >= params.hidden {
        return;
    }
    shift_state(c, step.n_tokens);
}

@compute @workgroup_size(WG)
fn token(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let c = flat_workgroup(wid, nwg) * WG + lid;
    if c >= params.hidden {
        return;
    }
    out[c] = conv(0u, c);
    for (var j = 0u; j < params.l_cache - 1u; j++) {
        let i = j * params.hidden + c;
        previous[i] = state[i];
    }
    shift_state(c, 1u);
}
