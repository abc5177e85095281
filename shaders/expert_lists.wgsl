// A batch's routed slots gathered per expert (moe.wgsl's `route`), as the prefill
// matmuls (matmul.wgsl, matmul_rows.wgsl) read them from their `routing` binding:
// slot counts (E), then slot lists (E, n_tokens). Dense (params.experts == 0): the
// batch's rows in order.

// Rows of the batch this workgroup's expert handles (all tokens when dense).
fn batch_rows(expert: u32) -> u32 {
    if params.experts == 0u {
        return step.n_tokens;
    }
    return routing[expert];
}

// The routed slot (t * top_k + s) at position i of an expert's list.
fn slot_at(expert: u32, i: u32) -> u32 {
    return routing[params.experts + expert * step.n_tokens + i];
}

// The x row of position i: the slot's token, or with x_per_slot the slot itself.
fn x_row(expert: u32, i: u32) -> u32 {
    if params.experts == 0u {
        return i;
    }
    let slot = slot_at(expert, i);
    return select(slot / params.top_k, slot, params.x_per_slot == 1u);
}

// The output row of position i: the slot.
fn out_row(expert: u32, i: u32) -> u32 {
    if params.experts == 0u {
        return i;
    }
    return slot_at(expert, i);
}
