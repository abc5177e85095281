// Moves `rows` cache rows from position `src` to position `dst` through a page table,
// and for keys of a context shift (dst < src) rotates them back by `delta` = src - dst
// positions: RoPE angles add, R(p - δ) = R(-δ) R(p), so a moved key reads as if it had
// been computed at its new position. Without rotation it also copies blocks (copy on
// write). Source and destination ranges never overlap (at most `delta` rows a launch).
// One thread per (row, head, element pair i, i + 1 of the first half), which also
// moves the rotation partners i + d/2, i + 1 + d/2 (head_dim is a multiple of 4).

struct Params {
    head_dim: u32,
    n_heads: u32,  // kv heads
    src: u32,      // first row moved
    dst: u32,      // where it goes
    rows: u32,
    delta: u32,    // |src - dst|: positions to rotate back by
    rotate: u32,   // 1 for keys
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> table: array<f32>;         // (max_pos, head_dim / 2, 2): cos, sin
@group(0) @binding(1) var<storage, read> pages: array<u32>;         // position / BLOCK_TOKENS -> block
@group(0) @binding(2) var<storage, read_write> cache: array<u32>;   // (blocks * BLOCK_TOKENS, n_heads, head_dim)
@group(0) @binding(3) var<uniform> params: Params;

const WG: u32 = 256u;

fn load_pair(e: u32) -> vec2<f32> {
    let w = kv_word(e);
    if WEIGHT_DTYPE == DTYPE_F16 {
        return weight_pair(cache[w]);
    }
    return bitcast<vec2<f32>>(vec2<u32>(cache[w], cache[w + 1u]));
}

fn store_pair(e: u32, pair: vec2<f32>) {
    let w = kv_word(e);
    let words = kv_words(pair);
    cache[w] = words.x;
    if kv_pair_words() == 2u {
        cache[w + 1u] = words.y;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = flat_workgroup(wid, nwg) * WG + lid;
    let d = params.head_dim;
    let half = d / 2u;
    let per_row = params.n_heads * half / 2u;
    if id >= params.rows * per_row {
        return;
    }
    let row = id / per_row;
    let head = (id % per_row) / (half / 2u);
    let i = 2u * (id % (half / 2u));
    let offset = head * d + i;
    let src_e = kv_row(params.src + row) * params.n_heads * d + offset;
    let dst_e = kv_row(params.dst + row) * params.n_heads * d + offset;
    var a = load_pair(src_e);        // elements i, i + 1
    var b = load_pair(src_e + half); // their partners i + d/2, i + 1 + d/2
    if params.rotate == 1u {
        // Rotation by -δ: cos(-x) = cos x, sin(-x) = -sin x.
        let t = (params.delta * half + i) * 2u;
        let c = vec2<f32>(table[t], table[t + 2u]);
        let s = vec2<f32>(table[t + 1u], table[t + 3u]);
        let a0 = a;
        a = a0 * c + b * s;
        b = b * c - a0 * s;
    }
    store_pair(dst_e, a);
    store_pair(dst_e + half, b);
}
