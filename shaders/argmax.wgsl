// Greedy decoding's pick on the GPU: the index of the largest of a row of logits, the
// first one on ties as torch.argmax (sampler::argmax), written over the batch's first
// token id, so that one u32 comes back instead of the row. NaNs count as −∞. One
// workgroup: each thread scans a stride of the row, then a tree keeps the larger of
// two candidates, the earlier on ties.

struct Params {
    n: u32, // the row's length (the vocabulary)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;    // (vocab): the last row
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>; // the batch's ids; [0] ← the pick
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;
var<workgroup> values: array<f32, WG>;
var<workgroup> indices: array<u32, WG>;

fn finite_or_lowest(v: f32) -> f32 {
    return select(v, bitcast<f32>(0xff800000u), v != v);
}

// Whether candidate (v, i) beats (best, at): larger, or as large and earlier.
fn beats(v: f32, i: u32, best: f32, at: u32) -> bool {
    return v > best || (v == best && i < at);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    let n = min(params.n, arrayLength(&logits));
    var best = bitcast<f32>(0xff800000u);
    var at = 0xffffffffu;
    for (var i = lid; i < n; i += WG) {
        let v = finite_or_lowest(logits[i]);
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
        tokens[0] = select(indices[0], 0u, indices[0] == 0xffffffffu);
    }
}
