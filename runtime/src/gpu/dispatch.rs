//! One recorded kernel launch: pipeline + bind group (built once, at session creation)
//! + how many workgroups a batch of `n_tokens` needs.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::kernels::Access;
use super::{Gpu, KernelKey, KeyRanges};
use crate::error::{Error, Result};

/// The per-forward values every kernel reads at `@group(1) @binding(0)`
/// (`Step` in shaders/common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct StepUniform {
    /// Tokens in this batch.
    pub n_tokens: u32,
    /// Cache position of the batch's first token (tokens already in the cache).
    pub pos: u32,
    pub _pad: [u32; 2],
}

/// How many workgroups a dispatch needs for a batch.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// `per_token` workgroups for each token of the batch.
    PerToken(u32),
    /// Enough workgroups of `size` threads for `per_token` threads per token.
    Threads { per_token: u32, size: u32 },
    /// A fixed number of workgroups, whatever the batch.
    Fixed(u32),
    /// `across` workgroups side by side for every `tokens_per_tile` tokens (matmul tiles).
    Tiles { across: u32, tokens_per_tile: u32 },
}

impl Grid {
    pub fn workgroups(self, n_tokens: u32) -> u32 {
        match self {
            Grid::PerToken(n) => n * n_tokens,
            Grid::Threads { per_token, size } => (per_token * n_tokens).div_ceil(size),
            Grid::Fixed(n) => n,
            Grid::Tiles {
                across,
                tokens_per_tile,
            } => across * n_tokens.div_ceil(tokens_per_tile),
        }
    }
}

pub struct Dispatch {
    label: String,
    key: KernelKey,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    /// The params uniform, for kernels whose params change between launches.
    params: wgpu::Buffer,
    grid: Grid,
    /// Other pipelines and grids of the same kernel for small batches, the smallest
    /// first.
    small: Vec<SmallBatches>,
    /// Weight bytes one launch for a single token reads (0 where not counted):
    /// `bench --profile` gives a projection's GB/s by it.
    weight_bytes: u64,
}

/// Batches of up to `up_to` tokens launch `pipeline` over `grid` instead: the same
/// kernel, bindings and params, specialised otherwise (a smaller tile of tokens).
struct SmallBatches {
    up_to: u32,
    pipeline: Arc<wgpu::ComputePipeline>,
    grid: Grid,
}

impl Dispatch {
    /// Binds `buffers` (in the kernel's binding order) and `params` as its uniform.
    pub fn new<P: Pod>(
        gpu: &Gpu,
        label: impl Into<String>,
        key: KernelKey,
        buffers: &[&wgpu::Buffer],
        params: &P,
        grid: Grid,
    ) -> Result<Dispatch> {
        let whole: Vec<_> = buffers
            .iter()
            .map(|b| b.as_entire_buffer_binding())
            .collect();
        Self::with_ranges(gpu, label, key, &whole, params, grid)
    }

