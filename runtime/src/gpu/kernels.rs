//! The WGSL kernels, their binding layouts, and a cache of compiled pipelines keyed by
//! kernel and weight dtype (the key doubles as the wgpu label).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::{Gpu, StepUniform};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Shared by every kernel: the weight unpacking, the per-forward `Step` uniform, reductions.
const COMMON: &str = include_str!("../../../shaders/common.wgsl");
/// IEEE half to f32, by the hardware or with integer operations (`HalfDecode`).
const HALF_HARDWARE: &str = include_str!("../../../shaders/half_hardware.wgsl");
const HALF_INTEGER: &str = include_str!("../../../shaders/half_integer.wgsl");
/// Sums across a workgroup, with subgroup operations or without (`Reduce`).
const REDUCE_SUBGROUPS: &str = include_str!("../../../shaders/reduce_subgroups.wgsl");
const REDUCE_WORKGROUP: &str = include_str!("../../../shaders/reduce_workgroup.wgsl");
/// GGUF block unpacking, for the kernels that read weight matrices (named `weight`).
const QUANT: &str = include_str!("../../../shaders/quant.wgsl");
/// GGUF block dot products, for matvec.wgsl.
const MATVEC_QUANT: &str = include_str!("../../../shaders/matvec_quant.wgsl");
/// The `Params` of the projection kernels (matvec, matmul, matmul_rows).
const LINEAR_PARAMS: &str = include_str!("../../../shaders/linear_params.wgsl");
/// A batch's slot lists per expert, for the prefill matmuls.
const EXPERT_LISTS: &str = include_str!("../../../shaders/expert_lists.wgsl");
/// KV cache packing and paging, for the kernels that use the cache.
const KV: &str = include_str!("../../../shaders/kv.wgsl");
/// One token's attention over the cache, for the kernels that attend.
const ATTEND: &str = include_str!("../../../shaders/attend.wgsl");

/// How a kernel binds one of its `@group(0)` buffers, in binding order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
    Uniform,
}

use Access::{Read, ReadWrite, Uniform};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embedding,
    RmsNorm,
    Matvec,
    MatvecConv,
    Matmul,
    MatmulRows,
    Rope,
    RopeAttention,
    AttentionCombine,
    Attention,
    ShortConv,
    ShortConvState,
    ShortConvToken,
    SwiGlu,
    MoeRoute,
    MoeLists,
    MoeCombine,
    MoeRouteToken,
    KvShift,
    Copy,
    Argmax,
    ArgmaxMerge,
    TopLogits,
    TopMerge,
}

impl Kernel {
    pub const ALL: [Kernel; 24] = [
        Kernel::Embedding,
        Kernel::RmsNorm,
        Kernel::Matvec,
        Kernel::MatvecConv,
        Kernel::Matmul,
        Kernel::MatmulRows,
        Kernel::Rope,
        Kernel::RopeAttention,
        Kernel::AttentionCombine,
        Kernel::Attention,
        Kernel::ShortConv,
        Kernel::ShortConvState,
        Kernel::ShortConvToken,
        Kernel::SwiGlu,
        Kernel::MoeRoute,
        Kernel::MoeLists,
        Kernel::MoeCombine,
        Kernel::MoeRouteToken,
        Kernel::KvShift,
        Kernel::Copy,
        Kernel::Argmax,
        Kernel::ArgmaxMerge,
        Kernel::TopLogits,
        Kernel::TopMerge,
    ];

