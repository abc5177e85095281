// The parameters of the projection kernels (matvec, matmul, matmul_rows), mirrored by
// `Params` in runtime/src/ops/linear.rs.

struct Params {
    k: u32,           // input width
    n: u32,           // output rows
    x_last: u32,      // 1: read the batch's last row of x (logits of a prefill)
    out_col: u32,     // first output column (a weight split across bindings: its rows)
    accumulate: u32,  // 1: add to out (the residual stream)
    has_bias: u32,
    experts: u32,        // 0: dense; else the number of experts (the routing layout)
    top_k: u32,          // routed slots per token
    expert_stride: u32,  // weight elements from one expert's matrices to the next
    row_offset: u32,     // first row of this matrix inside an expert (the up half)
    x_per_slot: u32,     // 1: slot s reads x row s (down projection); 0: the token's row
    out_stride: u32,     // output row width (n unless split)
    expert_first: u32,   // experts expert_first .. + expert_count are in this binding
    expert_count: u32,   //   (a stack larger than one binding is bound in parts)
    gated: u32,          // 1: out = silu(gate) * y, the gate bound at the bias binding (matvec)
    combine: u32,        // 1: each row sums the token's slots, by route weight, into out (matvec)
    norm_eps: f32,       // the RMSNorm's epsilon, where matvec normalizes x itself
    conv_len: u32,       // the short conv's kernel length L (matvec's `conv`)
}
