//! Weights larger than one binding. Phones often bind at most 128–256 MiB of a storage
//! buffer, less than LFM2's embedding; such a tensor stays one buffer, and the ops that
//! read it launch once per row range that fits `max_storage_buffer_binding_size`, each
//! bound at an offset the device accepts.

use std::num::NonZeroU64;

use super::GpuTensor;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Rows `first_row .. first_row + rows` of a tensor, bound on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowPart {
    pub first_row: usize,
    pub rows: usize,
    offset: u64,
    /// `None`: to the end of the buffer (the last part, padding included).
    size: Option<NonZeroU64>,
}

impl RowPart {
    pub fn binding<'a>(&self, tensor: &'a GpuTensor) -> wgpu::BufferBinding<'a> {
        wgpu::BufferBinding {
            buffer: &tensor.buffer,
            offset: self.offset,
            size: self.size,
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The row ranges of `tensor` (rows outermost) that each fit one binding: the whole
/// tensor when it fits.
pub fn row_parts(gpu: &Gpu, tensor: &GpuTensor) -> Result<Vec<RowPart>> {
    let rows = tensor.shape.first().copied().unwrap_or(1).max(1);
    let whole = RowPart {
        first_row: 0,
        rows,
        offset: 0,
        size: None,
    };
    let limit = gpu.limits.max_storage_buffer_binding_size;
    let bytes = tensor.bytes();
    if bytes <= limit {
        return Ok(vec![whole]);
    }
    let row_bytes = bytes / rows as u64;
    // A part must start at a multiple of the offset alignment: a whole number of
    // `step` rows. At least 16 bytes: matvec.wgsl binds weights as vec4<u32>, and a
    // binding holds only whole elements.
    let align = (gpu.limits.min_storage_buffer_offset_alignment as u64).max(16);
    let step = align / gcd(row_bytes, align);
    let per_part = (limit / row_bytes) / step * step;
    if per_part == 0 {
        return Err(Error::Limit {
            what: format!("{} ({step} rows of {row_bytes} bytes)", tensor.name),
            limit: "max_storage_buffer_binding_size",
            needed: step * row_bytes,
            available: limit,
        });
    }
    let per_part = per_part as usize;
    Ok((0..rows)
        .step_by(per_part)
        .map(|first_row| {
            let last = first_row + per_part >= rows;
            RowPart {
                first_row,
                rows: per_part.min(rows - first_row),
                offset: first_row as u64 * row_bytes,
                size: NonZeroU64::new(per_part as u64 * row_bytes).filter(|_| !last),
            }
        })
        .collect())
}