    /// The kernel's own WGSL file (shaders/common.wgsl is prepended to it).
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Embedding => include_str!("../../../shaders/embedding.wgsl"),
            Kernel::RmsNorm => include_str!("../../../shaders/rmsnorm.wgsl"),
            Kernel::Matvec | Kernel::MatvecConv => include_str!("../../../shaders/matvec.wgsl"),
            Kernel::Matmul => include_str!("../../../shaders/matmul.wgsl"),
            Kernel::MatmulRows => include_str!("../../../shaders/matmul_rows.wgsl"),
            Kernel::Rope | Kernel::RopeAttention | Kernel::AttentionCombine => {
                include_str!("../../../shaders/rope.wgsl")
            }
            Kernel::Attention => include_str!("../../../shaders/attention.wgsl"),
            Kernel::ShortConv | Kernel::ShortConvState | Kernel::ShortConvToken => {
                include_str!("../../../shaders/shortconv.wgsl")
            }
            Kernel::SwiGlu => include_str!("../../../shaders/swiglu.wgsl"),
            Kernel::MoeRoute | Kernel::MoeLists | Kernel::MoeCombine | Kernel::MoeRouteToken => {
                include_str!("../../../shaders/moe.wgsl")
            }
            Kernel::KvShift => include_str!("../../../shaders/kv_shift.wgsl"),
            Kernel::Copy => include_str!("../../../shaders/copy.wgsl"),
            Kernel::Argmax | Kernel::ArgmaxMerge | Kernel::TopLogits | Kernel::TopMerge => {
                include_str!("../../../shaders/pick.wgsl")
            }
        }
    }

    /// Whether the kernel reads weight matrices that may be GGUF-quantized.
    fn reads_quantized(self) -> bool {
        matches!(
            self,
            Kernel::Embedding
                | Kernel::Matvec
                | Kernel::MatvecConv
                | Kernel::Matmul
                | Kernel::MatmulRows
        )
    }

    /// The complete module: the half decoding, the sums across invocations, common
    /// helpers (and block unpacking) followed by the kernel.
    pub fn module_source(self, halves: HalfDecode, reduce: Reduce) -> String {
        let half = match halves {
            HalfDecode::Hardware => HALF_HARDWARE,
            HalfDecode::Integer => HALF_INTEGER,
        };
        let sums = match reduce {
            Reduce::Subgroups => REDUCE_SUBGROUPS,
            Reduce::Workgroup => REDUCE_WORKGROUP,
        };
        let quant = match self {
            Kernel::Matvec | Kernel::MatvecConv => format!("{QUANT}\n{MATVEC_QUANT}"),
            _ if self.reads_quantized() => QUANT.to_string(),
            _ => String::new(),
        };
        let kv = match self {
            Kernel::Rope | Kernel::RopeAttention | Kernel::AttentionCombine | Kernel::Attention => {
                format!("{KV}\n{ATTEND}")
            }
            Kernel::KvShift => KV.to_string(),
            _ => String::new(),
        };
        let params = match self {
            Kernel::Matvec | Kernel::MatvecConv => LINEAR_PARAMS.to_string(),
            Kernel::Matmul | Kernel::MatmulRows => format!("{LINEAR_PARAMS}\n{EXPERT_LISTS}"),
            _ => String::new(),
        };
        format!(
            "{half}\n{sums}\n{COMMON}\n{quant}\n{kv}\n{params}\n{}",
            self.source()
        )
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::ShortConvState => "update_state",
            Kernel::ShortConvToken => "token",
            Kernel::MoeRoute => "route",
            Kernel::MoeLists => "lists",
            Kernel::MoeCombine => "combine",
            Kernel::MoeRouteToken => "token",
            Kernel::RopeAttention => "token",
            Kernel::AttentionCombine => "combine",
            Kernel::MatvecConv => "conv",
            Kernel::Argmax => "argmax",
            Kernel::ArgmaxMerge => "argmax_merge",
            Kernel::TopLogits => "top",
            Kernel::TopMerge => "top_merge",
            _ => "main",
        }
    }

    /// `@group(0)` bindings: inputs, outputs, then the params uniform.
    pub fn bindings(self) -> &'static [Access] {
        match self {
            // tokens, table, out, params
            Kernel::Embedding => &[Read, Read, ReadWrite, Uniform],
            // x, weight, out, params
            Kernel::RmsNorm => &[Read, Read, ReadWrite, Uniform],
            // x, weight, bias, routing (MoE), out, norm weight, params
            Kernel::Matvec => &[Read, Read, Read, Read, ReadWrite, Read, Uniform],
            // x, in_proj weight, conv weight, routing (unused), out, norm weight, params,
            // conv state, previous conv state
            Kernel::MatvecConv => &[
                Read, Read, Read, Read, ReadWrite, Read, Uniform, ReadWrite, ReadWrite,
            ],
            // x, weight, bias, routing (MoE), out, params
            Kernel::Matmul | Kernel::MatmulRows => &[Read, Read, Read, Read, ReadWrite, Uniform],
            // q norm, k norm, table, page table, qkv (q and k in place), k cache, v cache,
            // attention's out (a single token's), params, the key ranges' partial results
            Kernel::Rope | Kernel::RopeAttention | Kernel::AttentionCombine => &[
                Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Uniform,
                ReadWrite,
            ],
            // qkv, page table, k cache, v cache, out, params
            Kernel::Attention => &[Read, Read, Read, Read, ReadWrite, Uniform],
            // bcx, conv weight, conv bias, state, out, previous state, params
            Kernel::ShortConv | Kernel::ShortConvState | Kernel::ShortConvToken => {
                &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Uniform]
            }
            // gate, up (becomes the output), params
            Kernel::SwiGlu => &[Read, ReadWrite, Uniform],
            // router logits, expert bias, expert out, routes, slots, x, router weight,
            // norm weight, params
            Kernel::MoeRoute | Kernel::MoeLists | Kernel::MoeCombine | Kernel::MoeRouteToken => &[
                Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Read, Read, Uniform,
            ],
            // rope table, page table, cache (in place), params
            Kernel::KvShift => &[Read, Read, ReadWrite, Uniform],
            // src, dst, params
            Kernel::Copy => &[Read, ReadWrite, Uniform],
            // logits, the batch's ids (argmax) or the candidates' record (top), the
            // allowed tokens' mask, the chunks' picks, params
            Kernel::Argmax | Kernel::ArgmaxMerge | Kernel::TopLogits | Kernel::TopMerge => {
                &[Read, ReadWrite, Read, ReadWrite, Uniform]
            }
        }
    }
}

