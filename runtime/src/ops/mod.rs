//! One constructor per kernel family: shape guards, the kernel's `#[repr(C)]` params
//! (mirroring its WGSL `Params`), and the recorded dispatch.

mod attention;
mod copy;
mod embedding;
mod kv;
mod linear;
mod moe;
mod rmsnorm;
mod rope;
mod shortconv;
mod split;
mod swiglu;

pub use attention::attention;
pub use copy::copy;
pub use embedding::embedding;
pub use kv::{check_cache_dtype, kv_shift, kv_store, KvShift};
pub use linear::{expert_linear, linear, ExpertLinear, ExpertMatrix, Linear, LinearOutput};
pub use moe::{moe_combine, moe_group, moe_route, MoeBuffers};
pub use rmsnorm::rmsnorm;
pub use rope::{rope, rope_table};
pub use shortconv::{shortconv, shortconv_state, ShortConv};
pub use split::{row_parts, RowPart};
pub use swiglu::swiglu;

use crate::dtype::DType;

/// A weight tensor resident in VRAM at its file precision. Clones share the buffer.
#[derive(Clone)]
pub struct GpuTensor {
    pub name: String,
    // Packed elements, PyTorch order (outermost first).
    pub buffer: wgpu::Buffer,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl GpuTensor {
    pub fn elements(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64
    }

    pub fn bytes(&self) -> u64 {
        self.dtype.bytes_for(self.elements() as usize) as u64
    }
}
