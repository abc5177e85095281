//! Adapter choice and device creation. The device is opened with the adapter's own
//! limits (not wgpu's conservative defaults) so large embeddings fit where the hardware
//! allows, and every allocation is checked against those limits with a named error.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::kernels::{HalfDecode, PipelineCache, Reduce};
use super::{KeyRanges, Prefill, Tuning};
use crate::error::{Error, Result};

/// A backend the user may ask for; `Auto` lets wgpu pick (and honours `WGPU_BACKEND`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

/// With `Auto`, a `WGPU_BACKEND` that names no backend is an error, not a silent
/// fallback to all of them.
fn check_backend_env(backend: Backend) -> Result<()> {
    let Some(value) = std::env::var("WGPU_BACKEND").ok().filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    if backend == Backend::Auto && wgpu::Backends::from_comma_list(&value).is_empty() {
        return Err(Error::Input(format!(
            "WGPU_BACKEND={value:?} names no backend (vulkan, metal, dx12, gl)"
        )));
    }
    Ok(())
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "vulkan" => Ok(Backend::Vulkan),
            "metal" => Ok(Backend::Metal),
            "dx12" => Ok(Backend::Dx12),
            "gl" | "gles" | "opengl" => Ok(Backend::Gl),
            other => Err(format!(
                "unknown backend {other:?} (auto, vulkan, metal, dx12, gl)"
            )),
        }
    }
}

impl Backend {
    fn backends(self) -> wgpu::Backends {
        match self {
            Backend::Auto => wgpu::Backends::PRIMARY.with_env(),
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub backend: Backend,
    /// Lowers the device's `max_storage_buffer_binding_size` to this many bytes: larger
    /// weights are then split across bindings, as on a phone with small bindings.
    pub max_binding_size: Option<u64>,
    /// Lowers the device's `max_buffer_size` (and the binding size with it) to this
    /// many bytes: larger weights are then uploaded as several buffers.
    pub max_buffer_size: Option<u64>,
    /// Launch shapes instead of those chosen for the adapter (tests run the GPU
    /// layouts on lavapipe).
    pub tuning: Option<Tuning>,
    /// Decode's matvec launch shape (workgroup, threads per row, rows per thread)
    /// instead of the chosen one's: for measuring shapes on a new device.
    pub matvec_launch: Option<[u32; 3]>,
    /// Prefill's projection kernel instead of the chosen one: for measuring both on a
    /// new device.
    pub prefill: Option<Prefill>,
    /// How a single token's attention splits its keys instead of the chosen one's: for
    /// measuring on a new device.
    pub key_ranges: Option<KeyRanges>,
    /// Half decoding instead of the device's best (tests run the integer one on
    /// devices that decode halves in hardware).
    pub halves: Option<HalfDecode>,
    /// Sums across invocations instead of the device's best (tests run the tree on
    /// devices with subgroup operations); subgroups where the device has none fail.
    pub reduce: Option<Reduce>,
}

/// Where the device can write GPU timestamps (wgpu's timestamp query features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamps {
    /// Between any two dispatches of a compute pass.
    InsidePasses,
    /// At the beginning and end of a compute pass only.
    PassBoundaries,
    /// Nowhere: dispatches are timed on the CPU.
    None,
}

/// The device every model and session of a process shares.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub tuning: Tuning,
    /// How the kernels decode IEEE halves on this device.
    pub halves: HalfDecode,
    /// How the kernels add values up across invocations on this device.
    pub reduce: Reduce,
    pub(super) pipelines: PipelineCache,
    /// The first validation or device error wgpu reported outside an error scope.
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Bytes uploaded with `upload`/`upload_parts` (the weights), padding included.
    uploaded: AtomicU64,
}

/// Discrete GPUs first, CPU rasterisers (lavapipe) last.
fn preference(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn best_adapter(backends: wgpu::Backends) -> Option<wgpu::Adapter> {
    if backends.is_empty() {
        return None;
    }
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = backends;
    let instance = wgpu::Instance::new(descriptor);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| preference(a.get_info().device_type));
    adapters.into_iter().next()
}

