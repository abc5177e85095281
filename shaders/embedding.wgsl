// Embedding gather: out[t, :] = table[tokens[t], :], unpacked to f32.
// Token ids are checked against the vocabulary on the CPU before upload. A table split
// across bindings is gathered by one launch per part, each writing only the tokens
// whose rows it holds.

struct Params {
    hidden: u32,
    first_row: u32, // of the table, in this part
    rows: u32,      // in this part
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> tokens: array<u32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>;   // (vocab, hidden): the table
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // (n_tokens, hidden)
@group(0) @binding(3) var<uniform> params: Params;

// quant.wgsl reads the weights through this.
fn load_word(i: u32) -> u32 {
    return weight[i];
}

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * WG + lid;
    if i >= step.n_tokens * params.hidden {
        return;
    }
    let t = i / params.hidden;
    let c = i % params.hidden;
    let row = tokens[t] - params.first_row; // wraps for rows before the part
    if row >= params.rows {
        return;
    }
    let e = row * params.hidden + c;
    out[i] = weight_at(e);
}
