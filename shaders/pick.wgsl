// Picking the next token on the GPU, so that little comes back instead of the row of
// logits (the last row of a batch, at the start of the logits buffer). One workgroup.
//
// argmax: greedy decoding's pick, the index of the largest logit, the first one on ties
//   as torch.argmax (sampler::argmax), written over the batch's first token id. Each
//   thread scans a stride of the row, then a tree keeps the larger of two candidates,
//   the earlier on ties.
// top: sampled decoding's candidates (sampler::TopLogits). Every logit above the row's
//   `rank`-th largest (at most rank − 1 of them, in no order: the sampler ranks them),
//   that `rank`-th largest as the bound every other logit is at or below, and the row's
//   softmax mass at the temperature, Σ exp((l − max) / T), which top-p and plain
//   temperature sampling need. The bound is found by a radix select: four passes over
//   the row, each counting the next 8 bits of the logits' order-preserving keys.
//
// NaN and −∞ count as −∞: never picked over a number, never a candidate, no mass. So
// do the tokens a constraint forbids: `allowed` has a bit per token (bit i % 32 of word
// i / 32), set where the token may be picked (every bit, unconstrained).

struct Params {
    n: u32,           // the row's length (the vocabulary)
    temperature: f32, // top: the softmax temperature of the mass (above 0)
    rank: u32,        // top: the bound's rank, 1 the largest; at most the record's room + 1
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>; // (vocab): the last row
// argmax: the batch's ids, [0] ← the pick. top: the record
// [count, bound, mass, 0, (id, logit) × count], floats as their bits.
@group(0) @binding(1) var<storage, read_write> picks: array<u32>;
@group(0) @binding(2) var<storage, read> allowed: array<u32>; // (vocab / 32, rounded up)
@group(0) @binding(3) var<uniform> params: Params;

const WG: u32 = 256u;
const NEG_INF: u32 = 0xff800000u;
const RECORD_HEAD: u32 = 4u;

// Told by its bits: compilers may fold `v != v` away.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn row_length() -> u32 {
    return min(params.n, arrayLength(&logits));
}

// Logit i, or −∞ where the token is not allowed.
fn logit(i: u32) -> f32 {
    let allows = ((allowed[i >> 5u] >> (i & 31u)) & 1u) == 1u;
    return select(bitcast<f32>(NEG_INF), logits[i], allows);
}

// ---------------------------------------------------------------------------------
// argmax

var<workgroup> values: array<f32, WG>;
var<workgroup> indices: array<u32, WG>;

fn finite_or_lowest(v: f32) -> f32 {
    return select(v, bitcast<f32>(NEG_INF), is_nan(v));
}

// Whether candidate (v, i) beats (best, at): larger, or as large and earlier.
fn beats(v: f32, i: u32, best: f32, at: u32) -> bool {
    return v > best || (v == best && i < at);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_index) lid: u32) {
    let n = row_length();
    var best = bitcast<f32>(NEG_INF);
    var at = 0xffffffffu;
    for (var i = lid; i < n; i += WG) {
        let v = finite_or_lowest(logit(i));
        if beats(v, i, best, at) {
            best = v;
            at = i;
        }
    }
    values[lid] = best;
    indices[lid] = at;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if lid < half && beats(values[lid + half], indices[lid + half], values[lid], indices[lid]) {
            values[lid] = values[lid + half];
            indices[lid] = indices[lid + half];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        picks[0] = select(indices[0], 0u, indices[0] == 0xffffffffu);
    }
}

// ---------------------------------------------------------------------------------
// top

// Digit counts of one radix pass, in HIST_COPIES copies so that neighbouring threads
// rarely add into the same counter.
const HIST_COPIES: u32 = 8u;
var<workgroup> histogram: array<atomic<u32>, 2048>; // HIST_COPIES × 256
var<workgroup> selected: vec2<u32>;                  // (key prefix, rank within it)
var<workgroup> written: atomic<u32>;

