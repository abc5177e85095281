//! The `#[repr(C)]` structs uploaded as WGSL structs, listed with their layouts so that
//! tests/params_layout.rs can compare them with naga's layout of each shader.
#![doc(hidden)]

use crate::gpu::{Kernel, StepUniform};

/// A Rust struct and the WGSL struct it mirrors.
#[derive(Clone, Copy, Debug)]
pub struct Mirror {
    /// The Rust path, for messages.
    pub rust: &'static str,
    /// A kernel whose module declares the WGSL struct.
    pub kernel: Kernel,
    pub wgsl: &'static str,
    pub size: usize,
    /// Name (the same in WGSL) and byte offset of every field but the padding.
    pub fields: &'static [(&'static str, usize)],
}

/// `mirror!(Type, kernel, "WgslStruct", [field, ...])`, padding left out.
macro_rules! mirror {
    ($ty:ty, $kernel:expr, $wgsl:literal, [$($field:ident),* $(,)?]) => {
        $crate::ops::layout::Mirror {
            rust: concat!(module_path!(), "::", stringify!($ty)),
            kernel: $kernel,
            wgsl: $wgsl,
            size: std::mem::size_of::<$ty>(),
            fields: &[$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }
    };
}
pub(crate) use mirror;

/// Every mirrored struct: each kernel family's params and the step uniform.
pub const MIRRORED: &[Mirror] = &[
    super::attention::MIRROR,
    super::copy::MIRROR,
    super::embedding::MIRROR,
    super::kv::STORE_MIRROR,
    super::kv::SHIFT_MIRROR,
    super::linear::MIRROR,
    super::moe::MIRROR,
    super::rmsnorm::MIRROR,
    super::rope::MIRROR,
    super::shortconv::MIRROR,
    super::swiglu::MIRROR,
    mirror!(StepUniform, Kernel::Copy, "Step", [n_tokens, pos]),
];