/// How kernels turn IEEE halves (f16 weights, GGUF scales, an f16 KV cache) into f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HalfDecode {
    /// `unpack2x16float`, where the device has the SHADER_F16_IN_F32 capability.
    Hardware,
    /// Integer operations, everywhere else.
    Integer,
}

/// How kernels add values up across the invocations of a workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    /// A subgroup sum per value, then one barrier, where the device has wgpu's
    /// SUBGROUP feature (a group that is not the whole workgroup still takes the tree).
    Subgroups,
    /// A tree in workgroup memory, a barrier per halving, everywhere else.
    Workgroup,
}

/// A compiled pipeline: the kernel specialised for one weight dtype (the KV cache's for
/// the kernels that use the cache) and, for projections, the bias dtype: GGUF keeps
/// biases f32 beside quantized weights; the dtype of the norm weights a kernel applies
/// (a matvec's where it normalizes its own input, RoPE's q/k norms); for a matvec,
/// whether it computes SwiGLU's gate and up rows of one matrix together; for attention,
/// the q heads, and the tokens, one workgroup attends with; for the prefill matmuls,
/// the tokens of a tile (a thread's, matmul_rows').
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub kernel: Kernel,
    pub dtype: DType,
    pub bias: DType,
    pub norm: Option<DType>,
    pub paired: bool,
    pub heads: u32,
    pub tokens: u32,
}

impl KernelKey {
    pub fn new(kernel: Kernel, dtype: DType) -> KernelKey {
        KernelKey {
            kernel,
            dtype,
            bias: DType::F32,
            norm: None,
            paired: false,
            heads: 1,
            tokens: 1,
        }
    }
}

impl fmt::Display for KernelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}.{}.{}", self.kernel, self.dtype, self.bias)?;
        if let Some(norm) = self.norm {
            write!(f, ".norm-{norm}")?;
        }
        if self.paired {
            write!(f, ".paired")?;
        }
        if self.heads > 1 {
            write!(f, ".heads-{}", self.heads)?;
        }
        if self.tokens > 1 {
            write!(f, ".tokens-{}", self.tokens)?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct PipelineCache {
    layouts: Mutex<HashMap<Kernel, Arc<wgpu::BindGroupLayout>>>,
    step_layout: Mutex<Option<Arc<wgpu::BindGroupLayout>>>,
    modules: Mutex<HashMap<Kernel, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<KernelKey, Arc<wgpu::ComputePipeline>>>,
}

fn layout_entries(bindings: &[Access]) -> Vec<wgpu::BindGroupLayoutEntry> {
    bindings
        .iter()
        .enumerate()
        .map(|(i, access)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match access {
                    Read => wgpu::BufferBindingType::Storage { read_only: true },
                    ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    Uniform => wgpu::BufferBindingType::Uniform,
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}

fn locked<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))
}

