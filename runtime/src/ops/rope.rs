use bytemuck::{Pod, Zeroable};

use super::kv::check_cache_dtype;
use super::layout::{mirror, Mirror};
use super::GpuTensor;
use crate::config::{ModelConfig, Rope as RopeConfig};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey, KeyRanges, Step};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    head_dim: u32,
    n_heads: u32,
    n_kv_heads: u32,
    eps: f32,
    has_q_norm: u32,
    has_k_norm: u32,
    attention_factor: f32,
    temperature_beta: f32,
    temperature_floor: u32,
    qkv_stride: u32,
    k_col: u32,
    v_col: u32,
    scale: f32,
    _pad: [u32; 3],
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::Rope,
    "Params",
    [
        head_dim,
        n_heads,
        n_kv_heads,
        eps,
        has_q_norm,
        has_k_norm,
        attention_factor,
        temperature_beta,
        temperature_floor,
        qkv_stride,
        k_col,
        v_col,
        scale
    ]
);

/// One attention layer's q, k and v, for [`rope`].
pub struct Rope<'a> {
    pub label: &'a str,
    /// (head_dim): q_layernorm, shared by q's heads; `None` where the model has none.
    pub q_norm: Option<&'a GpuTensor>,
    /// (head_dim): k_layernorm, likewise for k.
    pub k_norm: Option<&'a GpuTensor>,
    /// The session's cos/sin table ([`rope_table`]).
    pub table: &'a wgpu::Buffer,
    /// (n_tokens, qkv_dim): q's heads then k's (rotated in place) and v's (untouched).
    pub qkv: &'a wgpu::Buffer,
    /// The session's page table: position / BLOCK_TOKENS → block.
    pub pages: &'a wgpu::Buffer,
    /// (blocks · BLOCK_TOKENS, kv_dim) each, of `cache_dtype`: the rotated keys and the
    /// values join them.
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    pub cache_dtype: DType,
    /// (n_heads, head_dim): a single token's attention output ([`rope_attention`]).
    pub out: &'a wgpu::Buffer,
    /// A single token's partial results where its keys are split
    /// ([`partials_len`] elements).
    pub partials: &'a wgpu::Buffer,
}

/// f32 elements of a single token's partial attention results: per q head and key
/// range, the largest score, the sum, and head_dim weighted values.
pub fn partials_len(c: &ModelConfig) -> usize {
    c.n_heads * KeyRanges::MOST as usize * (2 + c.head_dim)
}

/// Per-head RMSNorm (where the model has one), then RoPE with the config's attention
/// factor, then for q the attention temperature, in place, q's and k's heads in one
/// launch: token t is at position step.pos + t, a workgroup per token and
/// [`heads_per_workgroup`] q heads with their kv head. The same launch appends the
/// rotated keys and the values to the KV cache at those positions.
pub fn rope<'a>(
    gpu: &Gpu,
    c: &ModelConfig,
    op: &Rope<'a>,
    none: &'a wgpu::Buffer,
) -> Result<Dispatch> {
    let heads = super::attention::heads_per_workgroup(c);
    let grid = Grid::PerToken((c.n_heads / heads) as u32);
    launch(gpu, Kernel::Rope, c, op, none, grid, heads)
}

/// [`rope`] then [`super::attention`] for a single token, in one launch: each
/// workgroup takes [`heads_per_workgroup`] q heads of one kv head and a range of the
/// keys, rotates its heads and their kv head's key, attends over the range with that
/// key and value as the newest, and writes the heads' output to `op.out`, or its
/// partial results where the adapter's [`KeyRanges`] split the keys (then
/// [`attention_combine`]); one workgroup per kv head stores them in the cache.
pub fn rope_attention<'a>(
    gpu: &Gpu,
    c: &ModelConfig,
    op: &Rope<'a>,
    none: &'a wgpu::Buffer,
) -> Result<Dispatch> {
    let heads = super::attention::heads_per_workgroup(c);
    let workgroups = c.n_heads / heads * gpu.tuning.key_ranges.most as usize;
    let grid = Grid::Fixed(workgroups as u32);
    launch(gpu, Kernel::RopeAttention, c, op, none, grid, heads)
}

