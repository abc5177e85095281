use bytemuck::{Pod, Zeroable};

use super::GpuTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey, Step};

/// Shared by matvec.wgsl and matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct Params {
    k: u32,
    n: u32,
    x_last: u32,
    out_at_pos: u32,
    accumulate: u32,
    has_bias: u32,
    experts: u32,
    top_k: u32,
    expert_stride: u32,
    row_offset: u32,
    x_per_slot: u32,
    _pad: u32,
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

/// One matrix of every expert, `rows` × k each, inside a stacked (experts, …, k)
/// tensor, starting at row `row_offset` of each expert (the up half of `gate_up_proj`).
pub struct ExpertMatrix {
    pub tensor: GpuTensor,
    pub rows: usize,
    pub row_offset: usize,
}

/// Each routed slot (t · top_k + s) multiplied by the matrix of the expert it chose.
pub struct ExpertLinear<'a> {
    pub weight: &'a ExpertMatrix,
    /// (n_tokens, k), or (n_tokens · top_k, k) with `x_per_slot`.
    pub x: &'a wgpu::Buffer,
    pub x_per_slot: bool,
    /// (n_tokens · top_k, rows).
    pub out: &'a wgpu::Buffer,
    pub top_k: usize,
    /// moe.wgsl's `routes` (decode reads the experts there) and `slots` (prefill's lists).
    pub routes: &'a wgpu::Buffer,
    pub slots: &'a wgpu::Buffer,
}

const TILE_N: usize = 64;
const TILE_T: u32 = 32;

fn check_width(weight: &GpuTensor, k: usize) -> Result<()> {
    if weight.dtype != DType::F32 && k % 2 != 0 {
        return Err(Error::Gpu(format!(
            "{}: 16-bit weights need an even input width, found {k}",
            weight.name
        )));
    }
    Ok(())
}

/// A matvec.wgsl or matmul.wgsl launch over `buffers` (x, weight, bias, routing, out).
fn launch(
    gpu: &Gpu,
    kernel: Kernel,
    weight: &GpuTensor,
    buffers: [&wgpu::Buffer; 5],
    params: &Params,
    grid: Grid,
) -> Result<Dispatch> {
    let key = KernelKey {
        kernel,
        dtype: weight.dtype,
    };
    Dispatch::new(gpu, weight.name.clone(), key, &buffers, params, grid)
}

fn matmul_grid(tiles_across: usize) -> Grid {
    Grid::Tiles {
        across: tiles_across as u32,
        tokens_per_tile: TILE_T,
    }
}

/// Matrix-vector for single-token batches, tiled matmul for longer ones.
/// `none` is bound in place of an absent bias and of the routing buffer.
pub fn linear(gpu: &Gpu, op: Linear<'_>, none: &wgpu::Buffer) -> Result<Step> {
    let [n, k] = op.weight.shape[..] else {
        return Err(Error::Gpu(format!("{} is not a matrix", op.weight.name)));
    };
    check_width(op.weight, k)?;
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
        ..Params::default()
    };
    let bias = op.bias.map_or(none, |b| &b.buffer);
    let buffers = [op.x, &op.weight.buffer, bias, none, op.out];
    let one = launch(
        gpu,
        Kernel::Matvec,
        op.weight,
        buffers,
        &params,
        Grid::Fixed(n as u32),
    )?;
    if op.output == LinearOutput::LastRow {
        return Ok(Step::Always(one));
    }
    let many = launch(
        gpu,
        Kernel::Matmul,
        op.weight,
        buffers,
        &params,
        matmul_grid(n.div_ceil(TILE_N)),
    )?;
    Ok(Step::BySize { one, many })
}

/// The expert matmuls of a MoE layer: for one token, `top_k` matvecs reading only the
/// chosen experts; for a batch, a tiled matmul per expert over the slots that chose it.
pub fn expert_linear(gpu: &Gpu, op: ExpertLinear<'_>, none: &wgpu::Buffer) -> Result<Step> {
    let w = op.weight;
    let [n_experts, stacked_rows, k] = w.tensor.shape[..] else {
        return Err(Error::Gpu(format!(
            "{} is not a stack of matrices",
            w.tensor.name
        )));
    };
    check_width(&w.tensor, k)?;
    let params = Params {
        k: k as u32,
        n: w.rows as u32,
        experts: n_experts as u32,
        top_k: op.top_k as u32,
        expert_stride: (stacked_rows * k) as u32,
        row_offset: w.row_offset as u32,
        x_per_slot: op.x_per_slot as u32,
        ..Params::default()
    };
    let (x, weight, out) = (op.x, &w.tensor.buffer, op.out);
    let slot_rows = Grid::Fixed((op.top_k * w.rows) as u32);
    let one = launch(
        gpu,
        Kernel::Matvec,
        &w.tensor,
        [x, weight, none, op.routes, out],
        &params,
        slot_rows,
    )?;
    let tiles = matmul_grid(n_experts * w.rows.div_ceil(TILE_N));
    let many = launch(
        gpu,
        Kernel::Matmul,
        &w.tensor,
        [x, weight, none, op.slots, out],
        &params,
        tiles,
    )?;
    Ok(Step::BySize { one, many })
}
