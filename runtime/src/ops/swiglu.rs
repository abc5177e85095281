use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}
pub(super) const MIRROR: Mirror = mirror!(Params, Kernel::SwiGlu, "Params", [n]);

/// up (n_tokens, ff) = silu(gate) * up.
pub fn swiglu(
    gpu: &Gpu,
    label: &str,
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
    ff: usize,
) -> Result<Dispatch> {
    Dispatch::new(
        gpu,
        label,
        KernelKey::new(Kernel::SwiGlu, DType::F32),
        &[gate, up],
        &Params {
            n: ff as u32,
            _pad: [0; 3],
        },
        Grid::Threads {
            per_token: ff as u32,
            size: 256,
        },
    )
}
