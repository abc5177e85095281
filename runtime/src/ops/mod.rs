//! One constructor per kernel family: shape guards, the kernel's `#[repr(C)]` params
//! (mirroring its WGSL `Params`), and the recorded dispatch.

mod attention;
mod copy;
mod embedding;
mod experts;
mod kv;
pub mod layout;
mod linear;
mod moe;
mod pick;
mod rmsnorm;
mod rope;
mod shortconv;
mod split;
mod swiglu;

pub use attention::{attention, heads_per_workgroup};
pub use copy::copy;
pub use embedding::embedding;
pub use experts::{expert_linear, ExpertLinear, ExpertMatrix, ExpertOutput};
pub use kv::{check_cache_dtype, kv_shift, KvShift};
pub use linear::{gate_up, linear, GateUp, InputNorm, Linear, LinearOutput};
pub use moe::{moe_combine, moe_lists, moe_route, moe_route_token, MoeBuffers};
pub use pick::{
    allow_every, allowed_bytes, argmax, picks_scratch_bytes, top_logits, top_params, Pick,
    TOP_RANK, TOP_RECORD_BYTES,
};
pub use rmsnorm::rmsnorm;
pub use rope::{attention_combine, partials_len, rope, rope_attention, rope_table, Rope};
pub use shortconv::{conv_in_proj, shortconv, shortconv_state, shortconv_token, ShortConv};
pub use split::{row_parts, RowPart};
pub use swiglu::swiglu;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Kernel, StepUniform};
use layout::Mirror;

/// A weight tensor resident in VRAM at its file precision. Clones share the buffers.
#[derive(Clone)]
pub struct GpuTensor {
    pub name: String,
    /// Packed elements, PyTorch order (outermost first): `rows_per_buffer` outermost
    /// rows per buffer, several buffers only when the tensor exceeds `max_buffer_size`
    /// (see `split`).
    pub buffers: Vec<wgpu::Buffer>,
    pub rows_per_buffer: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl GpuTensor {
    /// Uploads a tensor whose bytes are `parts` back to back (per-expert tensors are
    /// stacked into one), in as many buffers as the device needs.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        dtype: DType,
        shape: &[usize],
        parts: &[&[u8]],
    ) -> Result<GpuTensor> {
        let (buffers, rows_per_buffer) = split::upload_rows(gpu, name, outer_rows(shape), parts)?;
        Ok(GpuTensor {
            name: name.to_string(),
            buffers,
            rows_per_buffer,
            dtype,
            shape: shape.to_vec(),
        })
    }

    pub fn elements(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.dtype.bytes_for(self.elements() as usize) as u64
    }

    /// Rows of the outermost dimension (experts, for a stack of expert matrices).
    pub fn rows(&self) -> usize {
        outer_rows(&self.shape)
    }

    /// The one buffer of a tensor that ops bind whole (norms, biases, conv taps: a
    /// few KiB); an error naming the tensor if it was split.
    pub fn buffer(&self) -> Result<&wgpu::Buffer> {
        match &self.buffers[..] {
            [one] => Ok(one),
            _ => Err(Error::Limit {
                what: self.name.clone(),
                limit: "max_buffer_size",
                needed: self.bytes(),
                available: self.buffers[0].size(),
            }),
        }
    }
}

fn outer_rows(shape: &[usize]) -> usize {
    shape.first().copied().unwrap_or(1).max(1)
}

/// Every mirrored struct: each kernel family's params and the step uniform.
#[doc(hidden)]
pub const MIRRORED: &[Mirror] = &[
    attention::MIRROR,
    copy::MIRROR,
    embedding::MIRROR,
    kv::SHIFT_MIRROR,
    linear::MIRROR,
    moe::MIRROR,
    pick::MIRROR,
    rmsnorm::MIRROR,
    rope::MIRROR,
    shortconv::MIRROR,
    swiglu::MIRROR,
    layout::mirror!(StepUniform, Kernel::Copy, "Step", [n_tokens, pos]),
];
