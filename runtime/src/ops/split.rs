//! Weights larger than one buffer or one binding. Phones often allocate and bind at
//! most 128–256 MiB, less than LFM2's embedding or an expert stack. Such a tensor is
//! uploaded as several buffers of whole outermost rows (`max_buffer_size`), and the ops
//! that read it launch once per row range that fits `max_storage_buffer_binding_size`,
//! each bound at an offset the device accepts. Rows are output rows for a matrix, whole
//! experts for a stack of expert matrices.

use std::num::NonZeroU64;
use std::ops::Range;

use super::GpuTensor;
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Rows `first_row .. first_row + rows` of a tensor, bound on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowPart {
    pub first_row: usize,
    pub rows: usize,
    /// Index into the tensor's buffers.
    buffer: usize,
    offset: u64,
    /// `None`: to the end of the buffer (its last part, padding included).
    size: Option<NonZeroU64>,
}

impl RowPart {
    pub fn binding<'a>(&self, tensor: &'a GpuTensor) -> wgpu::BufferBinding<'a> {
        wgpu::BufferBinding {
            buffer: &tensor.buffers[self.buffer],
            offset: self.offset,
            size: self.size,
        }
    }
}

/// Uploads `rows` rows whose bytes are `parts` back to back, as few buffers of whole
/// rows as `max_buffer_size` allows. Returns the buffers and the rows of each.
pub(super) fn upload_rows(
    gpu: &Gpu,
    name: &str,
    rows: usize,
    parts: &[&[u8]],
) -> Result<(Vec<wgpu::Buffer>, usize)> {
    let bytes: usize = parts.iter().map(|p| p.len()).sum();
    // Buffers are padded to 16 bytes: whole buffers of a multiple of 16 stay in the limit.
    let limit = (gpu.limits.max_buffer_size / 16 * 16) as usize;
    if bytes <= limit {
        return Ok((vec![gpu.upload_parts(name, parts)?], rows));
    }
    let row_bytes = bytes / rows;
    let per_buffer = limit / row_bytes;
    if per_buffer == 0 {
        return Err(Error::Limit {
            what: format!("{name} (one row of {row_bytes} bytes)"),
            limit: "max_buffer_size",
            needed: row_bytes as u64,
            available: gpu.limits.max_buffer_size,
        });
    }
    let buffers = (0..rows)
        .step_by(per_buffer)
        .map(|first| {
            let last = (first + per_buffer).min(rows);
            let label = format!("{name} rows {first}..{last}");
            gpu.upload_parts(&label, &slices(parts, first * row_bytes..last * row_bytes))
        })
        .collect::<Result<_>>()?;
    Ok((buffers, per_buffer))
}

/// The pieces of `parts` (byte strings back to back) that cover `range` of the whole.
fn slices<'a>(parts: &[&'a [u8]], range: Range<usize>) -> Vec<&'a [u8]> {
    let mut start = 0;
    parts
        .iter()
        .filter_map(|part| {
            let at = start;
            start += part.len();
            let (from, to) = (range.start.max(at), range.end.min(start));
            (from < to).then(|| &part[from - at..to - at])
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The row ranges of `tensor` (rows outermost) that each fit one binding: one per
/// buffer when its buffers fit.
pub fn row_parts(gpu: &Gpu, tensor: &GpuTensor) -> Result<Vec<RowPart>> {
    let rows = tensor.rows();
    let row_bytes = tensor.bytes() / rows as u64;
    let limit = gpu.limits.max_storage_buffer_binding_size / 16 * 16;
    // A part must start at a multiple of the offset alignment: a whole number of
    // `step` rows. At least 16 bytes: matvec.wgsl binds weights as vec4<u32>, and a
    // binding holds only whole elements.
    let align = (gpu.limits.min_storage_buffer_offset_alignment as u64).max(16);
    let step = align / gcd(row_bytes, align);
    let per_binding = ((limit / row_bytes) / step * step) as usize;
    let mut parts = Vec::new();
    for (buffer, first) in (0..rows).step_by(tensor.rows_per_buffer).enumerate() {
        let in_buffer = tensor.rows_per_buffer.min(rows - first);
        if in_buffer as u64 * row_bytes <= limit {
            parts.push(RowPart {
                first_row: first,
                rows: in_buffer,
                buffer,
                offset: 0,
                size: None,
            });
            continue;
        }
        if per_binding == 0 {
            return Err(Error::Limit {
                what: format!("{} ({step} rows of {row_bytes} bytes)", tensor.name),
                limit: "max_storage_buffer_binding_size",
                needed: step * row_bytes,
                available: gpu.limits.max_storage_buffer_binding_size,
            });
        }
        parts.extend((0..in_buffer).step_by(per_binding).map(|at| {
            let last = at + per_binding >= in_buffer;
            RowPart {
                first_row: first + at,
                rows: per_binding.min(in_buffer - at),
                buffer,
                offset: at as u64 * row_bytes,
                size: NonZeroU64::new(per_binding as u64 * row_bytes).filter(|_| !last),
            }
        }));
    }
    Ok(parts)
}
