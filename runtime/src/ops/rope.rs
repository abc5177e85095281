use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::GpuTensor;
use crate::config::{ModelConfig, Rope as RopeConfig};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    head_dim: u32,
    n_heads: u32,
    eps: f32,
    has_norm: u32,
    attention_factor: f32,
    temperature_beta: f32,
    temperature_floor: u32,
    _pad: u32,
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::Rope,
    "Params",
    [
        head_dim,
        n_heads,
        eps,
        has_norm,
        attention_factor,
        temperature_beta,
        temperature_floor
    ]
);

/// The q or k heads of one attention layer, for [`rope`].
pub struct Rope<'a> {
    pub label: &'a str,
    /// (head_dim): q/k_layernorm, shared by all heads; `None` where the model has none.
    pub norm: Option<&'a GpuTensor>,
    /// The session's cos/sin table ([`rope_table`]).
    pub table: &'a wgpu::Buffer,
    /// (n_tokens, heads, head_dim), rotated in place.
    pub x: &'a wgpu::Buffer,
    pub heads: usize,
    /// Whether these are q's heads, which the attention temperature scales.
    pub is_q: bool,
}

/// Per-head RMSNorm (where the model has one), then RoPE with the config's attention
/// factor, then for q the attention temperature, in place: token t is at position
/// step.pos + t.
pub fn rope(gpu: &Gpu, c: &ModelConfig, op: &Rope<'_>, none: &wgpu::Buffer) -> Result<Dispatch> {
    let temperature = c.rope.temperature.filter(|_| op.is_q);
    let norm = match op.norm {
        Some(norm) => norm.buffer()?,
        None => none,
    };
    Dispatch::new(
        gpu,
        format!("{}:{}", op.label, if op.is_q { "q" } else { "k" }),
        KernelKey::new(Kernel::Rope, op.norm.map_or(DType::F32, |n| n.dtype)),
        &[norm, op.table, op.x],
        &Params {
            head_dim: c.head_dim as u32,
            n_heads: op.heads as u32,
            eps: c.norm_eps,
            has_norm: op.norm.is_some() as u32,
            attention_factor: c.rope.attention_factor(),
            temperature_beta: temperature.map_or(0.0, |t| t.beta),
            // Positions fit u32 (MAX_CONTEXT); 1 where unused keeps the division defined.
            temperature_floor: temperature.map_or(1, |t| t.floor_scale as u32),
            _pad: 0,
        },
        Grid::PerToken(op.heads as u32),
    )
}

/// (max_pos, head_dim / 2, 2) cos and sin of the rotation angles, computed as
/// transformers does: angle = pos · inv_freq rounded to f32, then cos and sin of that
/// f32 angle. The attention factor is applied by the kernel, so that the context shift
/// can rotate by the same table.
pub fn rope_table(rope: &RopeConfig, head_dim: usize, max_pos: usize) -> Vec<f32> {
    let inv_freq = rope.inv_freq(head_dim);
    let mut table = Vec::with_capacity(max_pos * head_dim);
    for pos in 0..max_pos {
        for &f in &inv_freq {
            let angle = pos as f32 * f;
            table.push((angle as f64).cos() as f32);
            table.push((angle as f64).sin() as f32);
        }
    }
    table
}