impl Gpu {
    pub fn new(options: &GpuOptions) -> Result<Arc<Gpu>> {
        check_backend_env(options.backend)?;
        // Auto tries the native APIs first and falls back to OpenGL ES only when none
        // has an adapter (probing GL on a headless machine is slow and noisy).
        let adapter = match options.backend {
            Backend::Auto => best_adapter(Backend::Auto.backends())
                .or_else(|| best_adapter(wgpu::Backends::GL.with_env())),
            other => best_adapter(other.backends()),
        };
        let adapter = adapter.ok_or_else(|| {
            Error::NoAdapter(format!(
                "wgpu found no adapter for backend {:?}; on a machine without a GPU install Mesa's lavapipe (mesa-vulkan-drivers)",
                options.backend
            ))
        })?;
        let info = adapter.get_info();
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP);
        let reduce = match options.reduce {
            Some(Reduce::Subgroups) if !subgroups => {
                return Err(Error::Input(format!(
                    "{} has no subgroup operations (wgpu's SUBGROUP feature)",
                    info.name
                )))
            }
            Some(reduce) => reduce,
            None if subgroups => Reduce::Subgroups,
            None => Reduce::Workgroup,
        };
        let mut tuning = (options.tuning).unwrap_or_else(|| Tuning::for_adapter(&info, reduce));
        if let Some(launch) = options.matvec_launch {
            tuning = tuning.with_matvec(launch);
        }
        if let Some(prefill) = options.prefill {
            tuning.prefill = prefill;
        }
        if let Some(key_ranges) = options.key_ranges {
            tuning.key_ranges = key_ranges;
        }
        tuning.check()?;
        let mut limits = adapter.limits();
        if let Some(max) = options.max_buffer_size {
            limits.max_buffer_size = limits.max_buffer_size.min(max);
        }
        // A binding never exceeds its buffer.
        let binding = options.max_binding_size.unwrap_or(u64::MAX);
        limits.max_storage_buffer_binding_size = limits
            .max_storage_buffer_binding_size
            .min(binding)
            .min(limits.max_buffer_size);
        log::info!(
            "adapter: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );
        // SUBGROUP where the kernels use subgroup operations (`Reduce::Subgroups`).
        // SHADER_F16 where the adapter has it: Mesa's Vulkan drivers grant the
        // SHADER_F16_IN_F32 capability (hardware half decoding) only with it.
        // The timestamp queries where it has them: `bench --profile` times each
        // dispatch with them (requesting them costs nothing until a query is written).
        let features = adapter.features()
            & (wgpu::Features::SHADER_F16
                | wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
            | match reduce {
                Reduce::Subgroups => wgpu::Features::SUBGROUP,
                Reduce::Workgroup => wgpu::Features::empty(),
            };
        let hardware_halves = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let halves = options.halves.unwrap_or(if hardware_halves {
            HalfDecode::Hardware
        } else {
            HalfDecode::Integer
        });
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("lfm-edge"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", info.name)))?;
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            log::error!("wgpu: {error}");
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| error.to_string());
            }
        }));
        Ok(Arc::new(Gpu {
            device,
            queue,
            tuning,
            halves,
            reduce,
            info,
            limits,
            pipelines: PipelineCache::default(),
            uncaptured,
            uploaded: Default::default(),
        }))
    }

    /// How the GPU can time dispatches: between them inside one pass, only at the
    /// boundaries of passes, or not at all.
    pub fn timestamps(&self) -> Timestamps {
        let features = self.device.features();
        if features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        ) {
            Timestamps::InsidePasses
        } else if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            Timestamps::PassBoundaries
        } else {
            Timestamps::None
        }
    }

    /// Fails if wgpu reported an error since the last check (a failed dispatch or
    /// allocation would otherwise show up only as wrong numbers).
    pub fn check(&self) -> Result<()> {
        match self.uncaptured.lock().ok().and_then(|mut slot| slot.take()) {
            Some(message) => Err(Error::Gpu(message)),
            None => Ok(()),
        }
    }

    /// Checks a buffer of `size` bytes, bound whole, against the device's limits,
    /// naming `what`.
    pub fn check_buffer_size(&self, what: &str, size: u64) -> Result<()> {
        self.check_allocation(what, size)?;
        self.check_binding_size(what, size)
    }

    /// Checks one binding of `size` bytes against `max_storage_buffer_binding_size`.
    pub fn check_binding_size(&self, what: &str, size: u64) -> Result<()> {
        let binding = self.limits.max_storage_buffer_binding_size;
        if size > binding {
            return Err(Error::Limit {
                what: what.to_string(),
                limit: "max_storage_buffer_binding_size",
                needed: size,
                available: binding,
            });
        }
        Ok(())
    }

    /// Checks a buffer of `size` bytes against `max_buffer_size`.
    pub fn check_allocation(&self, what: &str, size: u64) -> Result<()> {
        if size > self.limits.max_buffer_size {
            return Err(Error::Limit {
                what: what.to_string(),
                limit: "max_buffer_size",
                needed: size,
                available: self.limits.max_buffer_size,
            });
        }
        Ok(())
    }

    /// A storage buffer holding `bytes` (zero-padded to a multiple of 16 bytes).
    pub fn upload(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.upload_parts(label, &[bytes])
    }

    /// A storage buffer holding `parts` back to back: per-expert tensors stacked into one.
    pub fn upload_parts(&self, label: &str, parts: &[&[u8]]) -> Result<wgpu::Buffer> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // Weights larger than a binding are split across bindings by the ops.
        self.check_allocation(label, len as u64)?;
        // Padded to 16 bytes: matvec.wgsl reads weights as vec4<u32>, and a binding
        // holds only whole elements of its array.
        let padded = len.next_multiple_of(16).max(16);
        let contents: std::borrow::Cow<[u8]> = match parts {
            [bytes] if len == padded => (*bytes).into(),
            _ => {
                let mut joined = Vec::with_capacity(padded);
                parts.iter().for_each(|p| joined.extend_from_slice(p));
                joined.resize(padded, 0);
                joined.into()
            }
        };
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &contents,
                // COPY_SRC: a session file's model fingerprint reads a norm back.
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            });
        self.uploaded.fetch_add(buffer.size(), Ordering::Relaxed);
        Ok(buffer)
    }

    /// Bytes uploaded so far with `upload`/`upload_parts`, padding included.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// A zeroed f32 storage buffer of `len` elements, padded to whole 16-byte words:
    /// kernels read activations as vec4<f32>, and a binding holds only whole elements.
    pub fn zeros(&self, label: &str, len: usize) -> Result<wgpu::Buffer> {
        let size = Gpu::zeros_bytes(len);
        self.check_buffer_size(label, size)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Bytes [`Gpu::zeros`] allocates for `len` elements (memory plans count them).
    pub fn zeros_bytes(len: usize) -> u64 {
        (len.max(1) * 4).next_multiple_of(16) as u64
    }

    /// Reads `len` f32 values from the start of `buffer`, waiting for the GPU.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        self.read(buffer, 0, (len * 4) as u64)
    }

    /// Reads `size` bytes of `buffer` from `offset` (both multiples of 4) as `T`s,
    /// waiting for the GPU.
    pub fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<T>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        self.map_and_read(&staging, size)
    }

    /// Maps a MAP_READ buffer whose copy has been submitted and returns its contents.
    pub fn map_and_read<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> Result<Vec<T>> {
        self.map_and_read_after(staging, size, None)
    }

    /// As [`Gpu::map_and_read`], waiting for submission `index` (the last to write
    /// `staging`) where given, not for those submitted after it.
    pub fn map_and_read_after<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        index: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<T>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
            let _ = sender.send(r);
        });
        let wait = wgpu::PollType::Wait {
            submission_index: index,
            timeout: None,
        };
        self.device
            .poll(wait)
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        receiver
            .recv()
            .map_err(|_| Error::Gpu("readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
        let values = {
            let view = staging
                .get_mapped_range(0..size)
                .map_err(|e| Error::Gpu(format!("reading the readback buffer: {e}")))?;
            bytemuck::pod_collect_to_vec(&view[..])
        };
        staging.unmap();
        self.check()?;
        Ok(values)
    }
}
