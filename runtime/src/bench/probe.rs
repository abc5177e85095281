//! What the adapter's memory allows, measured by kernels alone: a copy (the bandwidth
//! decode is held to) and decode's matvec over one large matrix (what the projections
//! reach when a launch reads tens of megabytes, against what they reach inside a
//! token, where each reads a few).

use std::time::{Duration, Instant};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, StepUniform};
use crate::ops::{self, GpuTensor, Linear, LinearOutput};

/// Bytes per second the copy kernel moves (read + written) over buffers of up to
/// 256 MiB (less where a binding is smaller): the best of a few runs.
pub fn copy_bandwidth(gpu: &Gpu) -> Result<f64> {
    let bytes = (256u64 << 20).min(gpu.limits.max_storage_buffer_binding_size) / 16 * 16;
    let src = gpu.zeros("probe src", (bytes / 4) as usize)?;
    let dst = gpu.zeros("probe dst", (bytes / 4) as usize)?;
    let copy = ops::copy(gpu, &src, &dst, bytes)?;
    let time = best_time(gpu, &[&copy])?;
    Ok((2 * bytes * LAUNCHES as u64) as f64 / time.as_secs_f64())
}

/// Decode's matvec (one token, the adapter's launch shape) over one matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatvecProbe {
    pub dtype: DType,
    pub rows: usize,
    pub k: usize,
    /// Weight bytes read per second.
    pub bytes_per_s: f64,
}

/// The matrix's input width: a common hidden size.
const PROBE_K: usize = 4096;

/// Decode's matvec over a `dtype` matrix of up to 16 384 rows of 4096 (fewer where a
/// binding holds less), its weight bytes read per second: the best of a few runs.
pub fn matvec_bandwidth(gpu: &Gpu, dtype: DType) -> Result<MatvecProbe> {
    let k = PROBE_K;
    let row_bytes = dtype.bytes_for(k);
    let fit = gpu.limits.max_storage_buffer_binding_size as usize / row_bytes;
    let rows = fit.min(16384);
    if rows == 0 {
        return Err(Error::Gpu(format!(
            "matvec probe: a {dtype} row of {k} does not fit a binding"
        )));
    }
    let zeros = vec![0u8; rows * row_bytes];
    let weight = GpuTensor::upload(gpu, "probe weight", dtype, &[rows, k], &[&zeros])?;
    let x = gpu.zeros("probe x", k)?;
    let out = gpu.zeros("probe out", rows)?;
    let none = gpu.zeros("probe none", 4)?;
    let op = Linear {
        weight: &weight,
        bias: None,
        x: &x,
        out: &out,
        output: LinearOutput::Rows,
        gate: None,
        norm: None,
    };
    let step = ops::linear(gpu, op, &none)?;
    let time = best_time(gpu, &step.dispatches(1, 1))?;
    Ok(MatvecProbe {
        dtype,
        rows,
        k,
        bytes_per_s: (rows * row_bytes * LAUNCHES) as f64 / time.as_secs_f64(),
    })
}

/// Times each probe's `launches` run LAUNCHES times over in one submission.
const LAUNCHES: usize = 4;

/// The shortest of a few submissions of `launches` LAUNCHES times over, for one token.
fn best_time(gpu: &Gpu, launches: &[&Dispatch]) -> Result<Duration> {
    let (_step, step_group) = gpu.step_binding("probe step", &StepUniform::default())?;
    let repeated: Vec<&Dispatch> = (launches.iter().copied().cycle())
        .take(LAUNCHES * launches.len())
        .collect();
    let mut best = Duration::MAX;
    for _ in 0..4 {
        best = best.min(submit_and_wait(gpu, &step_group, &repeated, 1)?);
    }
    gpu.check()?;
    Ok(best)
}

/// Wall time of one submission of `dispatches` for a batch of `n_tokens` in one pass
/// (the step bound as `step_group`), waited for.
pub(super) fn submit_and_wait(
    gpu: &Gpu,
    step_group: &wgpu::BindGroup,
    dispatches: &[&Dispatch],
    n_tokens: u32,
) -> Result<Duration> {
    let max_per_dim = gpu.limits.max_compute_workgroups_per_dimension;
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_bind_group(1, step_group, &[]);
        for dispatch in dispatches {
            dispatch.encode(&mut pass, n_tokens, max_per_dim);
        }
    }
    let start = Instant::now();
    gpu.queue.submit([encoder.finish()]);
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for a timed submission: {e}")))?;
    Ok(start.elapsed())
}
