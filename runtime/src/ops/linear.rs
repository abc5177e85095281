use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::split::row_parts;
use super::GpuTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey, Prefill, Step};

/// shaders/linear_params.wgsl: shared by matvec, matmul and matmul_rows.
#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) k: u32,
    pub(super) n: u32,
    pub(super) x_last: u32,
    pub(super) out_col: u32,
    pub(super) accumulate: u32,
    pub(super) has_bias: u32,
    pub(super) experts: u32,
    pub(super) top_k: u32,
    pub(super) expert_stride: u32,
    pub(super) row_offset: u32,
    pub(super) x_per_slot: u32,
    pub(super) out_stride: u32,
    pub(super) expert_first: u32,
    pub(super) expert_count: u32,
    pub(super) gated: u32,
    pub(super) combine: u32,
    pub(super) norm_eps: f32,
    pub(super) conv_len: u32,
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::Matvec,
    "Params",
    [
        k,
        n,
        x_last,
        out_col,
        accumulate,
        has_bias,
        experts,
        top_k,
        expert_stride,
        row_offset,
        x_per_slot,
        out_stride,
        expert_first,
        expert_count,
        gated,
        combine,
        norm_eps,
        conv_len
    ]
);

/// Where a projection's result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearOutput {
    /// Row t of the batch.
    Rows,
    /// Added to row t: the residual stream (the fused residual add).
    Accumulate,
    /// Only the batch's last token, into row 0: next-token logits.
    LastRow,
    /// Columns `first ..` of row t, of rows `width` wide: one projection's share of an
    /// output several write side by side (q's, k's or v's columns of `State::qkv`). Its
    /// bias covers the whole row, this projection's part from `first`.
    Columns { first: usize, width: usize },
}

/// `out = x · weightᵀ (+ bias)`, weight (n, k) as PyTorch's `nn.Linear` stores it.
pub struct Linear<'a> {
    pub weight: &'a GpuTensor,
    pub bias: Option<&'a GpuTensor>,
    pub x: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    pub output: LinearOutput,
    /// SwiGLU's gate, laid out as `out` (f32): a single token's matvec then writes
    /// silu(gate) · y, the up projection and SwiGLU in one launch, while a batch's
    /// writes y and leaves SwiGLU to a launch of its own. Not with a bias.
    pub gate: Option<&'a wgpu::Buffer>,
    /// The RMSNorm that made `x`, which a single token's matvec applies itself.
    pub norm: Option<InputNorm<'a>>,
}

/// An input normalized inside the projection: a single token's matvec reads the rows
/// `residual` and applies RMSNorm(weight, eps) to them as it loads them, so that the
/// norm takes no launch of its own; a batch reads `x`, the norm's output, written by a
/// launch of its own (`Step::Batch`).
#[derive(Clone, Copy)]
pub struct InputNorm<'a> {
    pub weight: &'a GpuTensor,
    pub eps: f32,
    pub residual: &'a wgpu::Buffer,
}

impl InputNorm<'_> {
    /// Whether a projection can normalize an input `width` wide (it reads x four at a time).
    pub fn fits(width: usize) -> bool {
        width % 4 == 0
    }
}

/// SwiGLU's gate and up projections joined in one (2 · ff, k) matrix, the gate's rows
/// first: a single token's matvec writes silu(gate · x) · (up · x) into `up`, one
/// launch reading each weight once; a batch's matmuls write the gate's rows into `gate`
/// and the up's into `up`, its SwiGLU a launch of its own. The matrix fits one binding.
pub struct GateUp<'a> {
    pub weight: &'a GpuTensor,
    pub x: &'a wgpu::Buffer,
    pub gate: &'a wgpu::Buffer,
    pub up: &'a wgpu::Buffer,
    pub norm: Option<InputNorm<'a>>,
}

const TILE_N: usize = 64;
/// Tokens per tile of matmul.wgsl.
const TILE_T: u32 = 32;

