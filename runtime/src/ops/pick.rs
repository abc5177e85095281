//! Picking the next token on the GPU (`shaders/pick.wgsl`): greedy decoding's argmax,
//! and sampled decoding's candidates, so that an id or a few hundred logits come back
//! instead of the row. Both pick among the tokens a mask allows (a bit per token, bit
//! `i % 32` of word `i / 32`; every bit set, unconstrained), so that constrained
//! decoding reads back no row either.

use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    n: u32,
    temperature: f32,
    rank: u32,
    _pad: u32,
}
pub(super) const MIRROR: Mirror = mirror!(Params, Kernel::Argmax, "Params", [n, temperature, rank]);

/// The rank of the bound [`top_logits`] finds: the candidates are the logits above the
/// row's 256th largest.
pub const TOP_RANK: usize = 256;

/// Bytes of [`top_logits`]'s record: a head of 4 words, then (id, logit) pairs.
pub const TOP_RECORD_BYTES: u64 = 4 * (4 + 2 * (TOP_RANK as u64 - 1));

/// Bytes of the mask of a row of `n` tokens, a bit each.
pub fn allowed_bytes(n: usize) -> u64 {
    4 * n.div_ceil(32) as u64
}

/// The index of the largest of the first `n` values of `logits` that `allowed` allows
/// (the first on ties, NaNs as −∞; 0 where none is a number), written as a u32 into
/// the first word of `out`: greedy decoding's pick without reading the row back.
pub fn argmax(
    gpu: &Gpu,
    logits: &wgpu::Buffer,
    n: usize,
    allowed: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    pick(gpu, Kernel::Argmax, logits, n, allowed, out, 4)
}

/// Sampled decoding's candidates of the first `n` values of `logits`, those `allowed`
/// allows (the others as −∞), into `out` ([`TOP_RECORD_BYTES`];
/// `sampler::TopLogits::from_record` reads it): every logit above the row's
/// [`TOP_RANK`]-th largest, that bound, and the row's softmax mass at the temperature
/// [`top_params`] sets before each launch.
pub fn top_logits(
    gpu: &Gpu,
    logits: &wgpu::Buffer,
    n: usize,
    allowed: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    pick(
        gpu,
        Kernel::TopLogits,
        logits,
        n,
        allowed,
        out,
        TOP_RECORD_BYTES,
    )
}

/// [`top_logits`]' params for a row of `n` at `temperature` (1 where it is 0: a greedy
/// chain with penalties, which needs no mass).
pub fn top_params(n: usize, temperature: f32) -> Params {
    Params {
        n: n as u32,
        temperature: if temperature > 0.0 { temperature } else { 1.0 },
        rank: TOP_RANK as u32,
        _pad: 0,
    }
}

fn pick(
    gpu: &Gpu,
    kernel: Kernel,
    logits: &wgpu::Buffer,
    n: usize,
    allowed: &wgpu::Buffer,
    out: &wgpu::Buffer,
    out_bytes: u64,
) -> Result<Dispatch> {
    if n == 0
        || n as u64 * 4 > logits.size()
        || allowed_bytes(n) > allowed.size()
        || out_bytes > out.size()
    {
        return Err(Error::Gpu(format!(
            "{kernel:?} over {n} logits in a buffer of {} bytes, a mask of {} bytes (needs {}), into {} bytes (needs {out_bytes})",
            logits.size(),
            allowed.size(),
            allowed_bytes(n),
            out.size()
        )));
    }
    Dispatch::new(
        gpu,
        format!("{kernel:?}"),
        KernelKey::new(kernel, DType::F32),
        &[logits, out, allowed],
        &top_params(n, 1.0),
        Grid::Fixed(1),
    )
}
