//! How a `#[repr(C)]` struct uploaded as a WGSL struct records its layout, so that
//! tests/params_layout.rs can compare it with naga's layout of the shader; each op
//! declares its own, and `ops::MIRRORED` lists them all.
#![doc(hidden)]

use crate::gpu::Kernel;

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