pub(super) fn check_width(weight: &GpuTensor, k: usize) -> Result<()> {
    if weight.dtype != DType::F32 && k % 2 != 0 {
        return Err(Error::Gpu(format!(
            "{}: 16-bit weights need an even input width, found {k}",
            weight.name
        )));
    }
    Ok(())
}

/// What a batch's projection computes: `rows` outputs of each of `matrices` matrices,
/// each taking `per_token` of a batch's rows per token on average.
pub(super) struct BatchShape {
    rows: usize,
    matrices: usize,
    per_token: f64,
}

impl BatchShape {
    pub(super) fn dense(rows: usize) -> BatchShape {
        BatchShape {
            rows,
            matrices: 1,
            per_token: 1.0,
        }
    }

    /// `matrices` experts of a MoE layer of `n_experts`, each token routed to `top_k`.
    pub(super) fn experts(
        rows: usize,
        matrices: usize,
        n_experts: usize,
        top_k: usize,
    ) -> BatchShape {
        BatchShape {
            rows,
            matrices,
            per_token: top_k as f64 / n_experts.max(1) as f64,
        }
    }
}

/// A batch's projection over `buffers` (x, weight, bias, routing, out): the adapter's
/// prefill kernel, in tiles of fewer tokens for small batches.
pub(super) fn prefill(
    gpu: &Gpu,
    weight: &GpuTensor,
    bias: Option<&GpuTensor>,
    buffers: [wgpu::BufferBinding<'_>; 5],
    params: &Params,
    shape: BatchShape,
) -> Result<Dispatch> {
    let BatchShape {
        rows,
        matrices,
        per_token,
    } = shape;
    let key = |kernel, tokens| KernelKey {
        bias: bias.map_or(DType::F32, |b| b.dtype),
        tokens,
        ..KernelKey::new(kernel, weight.dtype)
    };
    let grid = |rows_per_tile: usize, tokens_per_tile| Grid::Tiles {
        across: (matrices * rows.div_ceil(rows_per_tile)) as u32,
        tokens_per_tile,
    };
    let (kernel, rows_per_tile, tile) = match gpu.tuning.prefill {
        Prefill::Tiled => (Kernel::Matmul, TILE_N, TILE_T),
        Prefill::Rows {
            workgroup,
            rows_per_thread,
            tokens_per_thread,
        } => (
            Kernel::MatmulRows,
            (workgroup * rows_per_thread) as usize,
            tokens_per_thread,
        ),
    };
    let tiled = |tokens| (key(kernel, tokens), grid(rows_per_tile, tokens));
    let (large, large_grid) = tiled(tile);
    let mut launch = Dispatch::with_ranges(
        gpu,
        weight.name.clone(),
        large,
        &buffers,
        params,
        large_grid,
    )?;
    // Small batches, which would leave a tile mostly empty, take tiles of a quarter and
    // of a half of its tokens (the tiled kernel's 8 and 16 of 32; a CPU adapter's
    // register blocks, 4 and 8 of 16): those that give each matrix up to that many rows
    // on average.
    for small_tile in [tile / 4, tile / 2].into_iter().filter(|&t| t > 0) {
        let up_to = (f64::from(small_tile) / per_token) as u32;
        let (small, small_grid) = tiled(small_tile);
        launch = launch.with_small_batches(gpu, small, small_grid, up_to)?;
    }
    Ok(launch)
}

/// What a matvec's rows are and what it makes of them.
#[derive(Clone, Copy)]
pub(super) enum MatvecRows<'a> {
    /// One output per row.
    Plain,
    /// SwiGLU's gate rows then its up rows: silu(gate) · up.
    Paired,
    /// LFM2's in_proj (B, C, x rows), then its short conv over `state`, which moves on,
    /// keeping the state it found in `previous` (matvec.wgsl's `conv`).
    Conv {
        state: &'a wgpu::Buffer,
        previous: &'a wgpu::Buffer,
    },
}