impl Gpu {
    /// The `@group(0)` layout of `kernel`.
    pub fn kernel_layout(&self, kernel: Kernel) -> Result<Arc<wgpu::BindGroupLayout>> {
        let mut layouts = locked(&self.pipelines.layouts)?;
        Ok(layouts
            .entry(kernel)
            .or_insert_with(|| {
                let label = format!("{kernel:?}");
                Arc::new(
                    self.device
                        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                            label: Some(&label),
                            entries: &layout_entries(kernel.bindings()),
                        }),
                )
            })
            .clone())
    }

    /// The `@group(1)` layout: the `Step` uniform every kernel sees.
    pub fn step_layout(&self) -> Result<Arc<wgpu::BindGroupLayout>> {
        let mut slot = locked(&self.pipelines.step_layout)?;
        Ok(slot
            .get_or_insert_with(|| {
                Arc::new(
                    self.device
                        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                            label: Some("step"),
                            entries: &layout_entries(&[Uniform]),
                        }),
                )
            })
            .clone())
    }

    /// A `Step` uniform holding `step`, and its `@group(1)` bind group. COPY_DST: a
    /// session rewrites it before each batch.
    pub fn step_binding(
        &self,
        label: &str,
        step: &StepUniform,
    ) -> Result<(wgpu::Buffer, wgpu::BindGroup)> {
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(step),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &*self.step_layout()?,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: buffer.as_entire_binding(),
            }],
        });
        Ok((buffer, group))
    }

    fn module(&self, kernel: Kernel) -> Result<Arc<wgpu::ShaderModule>> {
        if let Some(module) = locked(&self.pipelines.modules)?.get(&kernel) {
            return Ok(module.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(&format!("{kernel:?}")),
            source: wgpu::ShaderSource::Wgsl(kernel.module_source(self.halves, self.reduce).into()),
        };
        // Bounds and integer-division checks stay; the loop bound naga would add to
        // every loop goes. It keeps drivers from unrolling the kernels' fixed-count
        // loops: on an NVIDIA H200, prefill ran 4.6 times faster with all
        // runtime checks off, and on lavapipe the loop bound was most of that.
        let checks = wgpu::ShaderRuntimeChecks {
            force_loop_bounding: false,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        // SAFETY: without the forced bound a loop that never ends is undefined
        // behaviour; every loop of every kernel is a `for` counting up to a bound with a
        // non-zero step, or halving a power of two to zero, over shapes checked at load
        // far below u32::MAX (tests/shaders.rs holds every kernel to that form).
        let module = unsafe { self.device.create_shader_module_trusted(descriptor, checks) };
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "shader {kernel:?} does not compile: {error}"
            )));
        }
        let module = Arc::new(module);
        locked(&self.pipelines.modules)?.insert(kernel, module.clone());
        Ok(module)
    }

    /// The override constants of `key`'s pipeline: the dtypes, and the adapter's launch
    /// shape for the kernels that have one.
    fn constants(&self, key: KernelKey) -> Vec<(&'static str, f64)> {
        let mut constants = vec![
            ("WEIGHT_DTYPE", key.dtype.shader_code()),
            ("BIAS_DTYPE", key.bias.shader_code()),
        ];
        if let Some(norm) = key.norm {
            constants.push(("NORM_DTYPE", norm.shader_code()));
        }
        match key.kernel {
            Kernel::MatvecConv => constants.extend(self.tuning.matvec_constants()),
            Kernel::Matvec => {
                constants.extend(self.tuning.matvec_constants());
                constants.push(("PAIRED", f64::from(u8::from(key.paired))));
            }
            Kernel::Matmul => constants.push(("TILE_T", key.tokens.into())),
            Kernel::MatmulRows => {
                constants.extend(self.tuning.matmul_rows_constants());
                constants.push(("TOKENS_PER_THREAD", key.tokens.into()));
            }
            Kernel::Rope => constants.push(("HEADS", key.heads.into())),
            Kernel::RopeAttention => {
                constants.extend(self.tuning.key_ranges.constants());
                constants.push(("HEADS", key.heads.into()));
            }
            Kernel::Attention => {
                constants.push(("HEADS", key.heads.into()));
                constants.push(("TOKENS", key.tokens.into()));
            }
            Kernel::AttentionCombine => constants.extend(self.tuning.key_ranges.constants()),
            Kernel::Argmax | Kernel::ArgmaxMerge | Kernel::TopLogits | Kernel::TopMerge => {
                constants.extend(self.tuning.pick_constants())
            }
            _ => {}
        }
        constants
    }

    /// The pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: KernelKey) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(pipeline) = locked(&self.pipelines.pipelines)?.get(&key) {
            return Ok(pipeline.clone());
        }
        let module = self.module(key.kernel)?;
        let layout = self.kernel_layout(key.kernel)?;
        let step = self.step_layout()?;
        let label = key.to_string();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout), Some(&step)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(key.kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &self.constants(key),
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("pipeline {label}: {error}")));
        }
        let pipeline = Arc::new(pipeline);
        locked(&self.pipelines.pipelines)?.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
