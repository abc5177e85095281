// Sparse mixture-of-experts routing for LFM2-MoE, around the expert matmuls:
// route:   per token, sigmoid router scores; the top-k experts by score + expert bias;
//          their weights are the scores without the bias, normalised to sum 1 when
//          norm_topk_prob, times routed_scaling_factor (as transformers' Lfm2MoeTopKRouter).
// group:   per expert, the list of routed slots (t * top_k + s) that chose it, so the
//          prefill matmul reads each expert's weights once.
// combine: x[t] += sum_s weight[t, s] * expert_out[t * top_k + s], the residual add.

struct Params {
    n_experts: u32,
    top_k: u32,
    hidden: u32,
    norm_topk_prob: u32,
    routed_scaling: f32,
    use_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> router_logits: array<f32>; // (n_tokens, n_experts)
@group(0) @binding(1) var<storage, read> expert_bias: array<u32>;   // (n_experts) or unused
@group(0) @binding(2) var<storage, read> expert_out: array<f32>;    // (n_tokens * top_k, hidden)
@group(0) @binding(3) var<storage, read_write> routes: array<u32>;  // (n_tokens, top_k, 2): expert, weight bits
@group(0) @binding(4) var<storage, read_write> slots: array<u32>;   // counts (n_experts), lists (n_experts, n_tokens)
@group(0) @binding(5) var<storage, read_write> x: array<f32>;       // (n_tokens, hidden)
@group(0) @binding(6) var<uniform> params: Params;

const WG: u32 = 64u;
const MAX_EXPERTS: u32 = 256u;

fn score(t: u32, e: u32) -> f32 {
    return 1.0 / (1.0 + exp(-router_logits[t * params.n_experts + e]));
}

@compute @workgroup_size(WG)
fn route(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = flat_workgroup(wid, nwg) * WG + lid;
    if t >= step.n_tokens {
        return;
    }
    var taken: array<bool, MAX_EXPERTS>;
    var total = 0.0;
    for (var s = 0u; s < params.top_k; s++) {
        // Highest score + bias not yet taken; the lowest index wins ties.
        var best = 0u;
        var best_key = -3.0e38;
        for (var e = 0u; e < params.n_experts; e++) {
            var key = score(t, e);
            if params.use_bias == 1u {
                key += float_value(BIAS_DTYPE, expert_bias[float_word(BIAS_DTYPE, e)], e);
            }
            if !taken[e] && key > best_key {
                best = e;
                best_key = key;
            }
        }
        taken[best] = true;
        let weight = score(t, best);
        total += weight;
        routes[(t * params.top_k + s) * 2u] = best;
        routes[(t * params.top_k + s) * 2u + 1u] = bitcast<u32>(weight);
    }
    let scale = select(1.0, 1.0 / (total + 1e-6), params.norm_topk_prob == 1u) * params.routed_scaling;
    for (var s = 0u; s < params.top_k; s++) {
        let i = (t * params.top_k + s) * 2u + 1u;
        routes[i] = bitcast<u32>(bitcast<f32>(routes[i]) * scale);
    }
}

@compute @workgroup_size(WG)
fn group(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let e = flat_workgroup(wid, nwg) * WG + lid;
    if e >= params.n_experts {
        return;
    }
    var count = 0u;
    for (var slot = 0u; slot < step.n_tokens * params.top_k; slot++) {
        if routes[slot * 2u] == e {
            slots[params.n_experts + e * step.n_tokens + count] = slot;
            count++;
        }
    }
    slots[e] = count;
}

@compute @workgroup_size(WG)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_workgroup(wid, nwg) * WG + lid;
    if i >= step.n_tokens * params.hidden {
        return;
    }
    let t = i / params.hidden;
    let c = i % params.hidden;
    var sum = 0.0;
    for (var s = 0u; s < params.top_k; s++) {
        let slot = t * params.top_k + s;
        sum += bitcast<f32>(routes[slot * 2u + 1u]) * expert_out[slot * params.hidden + c];
    }
    x[i] += sum;
}
