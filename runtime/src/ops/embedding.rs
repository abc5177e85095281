use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::split::row_parts;
use super::GpuTensor;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey, Step};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    hidden: u32,
    first_row: u32,
    rows: u32,
    _pad: u32,
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::Embedding,
    "Params",
    [hidden, first_row, rows]
);

/// out (n_tokens, hidden) = table[tokens]; a table larger than one binding is gathered
/// by one launch per row range.
pub fn embedding(
    gpu: &Gpu,
    tokens: &wgpu::Buffer,
    table: &GpuTensor,
    out: &wgpu::Buffer,
) -> Result<Step> {
    let hidden = table.shape[1] as u32;
    let parts = row_parts(gpu, table)?
        .into_iter()
        .map(|part| {
            let params = Params {
                hidden,
                first_row: part.first_row as u32,
                rows: part.rows as u32,
                _pad: 0,
            };
            let buffers = [
                tokens.as_entire_buffer_binding(),
                part.binding(table),
                out.as_entire_buffer_binding(),
            ];
            Dispatch::with_ranges(
                gpu,
                "embed_tokens",
                KernelKey::new(Kernel::Embedding, table.dtype),
                &buffers,
                &params,
                Grid::Threads {
                    per_token: hidden,
                    size: 256,
                },
            )
            .map(Step::Always)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Step::from_parts(parts))
}
