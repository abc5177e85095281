// Causal grouped-query attention over the KV cache, one workgroup per TOKENS tokens and
// group of HEADS q heads sharing a kv head (attend.wgsl), which loads each key and value
// once for all of their queries. Token t of the batch sits at position step.pos + t and sees keys
// 0..=step.pos + t, whose rows the page table gives (kv.wgsl). The cache holds f32
// values or f16 pairs packed in u32 words; WEIGHT_DTYPE says which. Queries are the
// first columns of a token's row of qkv, where the projection wrote q, k and v side by
// side. A single token's attention runs in rope.wgsl's `token` instead, with its RoPE.

struct Params {
    head_dim: u32,
    n_heads: u32,
    n_kv_heads: u32,
    scale: f32, // 1 / sqrt(head_dim)
    qkv_stride: u32, // elements from one token's row of qkv to the next
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;       // (n_tokens, qkv_stride): q's heads first
@group(0) @binding(1) var<storage, read> pages: array<u32>;     // position / BLOCK_TOKENS -> block
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;   // (blocks * BLOCK_TOKENS, n_kv_heads, head_dim)
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;   // (blocks * BLOCK_TOKENS, n_kv_heads, head_dim)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (n_tokens, n_heads, head_dim)
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(ATTEND_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        inv: Invocation) {
    let lid = inv.index;
    let id = flat_workgroup(wid, nwg);
    let groups = params.n_heads / HEADS;
    let first_token = id / groups * TOKENS;
    let first_head = id % groups * HEADS;
    if first_token >= step.n_tokens {
        return;
    }
    // Bounded by the buffer too, which changes nothing but keeps lavapipe from
    // recompiling the kernel at every launch (see moe.wgsl).
    let d = min(params.head_dim, arrayLength(&qkv));
    let kv_head = first_head / (params.n_heads / params.n_kv_heads);
    // Query g: head first_head + g % HEADS of token first_token + g / HEADS, which sees
    // the keys up to its own position (none past the batch).
    var ends: QueryEnds;
    for (var g = 0u; g < QUERIES; g++) {
        let t = first_token + g / HEADS;
        ends[g] = select(0u, step.pos + t + 1u, t < step.n_tokens);
    }
    for (var i = lid; i < QUERIES * d; i += ATTEND_WG) {
        let g = i / d;
        let t = min(first_token + g / HEADS, step.n_tokens - 1u);
        let at = t * params.qkv_stride + (first_head + g % HEADS) * d + i % d;
        q_rows[i] = qkv[at] * params.scale;
    }
    workgroupBarrier();
    let end = step.pos + min(first_token + TOKENS, step.n_tokens);
    let a = attend(inv, 0u, end, ends, 0xffffffffu, d, kv_head * d, params.n_kv_heads * d);
    for (var g = 0u; g < QUERIES; g++) {
        let t = first_token + g / HEADS;
        if t < step.n_tokens {
            write_attended(lid, a, g, d, (t * params.n_heads + first_head + g % HEADS) * d);
        }
    }
}
