//! Element types as they sit in VRAM: weight tensors (plain floats, or GGUF's quantized
//! blocks kept as they are in the file) and the KV cache. Kernels unpack them to f32.

use std::fmt;
use std::str::FromStr;

// Quantized types keep ggml's names (Q4_K, not Q4K): they are what users read in files.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K,
    Q5_K,
    Q6_K,
    /// 1 bit per weight: ±d per 128-weight block (Bonsai's weights).
    Q1_0,
    /// 2 bits per weight: {−1, 0, +1, +2}·d per 64-weight block.
    Q2_0,
    /// Ternary {−1, 0, +1}·d per 256-weight block, five weights per byte (BitNet b1.58).
    TQ1_0,
    /// Ternary {−1, 0, +1}·d per 256-weight block, one 2-bit code per weight.
    TQ2_0,
}

impl DType {
    /// Elements per block (1 for plain floats).
    pub fn block_elements(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => 32,
            DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::TQ1_0 | DType::TQ2_0 => 256,
            DType::Q1_0 => 128,
            DType::Q2_0 => 64,
        }
    }

    /// Bytes per block, as ggml lays them out.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
            DType::Q1_0 | DType::Q2_0 => 18,
            DType::TQ1_0 => 54,
            DType::TQ2_0 => 66,
        }
    }

    /// Bytes of `elements` values (a whole number of blocks).
    pub fn bytes_for(self, elements: usize) -> usize {
        elements / self.block_elements() * self.block_bytes()
    }

    pub fn is_quantized(self) -> bool {
        self.block_elements() > 1
    }

    /// Bits of storage per weight, scales included (Q1_0: 18 bytes for 128 weights,
    /// 1.125), as `info` and `bench` report it.
    pub fn bits_per_weight(self) -> f64 {
        (8 * self.block_bytes()) as f64 / self.block_elements() as f64
    }

    /// The value of the `WEIGHT_DTYPE` override constant (shaders/common.wgsl and
    /// shaders/quant.wgsl).
    pub fn shader_code(self) -> f64 {
        match self {
            DType::F32 => 0.0,
            DType::F16 => 1.0,
            DType::BF16 => 2.0,
            DType::Q8_0 => 3.0,
            DType::Q4_0 => 4.0,
            DType::Q4_1 => 5.0,
            DType::Q5_0 => 6.0,
            DType::Q5_1 => 7.0,
            DType::Q4_K => 8.0,
            DType::Q5_K => 9.0,
            DType::Q6_K => 10.0,
            DType::Q1_0 => 11.0,
            DType::Q2_0 => 12.0,
            DType::TQ1_0 => 13.0,
            DType::TQ2_0 => 14.0,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q1_0 => "Q1_0",
            DType::Q2_0 => "Q2_0",
            DType::TQ1_0 => "TQ1_0",
            DType::TQ2_0 => "TQ2_0",
        })
    }
}

/// What a KV cache element is stored as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    /// Half the memory; attention still accumulates in f32.
    #[default]
    F16,
    F32,
}

impl KvDtype {
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F16 => 2,
            KvDtype::F32 => 4,
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            KvDtype::F16 => DType::F16,
            KvDtype::F32 => DType::F32,
        }
    }
}

impl FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvDtype::F16),
            "f32" => Ok(KvDtype::F32),
            other => Err(format!("unknown KV cache type {other:?} (f16, f32)")),
        }
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvDtype::F16 => "f16",
            KvDtype::F32 => "f32",
        })
    }
}
