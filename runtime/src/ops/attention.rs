use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::config::ModelConfig;
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    head_dim: u32,
    n_heads: u32,
    n_kv_heads: u32,
    scale: f32,
    qkv_stride: u32,
    _pad: [u32; 3],
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::Attention,
    "Params",
    [head_dim, n_heads, n_kv_heads, scale, qkv_stride]
);

/// The scores' scale, 1 / sqrt(head_dim).
pub(super) fn scale(config: &ModelConfig) -> f32 {
    1.0 / (config.head_dim as f32).sqrt()
}

/// Queries one workgroup of attend.wgsl takes (heads × tokens), and their elements
/// (queries × head_dim): its MAX_QUERIES and MAX_QUERY.
const MAX_QUERIES: usize = 8;
const MAX_QUERY: usize = 1024;

/// Query heads that share each key and value their attention loads (one workgroup's):
/// the largest divisor of a kv head's group within [`MAX_QUERIES`] whose queries fit
/// [`MAX_QUERY`].
pub fn heads_per_workgroup(c: &ModelConfig) -> usize {
    let group = c.n_heads / c.n_kv_heads.max(1);
    let most = MAX_QUERIES.min(MAX_QUERY / c.head_dim.max(1));
    (1..=most.min(group))
        .rev()
        .find(|h| group % h == 0)
        .unwrap_or(1)
}

/// Tokens of a batch whose queries one workgroup of attention.wgsl takes with `heads`
/// heads each, within [`MAX_QUERIES`] and [`MAX_QUERY`].
fn tokens_per_workgroup(c: &ModelConfig, heads: usize) -> usize {
    (MAX_QUERIES / heads)
        .min(MAX_QUERY / (heads * c.head_dim.max(1)))
        .max(1)
}

/// out (n_tokens, heads, d) = causal softmax(q kᵀ / sqrt(d)) v over the cache, whose
/// elements are `cache_dtype` (F32, or F16 pairs in u32 words) and whose rows the page
/// table gives; q is the first columns of the (n_tokens, qkv_dim) q, k and v rows. A
/// workgroup per group of [`heads_per_workgroup`] q heads and [`tokens_per_workgroup`]
/// tokens, every key and value it loads serving all their queries.
/// `buffers`: qkv, page table, k cache, v cache, out.
pub fn attention(
    gpu: &Gpu,
    label: &str,
    config: &ModelConfig,
    cache_dtype: DType,
    buffers: [&wgpu::Buffer; 5],
) -> Result<Dispatch> {
    let heads = heads_per_workgroup(config);
    let tokens = tokens_per_workgroup(config, heads);
    Dispatch::new(
        gpu,
        label,
        KernelKey {
            heads: heads as u32,
            tokens: tokens as u32,
            ..KernelKey::new(Kernel::Attention, cache_dtype)
        },
        &buffers,
        &Params {
            head_dim: config.head_dim as u32,
            n_heads: config.n_heads as u32,
            n_kv_heads: config.n_kv_heads as u32,
            scale: scale(config),
            qkv_stride: config.qkv_dim() as u32,
            _pad: [0; 3],
        },
        Grid::Tiles {
            across: (config.n_heads / heads) as u32,
            tokens_per_tile: tokens as u32,
        },
    )
}