/// A matvec.wgsl launch over `buffers` (x, weight, bias, routing, out), its input
/// normalized by `norm` where there is one (x is then the norm's residual rows), its
/// rows as `rows` says.
#[allow(clippy::too_many_arguments)]
pub(super) fn matvec<'a>(
    gpu: &Gpu,
    weight: &GpuTensor,
    bias: Option<&GpuTensor>,
    norm: Option<InputNorm<'a>>,
    rows: MatvecRows<'a>,
    [x, w, b, routing, out]: [wgpu::BufferBinding<'a>; 5],
    params: &Params,
    none: &'a wgpu::Buffer,
    grid: Grid,
) -> Result<Dispatch> {
    let k = weight.shape.last().copied().unwrap_or(0);
    if norm.is_some_and(|n| !InputNorm::fits(k) || n.weight.shape != [k]) {
        return Err(Error::Gpu(format!(
            "{}: cannot normalize an input {k} wide by {}",
            weight.name,
            norm.map_or(String::new(), |n| format!("{:?}", n.weight.shape))
        )));
    }
    let kernel = match rows {
        MatvecRows::Conv { .. } => Kernel::MatvecConv,
        _ => Kernel::Matvec,
    };
    let key = KernelKey {
        bias: bias.map_or(DType::F32, |b| b.dtype),
        norm: norm.map(|n| n.weight.dtype),
        paired: matches!(rows, MatvecRows::Paired),
        ..KernelKey::new(kernel, weight.dtype)
    };
    let (x, norm_weight, params) = match norm {
        Some(n) => (
            n.residual.as_entire_buffer_binding(),
            n.weight.buffer()?,
            Params {
                norm_eps: n.eps,
                ..*params
            },
        ),
        None => (x, none, *params),
    };
    let mut buffers = vec![
        x,
        w,
        b,
        routing,
        out,
        norm_weight.as_entire_buffer_binding(),
    ];
    if let MatvecRows::Conv { state, previous } = rows {
        buffers.extend([state, previous].map(|b| b.as_entire_buffer_binding()));
    }
    let dispatch = Dispatch::with_ranges(gpu, weight.name.clone(), key, &buffers, &params, grid)?;
    Ok(dispatch.reading(matvec_weight_bytes(weight, rows, &params)))
}

/// The weight bytes a matvec launch reads: its rows of each slot (a dense one's only
/// slot; of an expert binding, the slots whose experts it holds, `top_k` spread evenly
/// over the parts).
fn matvec_weight_bytes(weight: &GpuTensor, rows: MatvecRows<'_>, params: &Params) -> u64 {
    let k = weight.shape.last().copied().unwrap_or(0);
    let sets = match rows {
        MatvecRows::Plain => 1,
        MatvecRows::Paired => 2,
        MatvecRows::Conv { .. } => 3,
    };
    let slot = (sets * params.n as usize * weight.dtype.bytes_for(k)) as u64;
    match params.experts {
        0 => slot,
        experts => slot * u64::from(params.top_k * params.expert_count) / u64::from(experts),
    }
}

