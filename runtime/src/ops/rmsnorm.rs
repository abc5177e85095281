use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::GpuTensor;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    eps: f32,
    _pad: [u32; 2],
}
pub(super) const MIRROR: Mirror = mirror!(Params, Kernel::RmsNorm, "Params", [n, eps]);

/// out (n_tokens, n) = RMSNorm(x) * weight, one row per token.
pub fn rmsnorm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    weight: &GpuTensor,
    eps: f32,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    Dispatch::new(
        gpu,
        weight.name.clone(),
        KernelKey::new(Kernel::RmsNorm, weight.dtype),
        &[x, weight.buffer()?, out],
        &Params {
            n: weight.shape[0] as u32,
            eps,
            _pad: [0; 2],
        },
        Grid::PerToken(1),
    )
}