// A logit as an unsigned key in the order of the values (as f32::total_cmp); NaN and
// −∞ as 0, below every number.
fn key_of(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if is_nan(v) || bits == NEG_INF {
        return 0u;
    }
    return select(bits | 0x80000000u, ~bits, (bits >> 31u) == 1u);
}

fn value_of(key: u32) -> f32 {
    if key == 0u {
        return bitcast<f32>(NEG_INF);
    }
    return bitcast<f32>(select(~key, key & 0x7fffffffu, (key >> 31u) == 1u));
}

// The row's largest number (−∞ when it has none) to every thread.
fn row_max(inv: Invocation, n: u32) -> f32 {
    var m = bitcast<f32>(NEG_INF);
    for (var i = inv.index; i < n; i += WG) {
        let v = logit(i);
        if key_of(v) != 0u && v > m {
            m = v;
        }
    }
    return workgroup_max(inv, m, WG);
}

// The key of the row's `rank`-th largest logit (0 when the row has fewer numbers).
fn bound_key(lid: u32, n: u32) -> u32 {
    var prefix = 0u;
    var rank = params.rank;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        // The bits above this pass's digit; none in the first round.
        let high = select(0xffffffffu << min(shift + 8u, 31u), 0u, round == 0u);
        for (var b = lid; b < HIST_COPIES * 256u; b += WG) {
            atomicStore(&histogram[b], 0u);
        }
        workgroupBarrier();
        let copy = (lid % HIST_COPIES) * 256u;
        for (var i = lid; i < n; i += WG) {
            let key = key_of(logit(i));
            if (key & high) == prefix {
                atomicAdd(&histogram[copy + ((key >> shift) & 255u)], 1u);
            }
        }
        workgroupBarrier();
        var count = 0u;
        for (var c = 0u; c < HIST_COPIES; c++) {
            count += atomicLoad(&histogram[c * 256u + lid]);
        }
        workgroupBarrier();
        atomicStore(&histogram[lid], count);
        workgroupBarrier();
        if lid == 0u {
            // Down from the largest digit, to the one holding the rank-th key.
            var above = 0u;
            var digit = 0u;
            for (var j = 0u; j < 256u; j++) {
                let d = 255u - j;
                let in_digit = atomicLoad(&histogram[d]);
                if above + in_digit >= rank {
                    digit = d;
                    break;
                }
                above += in_digit;
            }
            selected = vec2<u32>(prefix | (digit << shift), rank - above);
        }
        workgroupBarrier();
        prefix = selected.x;
        rank = selected.y;
        workgroupBarrier();
    }
    return prefix;
}

@compute @workgroup_size(WG)
fn top(inv: Invocation) {
    let lid = inv.index;
    let n = row_length();
    let m = row_max(inv, n);
    var mass = 0.0;
    let inverse_t = 1.0 / params.temperature;
    for (var i = lid; i < n; i += WG) {
        let v = logit(i);
        if key_of(v) != 0u {
            mass += exp((v - m) * inverse_t);
        }
    }
    mass = workgroup_sum(inv, mass, WG);
    // A row shorter than the rank: every number is a candidate.
    var bound = 0u;
    if n >= params.rank {
        bound = bound_key(lid, n);
    }
    if lid == 0u {
        atomicStore(&written, 0u);
    }
    workgroupBarrier();
    let room = params.rank - 1u;
    for (var i = lid; i < n; i += WG) {
        let v = logit(i);
        if key_of(v) > bound {
            let slot = atomicAdd(&written, 1u);
            if slot < room {
                picks[RECORD_HEAD + 2u * slot] = i;
                picks[RECORD_HEAD + 2u * slot + 1u] = bitcast<u32>(v);
            }
        }
    }
    workgroupBarrier();
    if lid == 0u {
        picks[0] = min(atomicLoad(&written), room);
        picks[1] = bitcast<u32>(value_of(bound));
        picks[2] = bitcast<u32>(mass);
        picks[3] = 0u;
    }
}
