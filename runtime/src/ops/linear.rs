use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey, Step};

/// Shared by matvec.wgsl and matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    k: u32,
    n: u32,
    x_last: u32,
    out_at_pos: u32,
    accumulate: u32,
    has_bias: u32,
    _pad: [u32; 2],
}

/// Where a projection's result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearOutput {
    /// Row t of the batch.
    Rows,
    /// Row step.pos + t: keys and values land straight in the KV cache.
    CacheRows,
    /// Added to row t: the residual stream (the fused residual add).
    Accumulate,
    /// Only the batch's last token, into row 0: next-token logits.
    LastRow,
}

/// `out = x · weightᵀ (+ bias)`, weight (n, k) as PyTorch's `nn.Linear` stores it.
pub struct Linear<'a> {
    pub weight: &'a GpuTensor,
    pub bias: Option<&'a GpuTensor>,
    pub x: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    pub output: LinearOutput,
}

/// Matrix-vector for single-token batches, tiled matmul for longer ones.
/// `no_bias` is bound in place of an absent bias.
pub fn linear(gpu: &Gpu, op: Linear<'_>, no_bias: &wgpu::Buffer) -> Result<Step> {
    let [n, k] = op.weight.shape[..] else {
        return Err(Error::Gpu(format!("{} is not a matrix", op.weight.name)));
    };
    if op.weight.dtype != DType::F32 && k % 2 != 0 {
        return Err(Error::Gpu(format!(
            "{}: 16-bit weights need an even input width, found {k}",
            op.weight.name
        )));
    }
    if let Some(bias) = op.bias {
        if bias.dtype != op.weight.dtype {
            return Err(Error::Gpu(format!(
                "{} is {} but {} is {}",
                bias.name, bias.dtype, op.weight.name, op.weight.dtype
            )));
        }
    }
    let params = Params {
        k: k as u32,
        n: n as u32,
        x_last: (op.output == LinearOutput::LastRow) as u32,
        out_at_pos: (op.output == LinearOutput::CacheRows) as u32,
        accumulate: (op.output == LinearOutput::Accumulate) as u32,
        has_bias: op.bias.is_some() as u32,
        _pad: [0; 2],
    };
    let buffers = [
        op.x,
        &op.weight.buffer,
        op.bias.map_or(no_bias, |b| &b.buffer),
        op.out,
    ];
    let launch = |kernel, grid| {
        let key = KernelKey {
            kernel,
            dtype: op.weight.dtype,
        };
        Dispatch::new(gpu, op.weight.name.clone(), key, &buffers, &params, grid)
    };
    let one = launch(Kernel::Matvec, Grid::Fixed(n as u32))?;
    if op.output == LinearOutput::LastRow {
        return Ok(Step::Always(one));
    }
    let many = launch(
        Kernel::Matmul,
        Grid::Tiles {
            across: n.div_ceil(64) as u32,
            tokens_per_tile: 32,
        },
    )?;
    Ok(Step::BySize { one, many })
}
