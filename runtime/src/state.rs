//! A session's GPU memory, allocated once when the session is created: activations for
//! a batch of up to `batch` tokens, the conv state and its snapshots, and handles on
//! the KV pool's buffers and the session's page table. `State::planned_bytes` says
//! what `State::new` will allocate, so a VRAM budget can be planned before anything is
//! allocated.

use crate::config::{LayerKind, ModelConfig};
use crate::dtype::KvDtype;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kv_pool::{blocks_for, KvPool};
use crate::ops::{partials_len, rope_table};

/// What one layer carries from batch to batch.
pub enum LayerState {
    Conv {
        /// (L - 1, hidden) f32: the last L - 1 values of B·x, oldest first.
        conv_state: wgpu::Buffer,
        /// (slots, L - 1, hidden) f32: slot 0 holds the conv state at the session's
        /// rewind floor, slot k > 0 the state after `k · snapshot_interval` tokens.
        snapshots: wgpu::Buffer,
        /// (L - 1, hidden) f32: the state before the last single token fed, from which
        /// that token can be taken back.
        previous: wgpu::Buffer,
    },
    /// The KV pool's buffers for this layer, (blocks · BLOCK_TOKENS, kv_heads,
    /// head_dim) each, f32 or f16 pairs packed in u32 words; keys already normalised
    /// and rotated. Shared with the pool's other sessions.
    Attention {
        k_cache: wgpu::Buffer,
        v_cache: wgpu::Buffer,
    },
}

/// One conv layer's buffers (`LayerState::Conv`).
pub struct ConvBuffers<'a> {
    pub state: &'a wgpu::Buffer,
    pub snapshots: &'a wgpu::Buffer,
    pub previous: &'a wgpu::Buffer,
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

/// The sizes a state is allocated for (already clamped by the session).
#[derive(Clone, Copy, Debug)]
pub struct StateShape {
    pub batch: usize,
    pub max_context: usize,
    pub all_logits: bool,
    pub kv_dtype: KvDtype,
    pub snapshot_interval: usize,
}

impl StateShape {
    /// Conv snapshot slots: the floor, then one per full interval of the context.
    pub fn snapshot_slots(&self) -> usize {
        self.max_context / self.snapshot_interval + 1
    }

    fn logits_rows(&self) -> usize {
        if self.all_logits {
            self.batch
        } else {
            1
        }
    }
}

pub struct State {
    pub tokens: wgpu::Buffer,     // (batch) u32
    pub x: wgpu::Buffer,          // (batch, hidden): the residual stream
    pub xn: wgpu::Buffer,         // (batch, hidden): normalised input of the current op
    pub bcx: wgpu::Buffer, // (batch, 3 · hidden): conv in_proj output (B, C, x); empty without conv layers
    pub qkv: wgpu::Buffer, // (batch, qkv_dim): q, k, v side by side (k and v before the cache)
    pub mixed: wgpu::Buffer, // (batch, max(hidden, heads · head_dim)): conv or attention output, before out_proj
    pub partials: wgpu::Buffer, // a single token's attention over split keys: partial results (ops::partials_len)
    pub gate: wgpu::Buffer,     // (batch, ff): w1 x
    pub up: wgpu::Buffer,       // (batch, ff): w3 x, then silu(w1 x) · w3 x
    pub logits: wgpu::Buffer,   // (batch or 1, vocab)
    pub rope_table: wgpu::Buffer, // (max_context, head_dim / 2, 2)
    pub pages: wgpu::Buffer,    // (max_context / BLOCK_TOKENS) u32: the page table
    pub layers: Vec<LayerState>,
    pub moe: Option<MoeState>,
    pub shape: StateShape,
}

