use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    hidden: u32,
    _pad: [u32; 3],
}

/// out (n_tokens, hidden) = table[tokens].
pub fn embedding(
    gpu: &Gpu,
    tokens: &wgpu::Buffer,
    table: &GpuTensor,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let hidden = table.shape[1] as u32;
    Dispatch::new(
        gpu,
        "embed_tokens",
        KernelKey {
            kernel: Kernel::Embedding,
            dtype: table.dtype,
        },
        &[tokens, &table.buffer, out],
        &Params {
            hidden,
            _pad: [0; 3],
        },
        Grid::Threads {
            per_token: hidden,
            size: 256,
        },
    )
}
