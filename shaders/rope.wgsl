// Per-head RMSNorm (where the model has q/k norms) followed by rotary position
// embedding for the q and the k heads of a batch in one launch; for q, then Llama 4's
// attention temperature where the model has one (Ministral 3). q, k and v are columns
// of one row per token (a projection writes them side by side): q's heads from column
// 0, k's from k_col, v's from v_col. q and k are rotated in place (attention reads q
// there); the rotated keys, and the values, also join the KV cache: token t's become
// position step.pos + t, in the block the page table gives, stored as the cache's
// element type (kv.wgsl), so that the store takes no launch of its own.
// RoPE is the rotate-half form: element i pairs with i + head_dim/2. The cos/sin table
// is computed once on the CPU in f32, as transformers does, so long positions keep
// their precision; YaRN's attention factor scales cos and sin here, as transformers
// scales its cos/sin. A thread takes elements i, i + 1 (i even) with their partners
// i + d/2, i + 1 + d/2 (head_dim a multiple of 4), the pairs an f16 cache packs in a word.
//
// main:    a batch's heads, one workgroup per token and HEADS q heads of one kv head
//          (as `token` takes them); the kv head's first q heads' workgroup also rotates
//          its k head and stores it and the v head. attention.wgsl then attends.
// token:   a single token's RoPE and attention in one launch. A workgroup takes HEADS q
//          heads of one kv head (attend.wgsl) and a range of the keys: it rotates its
//          q heads and their kv head's k, attends, and writes the heads' output to
//          `out`. The newest key and value come from the workgroup itself (rounded as
//          the cache holds them), and the workgroup of the group's first heads that
//          holds them stores them in the cache for later tokens. While the keys are
//          few, one range takes them all; once they are many, up to SPLITS ranges, each
//          a multiple of SPLIT_KEYS keys, run side by side (a GPU would otherwise attend
//          with a few workgroups over the whole cache), each writing partial results.
// combine: those ranges' partial results into each q head's output.

