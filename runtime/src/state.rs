//! A session's GPU memory, allocated once when the session is created: activations for
//! a batch of up to `batch` tokens, the attention KV cache, the conv state.

use crate::config::{LayerKind, ModelConfig};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::rope_table;

/// What one layer carries from batch to batch.
pub enum LayerState {
    /// (L - 1, hidden): the last L - 1 values of B·x, oldest first.
    Conv { conv_state: wgpu::Buffer },
    /// (max_context, kv_heads, head_dim) each, keys already normalised and rotated.
    Attention {
        k_cache: wgpu::Buffer,
        v_cache: wgpu::Buffer,
    },
}

/// Scratch of the sparse MoE feed-forward, shared by all MoE layers.
pub struct MoeState {
    pub router_logits: wgpu::Buffer, // (batch, experts)
    pub routes: wgpu::Buffer,        // (batch, top_k, 2) u32: expert, weight bits
    pub slots: wgpu::Buffer,         // (experts + experts · batch) u32: per-expert slot lists
    pub expert_gate: wgpu::Buffer,   // (batch · top_k, expert_ff)
    pub expert_up: wgpu::Buffer,     // (batch · top_k, expert_ff), then the SwiGLU output
    pub expert_out: wgpu::Buffer,    // (batch · top_k, hidden)
}

pub struct State {
    pub tokens: wgpu::Buffer,     // (batch) u32
    pub x: wgpu::Buffer,          // (batch, hidden): the residual stream
    pub xn: wgpu::Buffer,         // (batch, hidden): normalised input of the current op
    pub bcx: wgpu::Buffer,        // (batch, 3 · hidden): conv in_proj output (B, C, x)
    pub q: wgpu::Buffer,          // (batch, heads · head_dim)
    pub mixed: wgpu::Buffer,      // (batch, hidden): conv or attention output, before out_proj
    pub gate: wgpu::Buffer,       // (batch, ff): w1 x
    pub up: wgpu::Buffer,         // (batch, ff): w3 x, then silu(w1 x) · w3 x
    pub logits: wgpu::Buffer,     // (batch or 1, vocab)
    pub rope_table: wgpu::Buffer, // (max_context, head_dim / 2, 2)
    pub layers: Vec<LayerState>,
    pub moe: Option<MoeState>,
    /// Whether `logits` holds every row of the batch or only the last.
    pub all_logits: bool,
}

impl State {
    pub fn new(
        gpu: &Gpu,
        c: &ModelConfig,
        batch: usize,
        max_context: usize,
        all_logits: bool,
    ) -> Result<State> {
        let h = c.hidden_size;
        let layers = c
            .layers
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                Ok(match kind {
                    LayerKind::Conv => LayerState::Conv {
                        conv_state: gpu
                            .zeros(&format!("layer {i} conv state"), (c.conv_l_cache - 1) * h)?,
                    },
                    LayerKind::Attention => LayerState::Attention {
                        k_cache: gpu
                            .zeros(&format!("layer {i} k cache"), max_context * c.kv_dim())?,
                        v_cache: gpu
                            .zeros(&format!("layer {i} v cache"), max_context * c.kv_dim())?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let moe = match &c.moe {
            Some(m) => Some(MoeState {
                router_logits: gpu.zeros("router logits", batch * m.n_experts)?,
                routes: gpu.zeros("routes", batch * m.top_k * 2)?,
                slots: gpu.zeros("expert slots", m.n_experts * (1 + batch))?,
                expert_gate: gpu.zeros("expert gate", batch * m.top_k * m.expert_ff)?,
                expert_up: gpu.zeros("expert up", batch * m.top_k * m.expert_ff)?,
                expert_out: gpu.zeros("expert out", batch * m.top_k * h)?,
            }),
            None => None,
        };
        let table = rope_table(c.rope_theta, c.head_dim, max_context);
        Ok(State {
            tokens: gpu.zeros("tokens", batch)?,
            x: gpu.zeros("x", batch * h)?,
            xn: gpu.zeros("xn", batch * h)?,
            bcx: gpu.zeros("bcx", batch * 3 * h)?,
            q: gpu.zeros("q", batch * c.n_heads * c.head_dim)?,
            mixed: gpu.zeros("mixed", batch * h)?,
            gate: gpu.zeros("gate", batch * c.ff_size)?,
            up: gpu.zeros("up", batch * c.ff_size)?,
            logits: gpu.zeros("logits", if all_logits { batch } else { 1 } * c.vocab_size)?,
            rope_table: gpu.upload("rope table", bytemuck::cast_slice(&table))?,
            layers,
            moe,
            all_logits,
        })
    }

    /// Empties the conv state (the KV cache needs no clearing: positions are overwritten).
    pub fn clear(&self, encoder: &mut wgpu::CommandEncoder) {
        for layer in &self.layers {
            if let LayerState::Conv { conv_state } = layer {
                encoder.clear_buffer(conv_state, 0, None);
            }
        }
    }
}
