use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::linear::{check_width, matvec, InputNorm, MatvecRows, Params as LinearParams};
use super::split::row_parts;
use super::GpuTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};
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

/// A conv layer's in_proj and short conv for a single token in one launch (matvec.wgsl
/// `conv`): `in_proj` (3 · hidden, k) applied to `x` (normalized by `norm` where there
/// is one), then C · conv(B · x) into `op.out`, the state moving on as
/// [`shortconv_token`] moves it. `None` where the layer's weights do not allow it: a
/// bias (of in_proj or the conv), or an in_proj larger than one binding; the two
/// launches run then.
pub fn conv_in_proj<'a>(
    gpu: &Gpu,
    op: &ShortConv<'a>,
    in_proj: &GpuTensor,
    in_proj_bias: Option<&GpuTensor>,
    x: &'a wgpu::Buffer,
    norm: Option<InputNorm<'a>>,
    none: &'a wgpu::Buffer,
) -> Result<Option<Dispatch>> {
    if op.bias.is_some() || in_proj_bias.is_some() || row_parts(gpu, in_proj)?.len() != 1 {
        return Ok(None);
    }
    let (hidden, l_cache) = (op.weight.shape[0], op.weight.shape[2]);
    let [rows, k] = in_proj.shape[..] else {
        return Err(Error::Gpu(format!("{} is not a matrix", in_proj.name)));
    };
    if rows != 3 * hidden {
        return Err(Error::Gpu(format!(
            "{}: {rows} rows are not B, C and x of {hidden} channels",
            in_proj.name
        )));
    }
    check_width(in_proj, k)?;
    let params = LinearParams {
        k: k as u32,
        n: hidden as u32,
        out_stride: hidden as u32,
        conv_len: l_cache as u32,
        ..LinearParams::default()
    };
    let rows = MatvecRows::Conv {
        state: op.state,
        previous: op.previous,
    };
    // The conv weight is bound where a bias would be, its dtype the bias's.
    let buffers = [x, in_proj.buffer()?, op.weight.buffer()?, none, op.out]
        .map(|b| b.as_entire_buffer_binding());
    let grid = Grid::Fixed(gpu.tuning.matvec_workgroups(hidden, 1));
    let one = matvec(
        gpu,
        in_proj,
        Some(op.weight),
        norm,
        rows,
        buffers,
        &params,
        none,
        grid,
    )?;
    Ok(Some(one))
}