struct Params {
    head_dim: u32,
    n_heads: u32,    // q's
    n_kv_heads: u32, // k's and v's
    eps: f32,
    has_q_norm: u32,
    has_k_norm: u32,
    attention_factor: f32,
    temperature_beta: f32, // 0: no temperature
    temperature_floor: u32,
    qkv_stride: u32, // elements from one token's row of qkv to the next
    k_col: u32,      // k's first column
    v_col: u32,      // v's first column
    scale: f32,      // token: 1 / sqrt(head_dim), the attention's
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> q_norm: array<u32>;        // (head_dim): q_layernorm
@group(0) @binding(1) var<storage, read> k_norm: array<u32>;        // (head_dim): k_layernorm
@group(0) @binding(2) var<storage, read> table: array<f32>;         // (max_pos, head_dim / 2, 2): cos, sin
@group(0) @binding(3) var<storage, read> pages: array<u32>;         // position / BLOCK_TOKENS -> block
@group(0) @binding(4) var<storage, read_write> qkv: array<f32>;     // (n_tokens, qkv_stride): q's heads, k's, v's
@group(0) @binding(5) var<storage, read_write> k_cache: array<u32>; // (blocks * BLOCK_TOKENS, n_kv_heads * head_dim)
@group(0) @binding(6) var<storage, read_write> v_cache: array<u32>; // (blocks * BLOCK_TOKENS, n_kv_heads * head_dim)
@group(0) @binding(7) var<storage, read_write> out: array<f32>;     // token: (n_heads, head_dim)
@group(0) @binding(8) var<uniform> params: Params;
@group(0) @binding(9) var<storage, read_write> partials: array<f32>; // token: (n_heads, SPLITS, 2 + head_dim)

// The q/k norms' element type (WEIGHT_DTYPE is the cache's).
override NORM_DTYPE: u32 = DTYPE_F32;
// The most key ranges a token's attention takes, and the unit of their keys (on a GPU
// a multiple of ATTEND_WG, so that ranges are whole blocks).
override SPLITS: u32 = 1u;
override SPLIT_KEYS: u32 = 256u;

// Selects rather than branches on the flags (see moe.wgsl); without a norm the read
// lands in the placeholder buffer, bounds-checked, and is discarded.
fn norm_weight(is_q: bool, i: u32) -> f32 {
    let qw = float_value(NORM_DTYPE, q_norm[float_word(NORM_DTYPE, i)], i);
    let kw = float_value(NORM_DTYPE, k_norm[float_word(NORM_DTYPE, i)], i);
    let has = select(params.has_k_norm, params.has_q_norm, is_q) != 0u;
    return select(1.0, select(kw, qw, is_q), has);
}

// Elements i and i + 1 of a head at `base`, normalised by `scale` and the norm weights.
fn normed_pair(is_q: bool, base: u32, i: u32, scale: f32) -> vec2<f32> {
    let x = vec2<f32>(qkv[base + i], qkv[base + i + 1u]);
    return x * scale * vec2<f32>(norm_weight(is_q, i), norm_weight(is_q, i + 1u));
}

// The norm's 1/rms of a head whose Σ x² over d elements is `squares` (1 without one).
fn norm_scale(is_q: bool, squares: f32, d: u32) -> f32 {
    let has_norm = select(params.has_k_norm, params.has_q_norm, is_q) != 0u;
    return select(1.0, inverseSqrt(squares / f32(d) + params.eps), has_norm);
}

// Pair p of a head at `base` at position `pos`: elements i = 2p, i + 1 and their
// partners j = i + d/2, j + 1, normalised by `scale`, rotated, and for q multiplied by
// the attention temperature. Returns (i's pair, j's pair).
fn rotated_pair(is_q: bool, base: u32, p: u32, scale: f32, pos: u32, d: u32) -> mat2x2<f32> {
    let half = d / 2u;
    let i = 2u * p;
    let j = i + half;
    let a = normed_pair(is_q, base, i, scale);
    let b = normed_pair(is_q, base, j, scale);
    let at = (pos * half + i) * 2u;
    let c = vec2<f32>(table[at], table[at + 2u]) * params.attention_factor;
    let s = vec2<f32>(table[at + 1u], table[at + 3u]) * params.attention_factor;
    // 1 + beta · ln(1 + floor(pos / floor_scale)) for q, after RoPE as in transformers.
    let beta = select(0.0, params.temperature_beta, is_q);
    let temperature = 1.0 + beta * log(1.0 + f32(pos / params.temperature_floor));
    return mat2x2<f32>((a * c - b * s) * temperature, (b * c + a * s) * temperature);
}

// Cache elements e and e + 1 (e even) of the keys and of the values.
fn store_kv(e: u32, k: vec2<f32>, v: vec2<f32>) {
    let w = kv_word(e);
    let kw = kv_words(k);
    let vw = kv_words(v);
    k_cache[w] = kw.x;
    v_cache[w] = vw.x;
    if kv_pair_words() == 2u {
        k_cache[w + 1u] = kw.y;
        v_cache[w + 1u] = vw.y;
    }
}

// Σ q² of each of the HEADS q heads from `first_head` in the token's row of qkv at `row`
// (squares[g]), and where `with_k` Σ k² of their kv head at `k_base` (squares[HEADS]),
// added up across the workgroup together: `main` and `token` get the same bits.
fn head_squares(inv: Invocation, row: u32, first_head: u32, k_base: u32, with_k: bool,
                d: u32) -> GroupSums {
    var squares: GroupSums;
    for (var i = inv.index; i < d; i += ATTEND_WG) {
        for (var g = 0u; g < HEADS; g++) {
            let q = qkv[row + (first_head + g) * d + i];
            squares[g] += q * q;
        }
        if with_k {
            let k = qkv[k_base + i];
            squares[HEADS] += k * k;
        }
    }
    group_sums(inv, ATTEND_WG, ATTEND_WG, &squares, HEADS + 1u);
    return squares;
}

@compute @workgroup_size(ATTEND_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        inv: Invocation) {
    let lid = inv.index;
    let id = flat_workgroup(wid, nwg);
    let groups = params.n_heads / HEADS;
    let t = id / groups;
    let first_head = id % groups * HEADS;
    if t >= step.n_tokens {
        return;
    }
    // Bounded by the buffer too (see moe.wgsl: lavapipe would recompile per launch).
    let d = min(params.head_dim, arrayLength(&qkv));
    let group = params.n_heads / params.n_kv_heads;
    let kv_head = first_head / group;
    let row = t * params.qkv_stride;
    let k_base = row + params.k_col + kv_head * d;
    let v_base = row + params.v_col + kv_head * d;
    // The workgroup of the kv head's first q heads rotates its key and stores the key
    // and the value; the others leave them alone (they may be rotated meanwhile).
    let owns_kv = first_head % group == 0u;
    let squares = head_squares(inv, row, first_head, k_base, owns_kv, d);
    let k_scale = norm_scale(false, squares[HEADS], d);
    let pos = step.pos + t;
    let half = d / 2u;
    let cached = kv_row(pos) * params.n_kv_heads * d + kv_head * d;
    for (var p = lid; p < half / 2u; p += ATTEND_WG) {
        let i = 2u * p;
        let j = i + half;
        for (var g = 0u; g < HEADS; g++) {
            let q_base = row + (first_head + g) * d;
            let q = rotated_pair(true, q_base, p, norm_scale(true, squares[g], d), pos, d);
            store_pairs(q_base, i, j, q);
        }
        if owns_kv {
            let k = rotated_pair(false, k_base, p, k_scale, pos, d);
            store_pairs(k_base, i, j, k);
            store_kv(cached + i, k[0], vec2<f32>(qkv[v_base + i], qkv[v_base + i + 1u]));
            store_kv(cached + j, k[1], vec2<f32>(qkv[v_base + j], qkv[v_base + j + 1u]));
        }
    }
}

// A rotated pair and its partners back into their head at `base`: elements i, i + 1
// and j, j + 1.
fn store_pairs(base: u32, i: u32, j: u32, r: mat2x2<f32>) {
    qkv[base + i] = r[0].x;
    qkv[base + i + 1u] = r[0].y;
    qkv[base + j] = r[1].x;
    qkv[base + j + 1u] = r[1].y;
}

// A pair as attention reads it back from the cache: f16-rounded in an f16 cache.
fn as_cached(pair: vec2<f32>) -> vec2<f32> {
    if WEIGHT_DTYPE == DTYPE_F16 {
        return weight_pair(kv_words(pair).x);
    }
    return pair;
}

// Keys per range of a token that sees `n_keys`: as even as whole multiples of
// SPLIT_KEYS allow (ops/rope.rs mirrors this and the count).
fn range_keys(n_keys: u32) -> u32 {
    let even = (n_keys + SPLITS - 1u) / SPLITS;
    return (even + SPLIT_KEYS - 1u) / SPLIT_KEYS * SPLIT_KEYS;
}

fn range_count(n_keys: u32) -> u32 {
    let keys = range_keys(n_keys);
    return (n_keys + keys - 1u) / keys;
}

// Where head `head`'s partial result for key range `range` starts in `partials`.
fn partial_at(head: u32, range: u32, d: u32) -> u32 {
    return (head * SPLITS + range) * (2u + d);
}

@compute @workgroup_size(ATTEND_WG)
fn token(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         inv: Invocation) {
    let lid = inv.index;
    let id = flat_workgroup(wid, nwg);
    let first_head = id / SPLITS * HEADS;
    let range = id % SPLITS;
    let n_keys = step.pos + 1u;
    let keys = range_keys(n_keys);
    let first = range * keys;
    if first_head >= params.n_heads || first >= n_keys {
        return;
    }
    let end = min(first + keys, n_keys);
    let d = min(params.head_dim, arrayLength(&qkv));
    let group = params.n_heads / params.n_kv_heads;
    let kv_head = first_head / group;
    let k_base = params.k_col + kv_head * d;
    let v_base = params.v_col + kv_head * d;
    let squares = head_squares(inv, 0u, first_head, k_base, true, d);
    let k_scale = norm_scale(false, squares[HEADS], d);
    let pos = step.pos;
    let half = d / 2u;
    let cached = kv_row(pos) * params.n_kv_heads * d + kv_head * d;
    // The last range holds the newest key.
    let has_newest = end == n_keys;
    let stores = has_newest && first_head % group == 0u;
    for (var p = lid; p < half / 2u; p += ATTEND_WG) {
        let i = 2u * p;
        let j = i + half;
        for (var g = 0u; g < HEADS; g++) {
            let q_base = (first_head + g) * d;
            let q_scale = norm_scale(true, squares[g], d);
            let q = rotated_pair(true, q_base, p, q_scale, pos, d) * params.scale;
            q_rows[g * d + i] = q[0].x;
            q_rows[g * d + i + 1u] = q[0].y;
            q_rows[g * d + j] = q[1].x;
            q_rows[g * d + j + 1u] = q[1].y;
        }
        let k = rotated_pair(false, k_base, p, k_scale, pos, d);
        let v_i = vec2<f32>(qkv[v_base + i], qkv[v_base + i + 1u]);
        let v_j = vec2<f32>(qkv[v_base + j], qkv[v_base + j + 1u]);
        let k_i = as_cached(k[0]);
        let k_j = as_cached(k[1]);
        let vc_i = as_cached(v_i);
        let vc_j = as_cached(v_j);
        k_fresh[i] = k_i.x;
        k_fresh[i + 1u] = k_i.y;
        k_fresh[j] = k_j.x;
        k_fresh[j + 1u] = k_j.y;
        v_fresh[i] = vc_i.x;
        v_fresh[i + 1u] = vc_i.y;
        v_fresh[j] = vc_j.x;
        v_fresh[j + 1u] = vc_j.y;
        if stores {
            store_kv(cached + i, k[0], v_i);
            store_kv(cached + j, k[1], v_j);
        }
    }
    workgroupBarrier();
    let newest = select(0xffffffffu, pos, has_newest);
    var ends: QueryEnds;
    for (var g = 0u; g < QUERIES; g++) {
        ends[g] = end;
    }
    let a = attend(inv, first, end, ends, newest, d, kv_head * d, params.n_kv_heads * d);
    let whole = range_count(n_keys) == 1u;
    for (var g = 0u; g < HEADS; g++) {
        let head = first_head + g;
        if whole {
            write_attended(lid, a, g, d, head * d);
            continue;
        }
        let at = partial_at(head, range, d);
        if lid == 0u {
            partials[at] = a.largest[g];
            partials[at + 1u] = a.total[g];
        }
        for (var r = 0u; r < DIMS_PER_THREAD; r++) {
            let dim = lid + r * ATTEND_WG;
            if dim < d {
                partials[at + 2u + dim] = a.acc[g][r];
            }
        }
    }
}

@compute @workgroup_size(ATTEND_WG)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           inv: Invocation) {
    let lid = inv.index;
    let head = flat_workgroup(wid, nwg);
    if head >= params.n_heads {
        return;
    }
    // Bounded by the buffers too (see moe.wgsl: lavapipe would recompile per launch).
    let d = min(params.head_dim, arrayLength(&qkv));
    let ranges = min(range_count(step.pos + 1u), arrayLength(&partials));
    // Each range's sums, moved to the largest score of all.
    var largest = -3.0e38;
    for (var r = 0u; r < ranges; r++) {
        largest = max(largest, partials[partial_at(head, r, d)]);
    }
    var total = 0.0;
    for (var r = 0u; r < ranges; r++) {
        let at = partial_at(head, r, d);
        total += partials[at + 1u] * exp(partials[at] - largest);
    }
    for (var dim = lid; dim < d; dim += ATTEND_WG) {
        var y = 0.0;
        for (var r = 0u; r < ranges; r++) {
            let at = partial_at(head, r, d);
            y += partials[at + 2u + dim] * exp(partials[at] - largest);
        }
        out[head * d + dim] = y / total;
    }
}
