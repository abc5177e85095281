use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::config::ModelConfig;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ShiftParams {
    head_dim: u32,
    n_heads: u32,
    src: u32,
    dst: u32,
    rows: u32,
    delta: u32,
    rotate: u32,
    _pad: u32,
}
pub(super) const SHIFT_MIRROR: Mirror = mirror!(
    ShiftParams,
    Kernel::KvShift,
    "Params",
    [head_dim, n_heads, src, dst, rows, delta, rotate]
);

const WG: u32 = 256;

/// The element types a KV cache may hold: the cache kernels pack f16 in pairs, and a
/// context shift moves pairs i, i + 1 with their RoPE partners (head_dim multiple of 4).
pub fn check_cache_dtype(config: &ModelConfig, dtype: DType) -> Result<()> {
    if !matches!(dtype, DType::F32 | DType::F16) {
        return Err(Error::Input(format!(
            "a KV cache holds f32 or f16, not {dtype}"
        )));
    }
    if config.head_dim % 4 != 0 {
        return Err(Error::Input(format!(
            "head_dim {} is not a multiple of 4, which the KV cache kernels need",
            config.head_dim
        )));
    }
    Ok(())
}

/// A move of the rows of positions `src .. src + rows` to `dst` (at most |src - dst|
/// rows, so the ranges stay apart); keys (`rotate`, only down) turn back by `src - dst`
/// positions.
#[derive(Clone, Copy, Debug)]
pub struct KvShift {
    pub src: usize,
    pub dst: usize,
    pub rows: usize,
    pub rotate: bool,
}

/// `buffers`: rope table, page table, cache.
pub fn kv_shift(
    gpu: &Gpu,
    config: &ModelConfig,
    cache_dtype: DType,
    buffers: [&wgpu::Buffer; 3],
    shift: KvShift,
) -> Result<Dispatch> {
    check_cache_dtype(config, cache_dtype)?;
    let delta = shift.src.abs_diff(shift.dst);
    if shift.rows > delta || (shift.rotate && shift.dst > shift.src) {
        return Err(Error::Gpu(format!(
            "a KV move of {} rows from position {} to {} would overlap (or rotate forward)",
            shift.rows, shift.src, shift.dst
        )));
    }
    let threads = shift.rows * config.n_kv_heads * config.head_dim / 4;
    Dispatch::new(
        gpu,
        "kv_shift",
        KernelKey::new(Kernel::KvShift, cache_dtype),
        &buffers,
        &ShiftParams {
            head_dim: config.head_dim as u32,
            n_heads: config.n_kv_heads as u32,
            src: shift.src as u32,
            dst: shift.dst as u32,
            rows: shift.rows as u32,
            delta: delta as u32,
            rotate: shift.rotate as u32,
            _pad: 0,
        },
        Grid::Fixed((threads as u32).div_ceil(WG)),
    )
}