/// f32 elements of every activation buffer, in allocation order (label, elements).
fn activations(c: &ModelConfig, s: &StateShape) -> [(&'static str, usize); 10] {
    let (b, h) = (s.batch, c.hidden_size);
    [
        ("tokens", b),
        ("x", b * h),
        ("xn", b * h),
        ("bcx", if c.has_conv_layers() { b * 3 * h } else { 0 }),
        ("qkv", b * c.qkv_dim()),
        ("mixed", b * h.max(c.q_dim())),
        ("attention partials", partials_len(c)),
        ("gate", b * c.ff_size),
        ("up", b * c.ff_size),
        ("logits", s.logits_rows() * c.vocab_size),
    ]
}

/// f32 elements of the MoE scratch buffers.
fn moe_elements(c: &ModelConfig, batch: usize) -> [usize; 6] {
    let Some(m) = &c.moe else {
        return [0; 6];
    };
    let slots = batch * m.top_k;
    [
        batch * m.n_experts,
        slots * 2,
        m.n_experts * (1 + batch),
        slots * m.expert_ff,
        slots * m.expert_ff,
        slots * c.hidden_size,
    ]
}

fn conv_state_len(c: &ModelConfig) -> usize {
    (c.conv_l_cache - 1) * c.hidden_size
}

/// `Gpu::zeros` rounds an empty buffer up to one element.
fn bytes(elements: usize) -> u64 {
    elements.max(1) as u64 * 4
}

impl State {
    /// The state of a session whose KV cache lives in `pool`, through `pages`.
    pub fn new(
        gpu: &Gpu,
        c: &ModelConfig,
        shape: StateShape,
        pool: &KvPool,
        pages: &wgpu::Buffer,
    ) -> Result<State> {
        let mut kv = pool.layers().iter();
        let layers = c
            .layers
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                Ok(match kind {
                    LayerKind::Conv => LayerState::Conv {
                        conv_state: gpu
                            .zeros(&format!("layer {i} conv state"), conv_state_len(c))?,
                        snapshots: gpu.zeros(
                            &format!("layer {i} conv snapshots"),
                            shape.snapshot_slots() * conv_state_len(c),
                        )?,
                        previous: gpu
                            .zeros(&format!("layer {i} previous conv state"), conv_state_len(c))?,
                    },
                    LayerKind::Attention => {
                        let (k_cache, v_cache) = kv.next().cloned().ok_or_else(|| {
                            crate::error::Error::Gpu(format!(
                                "layer {i}: the KV pool has no buffers for it"
                            ))
                        })?;
                        LayerState::Attention { k_cache, v_cache }
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let moe = match &c.moe {
            Some(_) => {
                let [router, routes, slots, gate, up, out] = moe_elements(c, shape.batch);
                Some(MoeState {
                    router_logits: gpu.zeros("router logits", router)?,
                    routes: gpu.zeros("routes", routes)?,
                    slots: gpu.zeros("expert slots", slots)?,
                    expert_gate: gpu.zeros("expert gate", gate)?,
                    expert_up: gpu.zeros("expert up", up)?,
                    expert_out: gpu.zeros("expert out", out)?,
                })
            }
            None => None,
        };
        let [tokens, x, xn, bcx, qkv, mixed, partials, gate, up, logits] =
            activations(c, &shape).map(|(label, len)| gpu.zeros(label, len));
        let table = rope_table(&c.rope, c.head_dim, shape.max_context);
        Ok(State {
            tokens: tokens?,
            x: x?,
            xn: xn?,
            bcx: bcx?,
            qkv: qkv?,
            mixed: mixed?,
            partials: partials?,
            gate: gate?,
            up: up?,
            logits: logits?,
            rope_table: gpu.upload("rope table", bytemuck::cast_slice(&table))?,
            pages: pages.clone(),
            layers,
            moe,
            shape,
        })
    }

    /// Bytes `State::new` allocates for `shape`, with the page table and without the
    /// KV pool.
    pub fn planned_bytes(c: &ModelConfig, shape: &StateShape) -> u64 {
        let activations: u64 = activations(c, shape)
            .iter()
            .map(|&(_, n)| Gpu::zeros_bytes(n))
            .sum();
        let moe: u64 = match c.moe {
            Some(_) => moe_elements(c, shape.batch)
                .iter()
                .map(|&n| Gpu::zeros_bytes(n))
                .sum(),
            None => 0,
        };
        let rope = (shape.max_context * c.head_dim * 4) as u64;
        let pages = Gpu::zeros_bytes(blocks_for(shape.max_context));
        let layers: u64 = c
            .layers
            .iter()
            .map(|kind| match kind {
                LayerKind::Conv => {
                    2 * Gpu::zeros_bytes(conv_state_len(c))
                        + Gpu::zeros_bytes(shape.snapshot_slots() * conv_state_len(c))
                }
                LayerKind::Attention => 0,
            })
            .sum();
        activations + moe + rope + pages + layers
    }

    /// Bytes of every buffer this state allocated (the KV pool's are not its own).
    pub fn allocated_bytes(&self) -> u64 {
        let mut buffers = vec![
            &self.tokens,
            &self.x,
            &self.xn,
            &self.bcx,
            &self.qkv,
            &self.mixed,
            &self.partials,
            &self.gate,
            &self.up,
            &self.logits,
            &self.rope_table,
            &self.pages,
        ];
        buffers.extend(
            self.conv_layers()
                .flat_map(|c| [c.state, c.snapshots, c.previous]),
        );
        if let Some(m) = &self.moe {
            buffers.extend([
                &m.router_logits,
                &m.routes,
                &m.slots,
                &m.expert_gate,
                &m.expert_up,
                &m.expert_out,
            ]);
        }
        buffers.iter().map(|b| b.size()).sum()
    }

    /// Bytes of one conv layer's state (and of one snapshot slot).
    pub fn conv_state_bytes(&self, c: &ModelConfig) -> u64 {
        bytes(conv_state_len(c))
    }

    /// Each conv layer's buffers, in layer order.
    pub fn conv_layers(&self) -> impl Iterator<Item = ConvBuffers<'_>> {
        self.layers.iter().filter_map(|l| match l {
            LayerState::Conv {
                conv_state,
                snapshots,
                previous,
            } => Some(ConvBuffers {
                state: conv_state,
                snapshots,
                previous,
            }),
            LayerState::Attention { .. } => None,
        })
    }
}
