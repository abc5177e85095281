use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}
pub(super) const MIRROR: Mirror = mirror!(Params, Kernel::Argmax, "Params", [n]);

/// The index of the largest of the first `n` values of `logits` (the first on ties,
/// NaNs as −∞), written as a u32 into the first word of `out`: greedy decoding's pick
/// without reading the row back.
pub fn argmax(gpu: &Gpu, logits: &wgpu::Buffer, n: usize, out: &wgpu::Buffer) -> Result<Dispatch> {
    if n == 0 || n as u64 * 4 > logits.size() {
        return Err(Error::Gpu(format!(
            "argmax over {n} logits in a buffer of {} bytes",
            logits.size()
        )));
    }
    Dispatch::new(
        gpu,
        "argmax",
        KernelKey::new(Kernel::Argmax, DType::F32),
        &[logits, out],
        &Params {
            n: n as u32,
            _pad: [0; 3],
        },
        Grid::Fixed(1),
    )
}
