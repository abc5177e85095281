//! Picking the next token on the GPU (`shaders/pick.wgsl`): greedy decoding's argmax,
//! and sampled decoding's candidates, so that an id or a few hundred logits come back
//! instead of the row. Both pick among the tokens a mask allows (a bit per token, bit
//! `i % 32` of word `i / 32`; every bit set, unconstrained), so that constrained
//! decoding reads back no row either. Each is two launches ([`Pick`]): the row's chunks
//! side by side, then their merge.

use bytemuck::{Pod, Zeroable};

use super::layout::{mirror, Mirror};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Grid, Kernel, KernelKey, PickChunks};

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

/// What sets the argmax and the candidates apart: their two kernels, their chunks
/// (`Tuning::pick_chunks`), the words of `parts` each chunk writes, and the bytes the
/// merge writes.
struct Kind {
    kernels: [Kernel; 2],
    chunk: fn(PickChunks) -> u32,
    words_per_chunk: usize,
    out_bytes: u64,
}

const ARGMAX: Kind = Kind {
    kernels: [Kernel::Argmax, Kernel::ArgmaxMerge],
    chunk: |chunks| chunks.argmax,
    words_per_chunk: 2,
    out_bytes: 4,
};

const TOP: Kind = Kind {
    kernels: [Kernel::TopLogits, Kernel::TopMerge],
    chunk: |chunks| chunks.top,
    // A record of up to TOP_RANK - 1 candidates.
    words_per_chunk: TOP_RECORD_BYTES as usize / 4,
    out_bytes: TOP_RECORD_BYTES,
};

impl Kind {
    /// Words of the chunks' picks over a row of `n`: sized for the smallest chunks,
    /// which the adapter's are at least, so that they do not depend on the adapter.
    fn parts_words(&self, n: usize) -> usize {
        n.div_ceil((self.chunk)(PickChunks::SMALLEST) as usize) * self.words_per_chunk
    }
}

/// The longest row a pick takes: its indices are exact as f32 (pick.wgsl's `NO_INDEX`).
const MAX_ROW: usize = 1 << 24;

/// A pick's two launches: each chunk of the row, then the merge of their picks.
pub struct Pick {
    chunks: Dispatch,
    merge: Dispatch,
    /// The chunks' picks, which the merge reads.
    parts: wgpu::Buffer,
}

impl Pick {
    pub fn dispatches(&self) -> [&Dispatch; 2] {
        [&self.chunks, &self.merge]
    }

    /// Records both launches into `pass`.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, max_per_dim: u32) {
        for dispatch in self.dispatches() {
            dispatch.encode(pass, 1, max_per_dim);
        }
    }

    /// Sets both launches' params ([`top_params`]).
    pub fn write_params(&self, queue: &wgpu::Queue, params: &Params) {
        for dispatch in self.dispatches() {
            dispatch.write_params(queue, params);
        }
    }

    pub fn label(&self) -> &str {
        self.merge.label()
    }

    /// Bytes of GPU memory the pick holds besides the buffers it reads and writes.
    pub fn scratch_bytes(&self) -> u64 {
        self.parts.size()
    }
}

/// Bytes of GPU memory both picks over a row of `n` hold ([`Pick::scratch_bytes`]).
pub fn picks_scratch_bytes(n: usize) -> u64 {
    [ARGMAX, TOP]
        .map(|kind| Gpu::zeros_bytes(kind.parts_words(n)))
        .iter()
        .sum()
}

/// Bytes of the mask of a row of `n` tokens, a bit each.
pub fn allowed_bytes(n: usize) -> u64 {
    4 * n.div_ceil(32) as u64
}

/// A mask of a row of `n` tokens that allows every one, writable (a constrained pick
/// writes its own over it).
pub fn allow_every(gpu: &Gpu, n: usize) -> wgpu::Buffer {
    wgpu::util::DeviceExt::create_buffer_init(
        &gpu.device,
        &wgpu::util::BufferInitDescriptor {
            label: Some("allowed tokens"),
            contents: &vec![0xff; allowed_bytes(n) as usize],
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        },
    )
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
) -> Result<Pick> {
    pick(gpu, &ARGMAX, logits, n, allowed, out)
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
) -> Result<Pick> {
    pick(gpu, &TOP, logits, n, allowed, out)
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

/// The two launches of the pick `kind`, over the adapter's chunks, with a scratch
/// buffer of their own for the chunks' picks.
fn pick(
    gpu: &Gpu,
    kind: &Kind,
    logits: &wgpu::Buffer,
    n: usize,
    allowed: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Pick> {
    let [chunk_kernel, merge_kernel] = kind.kernels;
    let out_bytes = kind.out_bytes;
    if n == 0
        || n > MAX_ROW
        || n as u64 * 4 > logits.size()
        || allowed_bytes(n) > allowed.size()
        || out_bytes > out.size()
    {
        return Err(Error::Gpu(format!(
            "{merge_kernel:?} over {n} logits (at most {MAX_ROW}) in a buffer of {} bytes, a mask of {} bytes (needs {}), into {} bytes (needs {out_bytes})",
            logits.size(),
            allowed.size(),
            allowed_bytes(n),
            out.size()
        )));
    }
    let chunks = n.div_ceil((kind.chunk)(gpu.tuning.pick_chunks) as usize);
    let parts = gpu.zeros(&format!("{chunk_kernel:?} chunks"), kind.parts_words(n))?;
    let buffers = [logits, out, allowed, &parts];
    let params = top_params(n, 1.0);
    let launch = |kernel: Kernel, workgroups| {
        let key = KernelKey::new(kernel, DType::F32);
        let grid = Grid::Fixed(workgroups as u32);
        Dispatch::new(gpu, format!("{kernel:?}"), key, &buffers, &params, grid)
    };
    Ok(Pick {
        chunks: launch(chunk_kernel, chunks)?,
        merge: launch(merge_kernel, 1)?,
        parts,
    })
}
