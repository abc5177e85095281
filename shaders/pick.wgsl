// Picking the next token on the GPU, so that little comes back instead of the row of
// logits (the last row of a batch, at the start of the logits buffer). A pick takes two
// launches, so that many workgroups read the row: workgroup c of the first picks within
// chunk c of the row (ARGMAX_CHUNK or TOP_CHUNK logits) into `parts`, then one
// workgroup merges the chunks' picks.
//
// argmax: greedy decoding's pick, the index of the largest logit, the first one on ties
//   as torch.argmax (sampler::argmax), written over the batch's first token id. A
//   chunk's pick is its largest logit and the first index holding it; the merge keeps
//   the largest, the earliest on ties.
// top: sampled decoding's candidates (sampler::TopLogits). Every logit above the row's
//   `rank`-th largest (at most rank − 1 of them, in no order: the sampler ranks them),
//   that `rank`-th largest as the bound every other logit is at or below, and the row's
//   softmax mass at the temperature, Σ exp((l − max) / T), which top-p and plain
//   temperature sampling need. A chunk finds its own candidates, bound, maximum, and
//   mass relative to its maximum. The row's bound is at or above every chunk's (a chunk
//   has `rank` logits at or above its own), so every logit above it is among its
//   chunk's candidates: the merge finds the bound among them, or it is the largest
//   chunk bound where fewer than `rank` candidates are above that one. A bound is found
//   by a radix select: four passes over the items (a chunk's logits, or the chunks'
//   candidates), each counting the next 8 bits of the logits' order-preserving keys.
//
// NaN and −∞ count as −∞: never picked over a number, never a candidate, no mass. So
// do the tokens a constraint forbids: `allowed` has a bit per token (bit i % 32 of word
// i / 32), set where the token may be picked (every bit, unconstrained).

struct Params {
    n: u32,           // the row's length (the vocabulary)
    temperature: f32, // top: the softmax temperature of the mass (above 0)
    rank: u32,        // top: the bound's rank, 1 the largest; at most ROOM + 1
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>; // (vocab): the last row
// argmax: the batch's ids, [0] ← the pick. top: the record
// [count, bound, mass, 0, (id, logit) × count], floats as their bits.
@group(0) @binding(1) var<storage, read_write> picks: array<u32>;
@group(0) @binding(2) var<storage, read> allowed: array<u32>; // (vocab / 32, rounded up)
// The chunks' picks. argmax: (largest, its first index) per chunk, as f32 bits. top: a
// record per chunk, PART_WORDS apart: [count, bound key, maximum, mass, (id, logit) ×
// count], the mass relative to the chunk's maximum.
@group(0) @binding(3) var<storage, read_write> parts: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

const WG: u32 = 256u;
// Logits per chunk, the adapter's (gpu/tuning.rs; ops/pick.rs sizes `parts` by them).
override ARGMAX_CHUNK: u32 = 1024u;
override TOP_CHUNK: u32 = 4096u;
const NEG_INF: u32 = 0xff800000u;
const RECORD_HEAD: u32 = 4u;
const ROOM: u32 = 255u; // candidates a record holds at most
const PART_WORDS: u32 = RECORD_HEAD + 2u * ROOM;
// Above every index (ops/pick.rs keeps rows shorter), exact as an f32.
const NO_INDEX: f32 = 16777216.0;

// Told by its bits: compilers may fold `v != v` away.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn row_length() -> u32 {
    return min(params.n, arrayLength(&logits));
}

// The logits of chunk `c` of chunks of `size`: [start, end).
fn chunk_range(c: u32, size: u32) -> vec2<u32> {
    let n = row_length();
    return vec2<u32>(min(c * size, n), min(c * size + size, n));
}

// The row's chunks of `size`, as many as `parts` holds of `words` each.
fn chunk_count(size: u32, words: u32) -> u32 {
    return min((row_length() + size - 1u) / size, arrayLength(&parts) / words);
}

