use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::GpuTensor;
use crate::config::MoeConfig;
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n_experts: u32,
    top_k: u32,
    hidden: u32,
    norm_topk_prob: u32,
    routed_scaling: f32,
    use_bias: u32,
    _pad: [u32; 2],
}
pub(super) const MIRROR: Mirror = mirror!(
    Params,
    Kernel::MoeRoute,
    "Params",
    [
        n_experts,
        top_k,
        hidden,
        norm_topk_prob,
        routed_scaling,
        use_bias
    ]
);

/// One MoE layer's routing: its config and the buffers moe.wgsl's entry points share.
pub struct MoeBuffers<'a> {
    pub label: &'a str,
    pub config: &'a MoeConfig,
    pub hidden: usize,
    /// (n_tokens, n_experts): the router's `gate` projection.
    pub router_logits: &'a wgpu::Buffer,
    /// (n_experts) f32: `feed_forward.expert_bias`, when the model uses it.
    pub expert_bias: Option<&'a GpuTensor>,
    /// (n_tokens · top_k, hidden): the experts' down projections.
    pub expert_out: &'a wgpu::Buffer,
    /// (n_tokens, top_k, 2): chosen expert and weight per slot.
    pub routes: &'a wgpu::Buffer,
    /// (n_experts + n_experts · n_tokens): per expert, the count and list of its slots.
    pub slots: &'a wgpu::Buffer,
    /// (n_tokens, hidden): the residual stream.
    pub x: &'a wgpu::Buffer,
}

const WG: u32 = 64;

fn launch(
    gpu: &Gpu,
    kernel: Kernel,
    b: &MoeBuffers<'_>,
    none: &wgpu::Buffer,
    grid: Grid,
) -> Result<Dispatch> {
    let moe = b.config;
    let params = Params {
        n_experts: moe.n_experts as u32,
        top_k: moe.top_k as u32,
        hidden: b.hidden as u32,
        norm_topk_prob: moe.norm_topk_prob as u32,
        routed_scaling: moe.routed_scaling_factor,
        use_bias: b.expert_bias.is_some() as u32,
        _pad: [0; 2],
    };
    let key = KernelKey {
        bias: b.expert_bias.map_or(DType::F32, |t| t.dtype),
        ..KernelKey::new(kernel, DType::F32)
    };
    let bias = b.expert_bias.map_or(Ok(none), |t| t.buffer())?;
    let buffers = [b.router_logits, bias, b.expert_out, b.routes, b.slots, b.x];
    Dispatch::new(
        gpu,
        format!("{}:{kernel:?}", b.label),
        key,
        &buffers,
        &params,
        grid,
    )
}

/// Picks each token's experts and their weights, and lists each expert's slots (for
/// a batch's expert matmuls): one workgroup for the whole batch.
pub fn moe_route(gpu: &Gpu, b: &MoeBuffers<'_>, none: &wgpu::Buffer) -> Result<Dispatch> {
    launch(gpu, Kernel::MoeRoute, b, none, Grid::Fixed(1))
}

/// Adds the weighted expert outputs of a batch to the residual stream (a single
/// token's down projection adds them itself: `ExpertOutput::Combine`).
pub fn moe_combine(gpu: &Gpu, b: &MoeBuffers<'_>, none: &wgpu::Buffer) -> Result<Dispatch> {
    let grid = Grid::Threads {
        per_token: b.hidden as u32,
        size: WG,
    };
    launch(gpu, Kernel::MoeCombine, b, none, grid)
}