/// Matrix-vector for single-token batches, a matmul for longer ones; a weight
/// larger than one binding is multiplied one row range (output columns) at a time.
/// `none` is bound in place of an absent bias and of the routing buffer.
pub fn linear<'a>(gpu: &Gpu, op: Linear<'a>, none: &'a wgpu::Buffer) -> Result<Step> {
    let [n, k] = op.weight.shape[..] else {
        return Err(Error::Gpu(format!("{} is not a matrix", op.weight.name)));
    };
    check_width(op.weight, k)?;
    if op.gate.is_some() && op.bias.is_some() {
        return Err(Error::Gpu(format!(
            "{}: a gated projection has no bias",
            op.weight.name
        )));
    }
    // Where the rows go: columns `first .. first + n` of rows `width` wide.
    let (first, width) = match op.output {
        LinearOutput::Columns { first, width } => (first, width),
        _ => (0, n),
    };
    if first + n > width {
        return Err(Error::Gpu(format!(
            "{}: columns {first}..{} of rows {width} wide",
            op.weight.name,
            first + n
        )));
    }
    if let Some(b) = op.bias.filter(|b| b.shape != [width]) {
        return Err(Error::Gpu(format!(
            "{}: shape {:?}, the output rows are {width} wide",
            b.name, b.shape
        )));
    }
    let bias = op.bias.map_or(Ok(none), |b| b.buffer())?;
    let steps = row_parts(gpu, op.weight)?
        .into_iter()
        .map(|part| {
            let params = Params {
                k: k as u32,
                n: part.rows as u32,
                x_last: (op.output == LinearOutput::LastRow) as u32,
                out_col: (first + part.first_row) as u32,
                accumulate: (op.output == LinearOutput::Accumulate) as u32,
                has_bias: op.bias.is_some() as u32,
                out_stride: width as u32,
                ..Params::default()
            };
            // matvec.wgsl reads the gate where a bias would be.
            let buffers = |bias: &'a wgpu::Buffer| {
                [
                    op.x.as_entire_buffer_binding(),
                    part.binding(op.weight),
                    bias.as_entire_buffer_binding(),
                    none.as_entire_buffer_binding(),
                    op.out.as_entire_buffer_binding(),
                ]
            };
            let (one_bias, one_params) = match op.gate {
                Some(gate) => (gate, Params { gated: 1, ..params }),
                None => (bias, params),
            };
            let one = matvec(
                gpu,
                op.weight,
                op.bias,
                op.norm,
                MatvecRows::Plain,
                buffers(one_bias),
                &one_params,
                none,
                Grid::Fixed(gpu.tuning.matvec_workgroups(part.rows, 1)),
            )?;
            if op.output == LinearOutput::LastRow {
                return Ok(Step::Always(one));
            }
            let shape = BatchShape::dense(part.rows);
            let many = prefill(gpu, op.weight, op.bias, buffers(bias), &params, shape)?;
            Ok(Step::BySize { one, many })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Step::from_parts(steps))
}

/// See [`GateUp`]; `none` is bound in place of the bias and routing buffers.
pub fn gate_up<'a>(gpu: &Gpu, op: GateUp<'a>, none: &'a wgpu::Buffer) -> Result<Step> {
    let name = &op.weight.name;
    let [rows, k] = op.weight.shape[..] else {
        return Err(Error::Gpu(format!("{name} is not a matrix")));
    };
    check_width(op.weight, k)?;
    let ff = rows / 2;
    if rows % 2 != 0 || row_parts(gpu, op.weight)?.len() != 1 {
        return Err(Error::Gpu(format!(
            "{name}: {rows} rows are not a gate and an up projection in one binding"
        )));
    }
    let params = Params {
        k: k as u32,
        n: ff as u32,
        out_stride: ff as u32,
        ..Params::default()
    };
    let weight = op.weight.buffer()?;
    let buffers = |x: &'a wgpu::Buffer, out: &'a wgpu::Buffer| {
        [x, weight, none, none, out].map(|b| b.as_entire_buffer_binding())
    };
    let one = matvec(
        gpu,
        op.weight,
        None,
        op.norm,
        MatvecRows::Paired,
        buffers(op.x, op.up),
        &params,
        none,
        Grid::Fixed(gpu.tuning.matvec_workgroups(ff, 1)),
    )?;
    // A batch's matmul over one half: the gate's rows, or the up's from row ff on.
    let half = |out, row_offset: usize| {
        let params = Params {
            row_offset: row_offset as u32,
            ..params
        };
        let buffers = buffers(op.x, out);
        prefill(
            gpu,
            op.weight,
            None,
            buffers,
            &params,
            BatchShape::dense(ff),
        )
    };
    let (gate, up) = (half(op.gate, 0)?, half(op.up, ff)?);
    Ok(Step::Parts(vec![
        Step::BySize { one, many: gate },
        Step::Batch(up),
    ]))
}
