use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    vec4s: u32,
    _pad: [u32; 3],
}
pub(super) const MIRROR: Mirror = mirror!(Params, Kernel::Copy, "Params", [vec4s]);

/// Enough workgroups to keep any GPU's memory busy; copy.wgsl strides over the rest.
const WORKGROUPS: u32 = 4096;

/// dst = src, both `bytes` long (a multiple of 16): the bandwidth probe's kernel.
pub fn copy(gpu: &Gpu, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) -> Result<Dispatch> {
    if bytes % 16 != 0 || bytes > src.size().min(dst.size()) {
        return Err(Error::Gpu(format!(
            "copy of {bytes} bytes between buffers of {} and {}",
            src.size(),
            dst.size()
        )));
    }
    let vec4s = (bytes / 16) as u32;
    Dispatch::new(
        gpu,
        "copy",
        KernelKey::new(Kernel::Copy, DType::F32),
        &[src, dst],
        &Params {
            vec4s,
            _pad: [0; 3],
        },
        Grid::Fixed(vec4s.div_ceil(256).min(WORKGROUPS)),
    )
}
