//! A MoE layer's expert projections: each routed slot multiplied by the matrix of the
//! expert it chose, reading only the chosen experts' weights (matvec.wgsl's expert mode
//! for a token, the prefill matmul's per-expert gathering for a batch).

use super::linear::{check_width, matvec, prefill, BatchShape, InputNorm, MatvecRows, Params};
use super::split::row_parts;
use super::GpuTensor;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Grid, Step};

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
    /// What a single token's launch makes of its slots (a batch's always writes `out`).
    pub single: ExpertOutput<'a>,
    /// The RMSNorm that made `x` (not `x_per_slot`), which a single token applies itself.
    pub norm: Option<InputNorm<'a>>,
    pub top_k: usize,
    /// moe.wgsl's `routes` (decode reads the experts there) and `slots` (prefill's lists).
    pub routes: &'a wgpu::Buffer,
    pub slots: &'a wgpu::Buffer,
}

/// Where a single token's expert matvec puts its slots' rows: the rest of the MoE
/// feed-forward fused into it, so that a token takes no SwiGLU or combine launch.
#[derive(Clone, Copy)]
pub enum ExpertOutput<'a> {
    /// Each slot's rows into `out`.
    Slots,
    /// silu(gate) · rows into `out`: the up projection, `gate` (top_k, rows) the gate
    /// projection's output.
    Gated { gate: &'a wgpu::Buffer },
    /// The slots' rows weighted by their routes and summed, added into `residual`
    /// (1, rows): the down projection and the combine.
    Combine { residual: &'a wgpu::Buffer },
    /// silu(rows) · (the rows `rows` further on) into `up`: the gate projection of a
    /// stack holding each expert's gate rows and then its up rows computes the up
    /// projection and SwiGLU in the same launch (a batch's writes the gate rows to `out`).
    Paired { up: &'a wgpu::Buffer },
}

/// The expert matmuls of a MoE layer: for one token, `top_k` matvecs reading only the
/// chosen experts, in one launch with `single`'s epilogue; for a batch, a tiled matmul
/// per expert over the slots that chose it. A stack larger than one binding is
/// launched once per part of whole experts.
pub fn expert_linear<'a>(gpu: &Gpu, op: ExpertLinear<'a>, none: &'a wgpu::Buffer) -> Result<Step> {
    let w = op.weight;
    let [n_experts, stacked_rows, k] = w.tensor.shape[..] else {
        return Err(Error::Gpu(format!(
            "{} is not a stack of matrices",
            w.tensor.name
        )));
    };
    check_width(&w.tensor, k)?;
    if matches!(op.single, ExpertOutput::Paired { .. }) && w.row_offset + 2 * w.rows > stacked_rows
    {
        return Err(Error::Gpu(format!(
            "{}: no up rows after the gate's to pair them with",
            w.tensor.name
        )));
    }
    if op.norm.is_some() && op.x_per_slot {
        return Err(Error::Gpu(format!(
            "{}: a slot's own input is not normalized",
            w.tensor.name
        )));
    }
    let steps = row_parts(gpu, &w.tensor)?
        .into_iter()
        .map(|part| {
            let params = Params {
                k: k as u32,
                n: w.rows as u32,
                experts: n_experts as u32,
                top_k: op.top_k as u32,
                expert_stride: (stacked_rows * k) as u32,
                row_offset: w.row_offset as u32,
                x_per_slot: op.x_per_slot as u32,
                out_stride: w.rows as u32,
                expert_first: part.first_row as u32,
                expert_count: part.rows as u32,
                ..Params::default()
            };
            let buffers =
                |gate: &'a wgpu::Buffer, routing: &'a wgpu::Buffer, out: &'a wgpu::Buffer| {
                    [
                        op.x.as_entire_buffer_binding(),
                        part.binding(&w.tensor),
                        gate.as_entire_buffer_binding(),
                        routing.as_entire_buffer_binding(),
                        out.as_entire_buffer_binding(),
                    ]
                };
            let (gate, out, single) = match op.single {
                ExpertOutput::Slots => (none, op.out, params),
                ExpertOutput::Gated { gate } => (gate, op.out, Params { gated: 1, ..params }),
                ExpertOutput::Paired { up } => (none, up, params),
                ExpertOutput::Combine { residual } => {
                    let combine = Params {
                        combine: 1,
                        accumulate: 1,
                        ..params
                    };
                    (none, residual, combine)
                }
            };
            let rows = match op.single {
                ExpertOutput::Paired { .. } => MatvecRows::Paired,
                _ => MatvecRows::Plain,
            };
            // With combine, the rows of one matvec: each sums the slots itself.
            let summed = matches!(op.single, ExpertOutput::Combine { .. });
            let slot_rows = gpu
                .tuning
                .matvec_workgroups(w.rows, if summed { 1 } else { op.top_k });
            let one = matvec(
                gpu,
                &w.tensor,
                None,
                op.norm,
                rows,
                buffers(gate, op.routes, out),
                &single,
                none,
                Grid::Fixed(slot_rows),
            )?;
            let shape = BatchShape::experts(w.rows, part.rows, n_experts, op.top_k);
            let many = prefill(
                gpu,
                &w.tensor,
                None,
                buffers(none, op.slots, op.out),
                &params,
                shape,
            )?;
            Ok(Step::BySize { one, many })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Step::from_parts(steps))
}
