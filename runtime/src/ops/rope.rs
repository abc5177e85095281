use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::GpuTensor;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    head_dim: u32,
    n_heads: u32,
    eps: f32,
    _pad: u32,
}
pub(super) const MIRROR: Mirror = mirror!(Params, Kernel::Rope, "Params", [head_dim, n_heads, eps]);

/// Per-head RMSNorm (`norm`, shared by all heads) then RoPE, in place on `x`
/// (n_tokens, n_heads, head_dim): token t is at position step.pos + t.
pub fn rope(
    gpu: &Gpu,
    norm: &GpuTensor,
    table: &wgpu::Buffer,
    x: &wgpu::Buffer,
    n_heads: usize,
    eps: f32,
) -> Result<Dispatch> {
    Dispatch::new(
        gpu,
        norm.name.clone(),
        KernelKey::new(Kernel::Rope, norm.dtype),
        &[norm.buffer()?, table, x],
        &Params {
            head_dim: norm.shape[0] as u32,
            n_heads: n_heads as u32,
            eps,
            _pad: 0,
        },
        Grid::PerToken(n_heads as u32),
    )
}

/// (max_pos, head_dim / 2, 2) cos and sin of the rotation angles, computed as
/// transformers does: inv_freq = 1 / theta^(2i / d) and angle = pos · inv_freq, both
/// rounded to f32, then cos and sin of that f32 angle.
pub fn rope_table(theta: f32, head_dim: usize, max_pos: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            1.0 / (theta as f64).powf(exponent as f64) as f32
        })
        .collect();
    let mut table = Vec::with_capacity(max_pos * half * 2);
    for pos in 0..max_pos {
        for &f in &inv_freq {
            let angle = pos as f32 * f;
            table.push((angle as f64).cos() as f32);
            table.push((angle as f64).sin() as f32);
        }
    }
    table
}