/// The step that combines a single token's key ranges into each q head's output,
/// launched where the adapter's [`KeyRanges`] split the keys it sees; `None` where they
/// never do.
pub fn attention_combine<'a>(
    gpu: &Gpu,
    c: &ModelConfig,
    op: &Rope<'a>,
    none: &'a wgpu::Buffer,
) -> Result<Option<Step>> {
    let ranges = gpu.tuning.key_ranges;
    if ranges.most == 1 {
        return Ok(None);
    }
    let grid = Grid::Fixed(c.n_heads as u32);
    let combine = launch(gpu, Kernel::AttentionCombine, c, op, none, grid, 1)?;
    Ok(Some(Step::Ranges { combine, ranges }))
}

fn launch<'a>(
    gpu: &Gpu,
    kernel: Kernel,
    c: &ModelConfig,
    op: &Rope<'a>,
    none: &'a wgpu::Buffer,
    grid: Grid,
    heads: usize,
) -> Result<Dispatch> {
    check_cache_dtype(c, op.cache_dtype)?;
    let dtypes = [op.q_norm, op.k_norm].map(|n| n.map(|n| n.dtype));
    let norm = match dtypes {
        [Some(q), Some(k)] if q != k => {
            return Err(Error::Gpu(format!(
                "{}: q and k norms of different types ({q}, {k})",
                op.label
            )))
        }
        [q, k] => q.or(k).unwrap_or(DType::F32),
    };
    let buffer = |norm: Option<&'a GpuTensor>| norm.map_or(Ok(none), |n| n.buffer());
    let temperature = c.rope.temperature;
    let (q_dim, kv_dim) = (c.q_dim() as u32, c.kv_dim() as u32);
    let key = KernelKey {
        norm: Some(norm),
        heads: heads as u32,
        ..KernelKey::new(kernel, op.cache_dtype)
    };
    Dispatch::new(
        gpu,
        op.label.to_owned(),
        key,
        &[
            buffer(op.q_norm)?,
            buffer(op.k_norm)?,
            op.table,
            op.pages,
            op.qkv,
            op.k_cache,
            op.v_cache,
            op.out,
            op.partials,
        ],
        &Params {
            head_dim: c.head_dim as u32,
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            eps: c.norm_eps,
            has_q_norm: op.q_norm.is_some() as u32,
            has_k_norm: op.k_norm.is_some() as u32,
            attention_factor: c.rope.attention_factor(),
            temperature_beta: temperature.map_or(0.0, |t| t.beta),
            // Positions fit u32 (MAX_CONTEXT); 1 where unused keeps the division defined.
            temperature_floor: temperature.map_or(1, |t| t.floor_scale as u32),
            qkv_stride: c.qkv_dim() as u32,
            k_col: q_dim,
            v_col: q_dim + kv_dim,
            scale: super::attention::scale(c),
            _pad: [0; 3],
        },
        grid,
    )
}

/// (max_pos, head_dim / 2, 2) cos and sin of the rotation angles, computed as
/// transformers does: angle = pos · inv_freq rounded to f32, then cos and sin of that
/// f32 angle. The attention factor is applied by the kernel, so that the context shift
/// can rotate by the same table.
pub fn rope_table(rope: &RopeConfig, head_dim: usize, max_pos: usize) -> Vec<f32> {
    let inv_freq = rope.inv_freq(head_dim);
    let mut table = Vec::with_capacity(max_pos * head_dim);
    for pos in 0..max_pos {
        for &f in &inv_freq {
            let angle = pos as f32 * f;
            table.push((angle as f64).cos() as f32);
            table.push((angle as f64).sin() as f32);
        }
    }
    table
}
