//! The wgpu side of the runtime: adapter and device, the pipeline cache, dispatches.

mod context;
mod dispatch;
mod kernels;
mod tuning;

pub use context::{Backend, Gpu, GpuOptions, Timestamps};
pub use dispatch::{Dispatch, Grid, Step, StepUniform};
pub use kernels::{HalfDecode, Kernel, KernelKey, Reduce};
pub use tuning::{KeyRanges, PickChunks, Prefill, Tuning};
