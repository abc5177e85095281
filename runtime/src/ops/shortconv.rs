use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::GpuTensor;
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    hidden: u32,
    l_cache: u32,
    has_bias: u32,
    _pad: u32,
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::ShortConv,
    "Params",
    [hidden, l_cache, has_bias]
);

/// The buffers of one conv layer's short convolution.
pub struct ShortConv<'a> {
    /// (hidden, 1, L): `conv.conv.weight`.
    pub weight: &'a GpuTensor,
    pub bias: Option<&'a GpuTensor>,
    /// (n_tokens, 3 · hidden): in_proj's B, C, x.
    pub bcx: &'a wgpu::Buffer,
    /// (L - 1, hidden): this session's conv state.
    pub state: &'a wgpu::Buffer,
    /// (L - 1, hidden): where a single token's launch keeps the state it found.
    pub previous: &'a wgpu::Buffer,
    /// (n_tokens, hidden): input of out_proj.
    pub out: &'a wgpu::Buffer,
}

fn launch(
    gpu: &Gpu,
    kernel: Kernel,
    op: &ShortConv<'_>,
    no_bias: &wgpu::Buffer,
) -> Result<Dispatch> {
    // (hidden, 1, L), checked at load.
    let (hidden, l_cache) = (op.weight.shape[0], op.weight.shape[2]);
    let grid = match kernel {
        Kernel::ShortConvState | Kernel::ShortConvToken => Grid::Fixed(hidden.div_ceil(256) as u32),
        _ => Grid::Threads {
            per_token: hidden as u32,
            size: 256,
        },
    };
    Dispatch::new(
        gpu,
        format!("{}:{kernel:?}", op.weight.name),
        KernelKey {
            bias: op.bias.map_or(DType::F32, |b| b.dtype),
            ..KernelKey::new(kernel, op.weight.dtype)
        },
        &[
            op.bcx,
            op.weight.buffer()?,
            op.bias.map_or(Ok(no_bias), |b| b.buffer())?,
            op.state,
            op.out,
            op.previous,
        ],
        &Params {
            hidden: hidden as u32,
            l_cache: l_cache as u32,
            has_bias: op.bias.is_some() as u32,
            _pad: 0,
        },
        grid,
    )
}

/// out = C · conv(B · x), reading earlier positions from the state.
pub fn shortconv(gpu: &Gpu, op: &ShortConv<'_>, no_bias: &wgpu::Buffer) -> Result<Dispatch> {
    launch(gpu, Kernel::ShortConv, op, no_bias)
}

/// `shortconv` then `shortconv_state` for a single token, in one launch.
pub fn shortconv_token(gpu: &Gpu, op: &ShortConv<'_>, no_bias: &wgpu::Buffer) -> Result<Dispatch> {
    launch(gpu, Kernel::ShortConvToken, op, no_bias)
}

/// Moves the conv state forward past this batch. Runs after `shortconv`.
pub fn shortconv_state(gpu: &Gpu, op: &ShortConv<'_>, no_bias: &wgpu::Buffer) -> Result<Dispatch> {
    launch(gpu, Kernel::ShortConvState, op, no_bias)
}