// Logit i; −∞ where it is NaN or the token is not allowed.
fn logit(i: u32) -> f32 {
    let allows = ((allowed[i >> 5u] >> (i & 31u)) & 1u) == 1u;
    let v = logits[i];
    return select(bitcast<f32>(NEG_INF), v, allows && !is_nan(v));
}

// ---------------------------------------------------------------------------------
// argmax

// The workgroup's largest `best`, and the first index holding it: each thread gives
// its best and the first index holding that (NO_INDEX where it saw none).
fn first_of_largest(inv: Invocation, best: f32, at: f32) -> vec2<f32> {
    let largest = workgroup_max(inv, best, WG);
    let first = -workgroup_max(inv, -select(NO_INDEX, at, best == largest), WG);
    return vec2<f32>(largest, first);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, inv: Invocation) {
    let range = chunk_range(wid.x, ARGMAX_CHUNK);
    var best = bitcast<f32>(NEG_INF);
    var at = NO_INDEX;
    for (var i = range.x + inv.index; i < range.y; i += WG) {
        let v = logit(i);
        if v > best || at == NO_INDEX {
            best = v;
            at = f32(i);
        }
    }
    let picked = first_of_largest(inv, best, at);
    if inv.index == 0u {
        parts[2u * wid.x] = bitcast<u32>(picked.x);
        parts[2u * wid.x + 1u] = bitcast<u32>(picked.y);
    }
}

