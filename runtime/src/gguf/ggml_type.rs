//! ggml's tensor element types: every id a GGUF file may carry, with its block layout, so
//! that any valid file can be sized and checked even when the runtime cannot use its type.

use std::fmt;

use crate::dtype::DType;

/// A ggml tensor type. Names as gguf-py spells them (`Q4_K`, `IQ2_XXS`).
#[allow(non_camel_case_types)] // ggml's own names, so messages match llama.cpp's tools
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

use GgmlType::*;

struct Layout {
    ty: GgmlType,
    id: u32,
    name: &'static str,
    block_size: u64,
    block_bytes: u64,
}

const fn layout(
    ty: GgmlType,
    id: u32,
    name: &'static str,
    block_size: u64,
    block_bytes: u64,
) -> Layout {
    Layout {
        ty,
        id,
        name,
        block_size,
        block_bytes,
    }
}

/// ids from `enum ggml_type` (ggml.h); elements and bytes per block from the `block_*`
/// structs of ggml-common.h (the static_asserts there) and gguf-py's GGML_QUANT_SIZES.
/// Ids 4, 5 and 31–33, 36–38 were removed from ggml and are unknown here too.
const LAYOUTS: [Layout; 35] = [
    layout(F32, 0, "F32", 1, 4),
    layout(F16, 1, "F16", 1, 2),
    layout(Q4_0, 2, "Q4_0", 32, 18),
    layout(Q4_1, 3, "Q4_1", 32, 20),
    layout(Q5_0, 6, "Q5_0", 32, 22),
    layout(Q5_1, 7, "Q5_1", 32, 24),
    layout(Q8_0, 8, "Q8_0", 32, 34),
    layout(Q8_1, 9, "Q8_1", 32, 36),
    layout(Q2_K, 10, "Q2_K", 256, 84),
    layout(Q3_K, 11, "Q3_K", 256, 110),
    layout(Q4_K, 12, "Q4_K", 256, 144),
    layout(Q5_K, 13, "Q5_K", 256, 176),
    layout(Q6_K, 14, "Q6_K", 256, 210),
    layout(Q8_K, 15, "Q8_K", 256, 292),
    layout(IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    layout(IQ2_XS, 17, "IQ2_XS", 256, 74),
    layout(IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    layout(IQ1_S, 19, "IQ1_S", 256, 50),
    layout(IQ4_NL, 20, "IQ4_NL", 32, 18),
    layout(IQ3_S, 21, "IQ3_S", 256, 110),
    layout(IQ2_S, 22, "IQ2_S", 256, 82),
    layout(IQ4_XS, 23, "IQ4_XS", 256, 136),
    layout(I8, 24, "I8", 1, 1),
    layout(I16, 25, "I16", 1, 2),
    layout(I32, 26, "I32", 1, 4),
    layout(I64, 27, "I64", 1, 8),
    layout(F64, 28, "F64", 1, 8),
    layout(IQ1_M, 29, "IQ1_M", 256, 56),
    layout(BF16, 30, "BF16", 1, 2),
    layout(TQ1_0, 34, "TQ1_0", 256, 54),
    layout(TQ2_0, 35, "TQ2_0", 256, 66),
    layout(MXFP4, 39, "MXFP4", 32, 17),
    layout(NVFP4, 40, "NVFP4", 64, 36),
    layout(Q1_0, 41, "Q1_0", 128, 18),
    layout(Q2_0, 42, "Q2_0", 64, 18),
];

impl GgmlType {
    /// The type with ggml id `id`, or `None` for an id ggml does not define.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        LAYOUTS.iter().find(|l| l.id == id).map(|l| l.ty)
    }

    /// Every type ggml defines, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        LAYOUTS.iter().map(|l| l.ty)
    }

    fn layout(self) -> &'static Layout {
        // LAYOUTS lists every variant once, in declaration order.
        &LAYOUTS[self as usize]
    }

    pub fn id(self) -> u32 {
        self.layout().id
    }

    pub fn name(self) -> &'static str {
        self.layout().name
    }

    /// Elements per block: 1 for plain types, 32 or 256 for most quantized ones.
    pub fn block_size(self) -> u64 {
        self.layout().block_size
    }

    /// Bytes one block occupies in the file.
    pub fn block_bytes(self) -> u64 {
        self.layout().block_bytes
    }

    /// What the runtime keeps tensors of this type as in VRAM (their blocks as they
    /// are), or `None` for a type it cannot load.
    pub fn dtype(self) -> Option<DType> {
        Some(match self {
            F32 => DType::F32,
            F16 => DType::F16,
            BF16 => DType::BF16,
            Q8_0 => DType::Q8_0,
            Q4_0 => DType::Q4_0,
            Q4_1 => DType::Q4_1,
            Q5_0 => DType::Q5_0,
            Q5_1 => DType::Q5_1,
            Q4_K => DType::Q4_K,
            Q5_K => DType::Q5_K,
            Q6_K => DType::Q6_K,
            Q1_0 => DType::Q1_0,
            Q2_0 => DType::Q2_0,
            TQ1_0 => DType::TQ1_0,
            TQ2_0 => DType::TQ2_0,
            _ => return None,
        })
    }

    /// Whether the runtime can load tensors of this type (and `dequantize` them).
    pub fn is_supported(self) -> bool {
        self.dtype().is_some()
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