    /// As [`Dispatch::new`], binding byte ranges of buffers (one part of a weight split
    /// across bindings).
    pub fn with_ranges<P: Pod>(
        gpu: &Gpu,
        label: impl Into<String>,
        key: KernelKey,
        buffers: &[wgpu::BufferBinding<'_>],
        params: &P,
        grid: Grid,
    ) -> Result<Dispatch> {
        let label = label.into();
        let bindings = key.kernel.bindings();
        if buffers.len() + 1 != bindings.len() {
            return Err(Error::Gpu(format!(
                "{label}: {} buffers for {} bindings of {key}",
                buffers.len(),
                bindings.len() - 1
            )));
        }
        for (i, binding) in buffers.iter().enumerate() {
            let size = binding
                .size
                .map_or(binding.buffer.size() - binding.offset, |s| s.get());
            gpu.check_binding_size(&format!("{label} (binding {i})"), size)?;
        }
        let params = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(&label),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        // The buffers fill the storage bindings in order, the params the uniform's (the
        // count checked above).
        let uniform = bindings.iter().position(|a| *a == Access::Uniform);
        let mut storage: Vec<wgpu::BufferBinding<'_>> = buffers.to_vec();
        storage.insert(
            uniform.unwrap_or(storage.len()),
            params.as_entire_buffer_binding(),
        );
        let entries: Vec<wgpu::BindGroupEntry> = (storage.into_iter().enumerate())
            .map(|(i, binding)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(binding),
            })
            .collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&label),
            layout: &*gpu.kernel_layout(key.kernel)?,
            entries: &entries,
        });
        Ok(Dispatch {
            pipeline: gpu.pipeline(key)?,
            bind_group,
            params,
            grid,
            small: Vec::new(),
            label,
            key,
            weight_bytes: 0,
        })
    }

    /// The launch, batches of up to `up_to` tokens taking `key`'s pipeline (the same
    /// kernel as this one's, other constants) over `grid` instead (where no smaller
    /// batches' alternative takes them).
    pub fn with_small_batches(
        mut self,
        gpu: &Gpu,
        key: KernelKey,
        grid: Grid,
        up_to: u32,
    ) -> Result<Dispatch> {
        if key.kernel != self.key.kernel {
            return Err(Error::Gpu(format!(
                "{}: small batches of {} under a launch of {}",
                self.label, key, self.key
            )));
        }
        let small = SmallBatches {
            up_to,
            pipeline: gpu.pipeline(key)?,
            grid,
        };
        let at = self.small.partition_point(|s| s.up_to <= up_to);
        self.small.insert(at, small);
        Ok(self)
    }

    /// The launch, counted as reading `bytes` of weights for a single token.
    pub fn reading(self, bytes: u64) -> Dispatch {
        Dispatch {
            weight_bytes: bytes,
            ..self
        }
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Records the launch for a batch of `n_tokens`. Workgroup counts above the
    /// per-dimension limit spill into y; kernels flatten (x, y) and bounds-check.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32, max_per_dim: u32) {
        let (pipeline, grid) = match self.small.iter().find(|s| n_tokens <= s.up_to) {
            Some(small) => (&small.pipeline, small.grid),
            None => (&self.pipeline, self.grid),
        };
        let total = grid.workgroups(n_tokens);
        if total == 0 {
            return;
        }
        let x = total.min(max_per_dim);
        let y = total.div_ceil(x);
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Replaces the params uniform (the same type as at creation) for the launches
    /// submitted after this write.
    pub fn write_params<P: Pod>(&self, queue: &wgpu::Queue, params: &P) {
        queue.write_buffer(&self.params, 0, bytemuck::bytes_of(params));
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The kernel and dtypes it launches (`bench --profile` groups launches by kernel).
    pub fn key(&self) -> KernelKey {
        self.key
    }
}

/// One node of a forward graph: a launch, a pair chosen by batch size (matrix-vector
/// for a single token, tiled matmul for several), a launch only batches need, a launch
/// only a single token whose attention splits its keys needs, or one node per part of
/// a weight split across bindings.
pub enum Step {
    Always(Dispatch),
    BySize {
        one: Dispatch,
        many: Dispatch,
    },
    /// Work a single token's kernels do within their own launch (SwiGLU, fused into the
    /// up projection's matvec; MoE's weighted combine, into the down projection's),
    /// launched for batches only.
    Batch(Dispatch),
    /// The combine of a single token's attention, launched where `ranges` splits the
    /// keys it sees.
    Ranges {
        combine: Dispatch,
        ranges: KeyRanges,
    },
    Parts(Vec<Step>),
}

impl Step {
    /// The step of a weight bound in `parts` (one, unless split across bindings).
    pub fn from_parts(mut parts: Vec<Step>) -> Step {
        match parts.len() {
            1 => parts.remove(0),
            _ => Step::Parts(parts),
        }
    }

    /// The step for batches only: what a single token does inside another launch.
    pub fn batch_only(self) -> Step {
        match self {
            Step::Always(d) | Step::BySize { many: d, .. } | Step::Batch(d) => Step::Batch(d),
            // A single token's alone: nothing of it is a batch's.
            Step::Ranges { .. } => Step::Parts(Vec::new()),
            Step::Parts(parts) => Step::Parts(parts.into_iter().map(Step::batch_only).collect()),
        }
    }

    /// The launches for a batch of `n_tokens` whose last token sees `n_keys` positions
    /// (those before it and itself), in order.
    pub fn dispatches(&self, n_tokens: u32, n_keys: u32) -> Vec<&Dispatch> {
        match self {
            Step::Always(d) => vec![d],
            Step::BySize { one, many } => vec![if n_tokens == 1 { one } else { many }],
            Step::Batch(d) if n_tokens > 1 => vec![d],
            Step::Ranges { combine, ranges } if n_tokens == 1 && ranges.count(n_keys) > 1 => {
                vec![combine]
            }
            Step::Batch(_) | Step::Ranges { .. } => Vec::new(),
            Step::Parts(parts) => (parts.iter())
                .flat_map(|p| p.dispatches(n_tokens, n_keys))
                .collect(),
        }
    }
}