@compute @workgroup_size(WG)
fn argmax_merge(inv: Invocation) {
    let chunks = chunk_count(ARGMAX_CHUNK, 2u);
    var best = bitcast<f32>(NEG_INF);
    var at = NO_INDEX;
    // Each thread's chunks in order: the earlier keeps a tie.
    for (var c = inv.index; c < chunks; c += WG) {
        let v = bitcast<f32>(parts[2u * c]);
        let i = bitcast<f32>(parts[2u * c + 1u]);
        if i != NO_INDEX && (v > best || at == NO_INDEX) {
            best = v;
            at = i;
        }
    }
    let picked = first_of_largest(inv, best, at);
    if inv.index == 0u {
        picks[0] = select(u32(picked.y), 0u, picked.y == NO_INDEX);
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

var<workgroup> largest_bound: atomic<u32>;

// What the items are: a chunk's logits (`top`), or the chunks' candidates (`top_merge`).
var<private> merging: bool;
var<private> chunk_start: u32; // top: the chunk's first logit
var<private> part_base: u32;   // top: where the chunk's record starts in `parts`

// Item i as (token id, logit bits), the logit −∞ where it counts as none.
fn item(i: u32) -> vec2<u32> {
    if !merging {
        let id = chunk_start + i;
        return vec2<u32>(id, bitcast<u32>(logit(id)));
    }
    // Chunk i / ROOM's candidate i % ROOM, where it has that many.
    let base = (i / ROOM) * PART_WORDS;
    let slot = i % ROOM;
    if slot >= parts[base] {
        return vec2<u32>(0u, NEG_INF);
    }
    let at = base + RECORD_HEAD + 2u * slot;
    return vec2<u32>(parts[at], parts[at + 1u]);
}

fn item_key(i: u32) -> u32 {
    return key_of(bitcast<f32>(item(i).y));
}

// The key of the `rank`-th largest of the first `n` items (0 when they hold fewer
// numbers).
fn bound_key(lid: u32, n: u32, top_rank: u32) -> u32 {
    var prefix = 0u;
    var rank = top_rank;
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
            let key = item_key(i);
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


// How many of the first `n` items have keys above `key`, to every thread.
fn count_above(inv: Invocation, n: u32, key: u32) -> u32 {
    var count = 0.0;
    for (var i = inv.index; i < n; i += WG) {
        if item_key(i) > key {
            count += 1.0;
        }
    }
    return u32(workgroup_sum(inv, count, WG));
}

// Writes the first `n` items whose keys are above `bound` as candidates, at most
// rank − 1 of them (the chunk's record, or the row's); how many, to every thread.
fn write_above(lid: u32, n: u32, bound: u32) -> u32 {
    if lid == 0u {
        atomicStore(&written, 0u);
    }
    workgroupBarrier();
    let room = min(params.rank - 1u, ROOM);
    for (var i = lid; i < n; i += WG) {
        let pair = item(i);
        if key_of(bitcast<f32>(pair.y)) > bound {
            let slot = atomicAdd(&written, 1u);
            if slot < room {
                let at = RECORD_HEAD + 2u * slot;
                if merging {
                    picks[at] = pair.x;
                    picks[at + 1u] = pair.y;
                } else {
                    parts[part_base + at] = pair.x;
                    parts[part_base + at + 1u] = pair.y;
                }
            }
        }
    }
    workgroupBarrier();
    return min(atomicLoad(&written), room);
}

@compute @workgroup_size(WG)
fn top(@builtin(workgroup_id) wid: vec3<u32>, inv: Invocation) {
    let lid = inv.index;
    let range = chunk_range(wid.x, TOP_CHUNK);
    chunk_start = range.x;
    part_base = wid.x * PART_WORDS;
    let n = range.y - range.x;
    var m = bitcast<f32>(NEG_INF);
    for (var i = range.x + lid; i < range.y; i += WG) {
        m = max(m, logit(i));
    }
    m = workgroup_max(inv, m, WG);
    var mass = 0.0;
    let inverse_t = 1.0 / params.temperature;
    for (var i = range.x + lid; i < range.y; i += WG) {
        let v = logit(i);
        if key_of(v) != 0u {
            mass += exp((v - m) * inverse_t);
        }
    }
    mass = workgroup_sum(inv, mass, WG);
    // A chunk shorter than the rank: every number is a candidate.
    var bound = 0u;
    if n >= params.rank {
        bound = bound_key(lid, n, params.rank);
    }
    let count = write_above(lid, n, bound);
    if lid == 0u {
        parts[part_base] = count;
        parts[part_base + 1u] = bound;
        parts[part_base + 2u] = bitcast<u32>(m);
        parts[part_base + 3u] = bitcast<u32>(mass);
    }
}

@compute @workgroup_size(WG)
fn top_merge(inv: Invocation) {
    let lid = inv.index;
    merging = true;
    let chunks = chunk_count(TOP_CHUNK, PART_WORDS);
    // The largest chunk bound and maximum.
    if lid == 0u {
        atomicStore(&largest_bound, 0u);
    }
    workgroupBarrier();
    var m = bitcast<f32>(NEG_INF);
    for (var c = lid; c < chunks; c += WG) {
        atomicMax(&largest_bound, parts[c * PART_WORDS + 1u]);
        m = max(m, bitcast<f32>(parts[c * PART_WORDS + 2u]));
    }
    m = workgroup_max(inv, m, WG);
    workgroupBarrier();
    let chunk_bound = atomicLoad(&largest_bound);
    // The chunks' masses, each moved from the chunk's maximum to the row's.
    var mass = 0.0;
    let inverse_t = 1.0 / params.temperature;
    for (var c = lid; c < chunks; c += WG) {
        let chunk_mass = bitcast<f32>(parts[c * PART_WORDS + 3u]);
        if chunk_mass > 0.0 {
            let chunk_max = bitcast<f32>(parts[c * PART_WORDS + 2u]);
            mass += chunk_mass * exp((chunk_max - m) * inverse_t);
        }
    }
    mass = workgroup_sum(inv, mass, WG);
    let n = chunks * ROOM;
    let above = count_above(inv, n, chunk_bound);
    let ranked = bound_key(lid, n, params.rank);
    let bound = select(chunk_bound, ranked, above >= params.rank);
    let count = write_above(lid, n, bound);
    if lid == 0u {
        picks[0] = count;
        picks[1] = bitcast<u32>(value_of(bound));
        picks[2] = bitcast<u32>(mass);
        picks[3] = 0u;
    }
}
