//! What a model weighs: parameters (total, and active per token for MoE), bytes in
//! VRAM, and bytes a decoded token reads.

use super::{FeedForward, GateUpWeights, Model, Operator, QkvWeights};
use crate::ops::{ExpertMatrix, GpuTensor};

impl Model {
    /// Every weight tensor once (the fused gate_up_proj backs two expert matrices).
    fn tensors(&self) -> Vec<&GpuTensor> {
        let mut all = vec![&self.embed_tokens, &self.final_norm];
        all.extend(&self.lm_head);
        for l in &self.layers {
            all.extend([&l.operator_norm, &l.ffn_norm]);
            match &l.operator {
                Operator::Conv(w) => {
                    all.extend([&w.in_proj, &w.conv, &w.out_proj]);
                    all.extend(
                        [&w.in_proj_bias, &w.conv_bias, &w.out_proj_bias]
                            .into_iter()
                            .flatten(),
                    );
                }
                Operator::Attention(w) => {
                    match &w.qkv {
                        QkvWeights::Joined(w) => all.push(w),
                        QkvWeights::Apart {
                            q_proj,
                            k_proj,
                            v_proj,
                        } => all.extend([q_proj, k_proj, v_proj]),
                    }
                    all.push(&w.out_proj);
                    all.extend(
                        [&w.qkv_bias, &w.out_bias, &w.q_norm, &w.k_norm]
                            .into_iter()
                            .flatten(),
                    );
                }
            }
            match &l.ffn {
                FeedForward::Dense { gate_up, w2 } => {
                    match gate_up {
                        GateUpWeights::Joined(w) => all.push(w),
                        GateUpWeights::Apart { w1, w3 } => all.extend([w1, w3]),
                    }
                    all.push(w2);
                }
                FeedForward::Moe(w) => {
                    all.extend([&w.router, &w.gate.tensor, &w.down.tensor]);
                    all.extend(&w.expert_bias);
                    if !w.paired() {
                        all.push(&w.up.tensor);
                    }
                }
            }
        }
        all
    }

    pub fn parameter_count(&self) -> u64 {
        self.tensors().iter().map(|t| t.elements()).sum()
    }

    /// Parameters one token goes through: MoE layers count only top_k of their experts.
    pub fn active_parameter_count(&self) -> u64 {
        self.parameter_count() - self.idle_experts(|m| (m.rows * m.tensor.shape[2]) as u64)
    }

    /// Bytes of weights one decoded token reads, the numerator of decode's bandwidth:
    /// every tensor once, except the experts a MoE layer does not route to and, when
    /// an lm_head is separate, the embedding rows not gathered (tied, the embedding is
    /// read whole as the head).
    pub fn decode_weight_bytes(&self) -> u64 {
        let expert_bytes = |m: &ExpertMatrix| {
            let dtype = m.tensor.dtype;
            dtype.bytes_for(m.rows * m.tensor.shape[2]) as u64
        };
        let unread_embedding = match self.lm_head {
            Some(_) => {
                self.embed_tokens.bytes() / self.config.vocab_size as u64
                    * (self.config.vocab_size as u64 - 1)
            }
            None => 0,
        };
        self.weight_bytes() - self.idle_experts(expert_bytes) - unread_embedding
    }

    /// `size` of one expert's matrices, summed over the experts a token does not use.
    fn idle_experts(&self, size: impl Fn(&ExpertMatrix) -> u64) -> u64 {
        let Some(moe) = &self.config.moe else {
            return 0;
        };
        let idle_experts = (moe.n_experts - moe.top_k) as u64;
        self.layers
            .iter()
            .filter_map(|l| match &l.ffn {
                FeedForward::Moe(moe) => Some(
                    [&moe.gate, &moe.up, &moe.down]
                        .into_iter()
                        .map(&size)
                        .sum::<u64>()
                        * idle_experts,
                ),
                FeedForward::Dense { .. } => None,
            })
            .sum()
    }

    /// Tensors and bytes per element type, most bytes first (a Q4_K_M file mixes several).
    pub fn bytes_by_dtype(&self) -> Vec<(crate::dtype::DType, usize, u64)> {
        let mut by_type: Vec<(crate::dtype::DType, usize, u64)> = Vec::new();
        for t in self.tensors() {
            match by_type.iter_mut().find(|(d, _, _)| *d == t.dtype) {
                Some((_, count, bytes)) => {
                    *count += 1;
                    *bytes += t.bytes();
                }
                None => by_type.push((t.dtype, 1, t.bytes())),
            }
        }
        by_type.sort_by_key(|&(_, _, bytes)| std::cmp::Reverse(bytes));
        by_type
    }

    /// Bytes of weights resident in VRAM.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors().iter().map(|t| t.bytes()).sum()
    }

    /// Bytes the model's buffers take in VRAM: the weights, each buffer padded to 16
    /// bytes, and the zero bias.
    pub fn vram_bytes(&self) -> u64 {
        let buffers = self.tensors().into_iter().flat_map(|t| &t.buffers);
        buffers.map(wgpu::Buffer::size).sum::<u64>() + self.no_bias.size()
    }

    /// Buffers holding the weights: one per tensor, more where a tensor exceeds the
    /// device's `max_buffer_size`.
    pub fn weight_buffer_count(&self) -> usize {
        self.tensors().iter().map(|t| t.buffers.len()).sum()
    }
}
