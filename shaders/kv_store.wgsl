// Appends a batch's keys and values to the KV cache: token t's k and v (keys already
// normalised and rotated), columns of its row of qkv, become position step.pos + t, in
// the block the page table gives, stored as the cache's element type. One thread per
// pair of elements.

struct Params {
    kv_dim: u32,     // kv_heads * head_dim, even
    qkv_stride: u32, // elements from one token's row of qkv to the next
    k_col: u32,      // k's first column
    v_col: u32,      // v's first column
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;           // (n_tokens, qkv_stride): q, k, v
@group(0) @binding(1) var<storage, read> pages: array<u32>;         // position / BLOCK_TOKENS -> block
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>; // (blocks * BLOCK_TOKENS, kv_dim)
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>; // (blocks * BLOCK_TOKENS, kv_dim)
@group(0) @binding(4) var<uniform> params: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let pair = flat_workgroup(wid, nwg) * WG + lid;
    if pair >= step.n_tokens * params.kv_dim / 2u {
        return;
    }
    let t = pair * 2u / params.kv_dim;
    let col = pair * 2u % params.kv_dim;
    let dst = kv_word(kv_row(step.pos + t) * params.kv_dim + col);
    let k = t * params.qkv_stride + params.k_col + col;
    let v = t * params.qkv_stride + params.v_col + col;
    let kw = kv_words(vec2<f32>(qkv[k], qkv[k + 1u]));
    let vw = kv_words(vec2<f32>(qkv[v], qkv[v + 1u]));
    k_cache[dst] = kw.x;
    v_cache[dst] = vw.x;
    if kv_pair_words() == 2u {
        k_cache[dst + 1u] = kw.y;
        v_cache[dst + 1u] = vw.y;
    }
}
