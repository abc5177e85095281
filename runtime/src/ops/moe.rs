use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use super::{GpuTensor, InputNorm};
use crate::config::MoeConfig;
use crate::dtype::DType;
use crate::error::{Error, Result};
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
    norm_eps: f32,
    _pad: u32,
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
        use_bias,
        norm_eps
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

/// A single token's router: its weight, and the RMSNorm its input takes.
struct Router<'a> {
    weight: &'a GpuTensor,
    norm: InputNorm<'a>,
}

fn launch(
    gpu: &Gpu,
    kernel: Kernel,
    b: &MoeBuffers<'_>,
    router: Option<Router<'_>>,
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
        norm_eps: router.as_ref().map_or(0.0, |r| r.norm.eps),
        _pad: 0,
    };
    let key = KernelKey {
        bias: b.expert_bias.map_or(DType::F32, |t| t.dtype),
        norm: router.as_ref().map(|r| r.norm.weight.dtype),
        ..KernelKey::new(
            kernel,
            router.as_ref().map_or(DType::F32, |r| r.weight.dtype),
        )
    };
    let bias = b.expert_bias.map_or(Ok(none), |t| t.buffer())?;
    let (weight, norm, x) = match &router {
        Some(r) => (r.weight.buffer()?, r.norm.weight.buffer()?, r.norm.residual),
        None => (none, none, b.x),
    };
    let buffers = [
        b.router_logits,
        bias,
        b.expert_out,
        b.routes,
        b.slots,
        x,
        weight,
        norm,
    ];
    Dispatch::new(
        gpu,
        format!("{}:{kernel:?}", b.label),
        key,
        &buffers,
        &params,
        grid,
    )
}

/// Picks each token's experts and their weights: a workgroup per token.
pub fn moe_route(gpu: &Gpu, b: &MoeBuffers<'_>, none: &wgpu::Buffer) -> Result<Dispatch> {
    launch(gpu, Kernel::MoeRoute, b, None, none, Grid::PerToken(1))
}

/// Lists each expert's slots for a batch's expert matmuls, after [`moe_route`]: a
/// workgroup per expert.
pub fn moe_lists(gpu: &Gpu, b: &MoeBuffers<'_>, none: &wgpu::Buffer) -> Result<Dispatch> {
    let grid = Grid::Fixed(b.config.n_experts as u32);
    launch(gpu, Kernel::MoeLists, b, None, none, grid)
}

/// A single token's router projection and routing in one launch, for a router
/// `weight` (n_experts, hidden) of a float type whose input is `norm`'s output: the
/// logits come from the residual stream `norm.residual`, normalized on the way.
/// None where the router is quantized, or its rows are not whole 16-byte vectors (the
/// kernel reads them a vector at a time): its projection is then a matvec of its own.
pub fn moe_route_token(
    gpu: &Gpu,
    b: &MoeBuffers<'_>,
    weight: &GpuTensor,
    norm: InputNorm<'_>,
    none: &wgpu::Buffer,
) -> Result<Option<Dispatch>> {
    if weight.dtype.is_quantized() || weight.dtype.bytes_for(b.hidden) % 16 != 0 {
        return Ok(None);
    }
    if weight.shape != [b.config.n_experts, b.hidden] || norm.weight.shape != [b.hidden] {
        return Err(Error::Gpu(format!(
            "{}: a router {:?} for {} experts of width {}, its norm {:?}",
            weight.name, weight.shape, b.config.n_experts, b.hidden, norm.weight.shape
        )));
    }
    let router = Router { weight, norm };
    let launch = launch(
        gpu,
        Kernel::MoeRouteToken,
        b,
        Some(router),
        none,
        Grid::Fixed(1),
    )?;
    Ok(Some(launch))
}

/// Adds the weighted expert outputs of a batch to the residual stream (a single
/// token's down projection adds them itself: `ExpertOutput::Combine`).
pub fn moe_combine(gpu: &Gpu, b: &MoeBuffers<'_>, none: &wgpu::Buffer) -> Result<Dispatch> {
    let grid = Grid::Threads {
        per_token: b.hidden as u32,
        size: WG,
    };
    launch(gpu, Kernel::MoeCombine, b, None, none, grid)
}
