// Appends a batch's keys and values to the KV cache: row t of k and v (keys already
// normalised and rotated) becomes position step.pos + t, in the block the page table
// gives, stored as the cache's element type. One thread per pair of elements.

struct Params {
    kv_dim: u32, // kv_heads * head_dim, even
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;             // (n_tokens, kv_dim)
@group(0) @binding(1) var<storage, read> v: array<f32>;             // (n_tokens, kv_dim)
@group(0) @binding(2) var<storage, read> pages: array<u32>;         // position / BLOCK_TOKENS -> block
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>; // (blocks * BLOCK_TOKENS, kv_dim)
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>; // (blocks * BLOCK_TOKENS, kv_dim)
@group(0) @binding(5) var<uniform> params: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let pair = flat_workgroup(wid, nwg) * WG + lid;
    if pair >= step.n_tokens * params.kv_dim / 2u {
        return;
    }
    let src = pair * 2u;
    let t = src / params.kv_dim;
    let dst = kv_word(kv_row(step.pos + t) * params.kv_dim + src % params.kv_dim);
    let kw = kv_words(vec2<f32>(k[src], k[src + 1u]));
    let vw = kv_words(vec2<f32>(v[src], v[src + 1u]));
    k_cache[dst] = kw.x;
    v_cache[dst] = vw.x;
    if kv_pair_words() == 2u {
        k_cache[dst + 1u] = kw.y;
        v_cache[dst + 1u] = vw.y;
    }
}
