//! The attention KV cache in blocks of `BLOCK_TOKENS` rows, shared by the sessions of a
//! model. Each attention layer has one K and one V buffer holding every block; a session
//! maps its positions to blocks through a page table (position p lives in row p % B of
//! block table[p / B]). Blocks are reference-counted: a fork shares all of its parent's
//! blocks, and whichever session writes first into a shared block copies it (copy on
//! write), so sessions with a common prefix hold it once.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{LayerKind, ModelConfig};
use crate::dtype::KvDtype;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::ops::{self, KvShift};
use crate::vram::{Reservation, VramBudget};

/// Rows per block: small enough that a fork copies little, large enough that the page
/// table stays short.
pub const BLOCK_TOKENS: usize = 16;

/// Blocks that hold `tokens` rows.
pub fn blocks_for(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_TOKENS)
}

struct Refs {
    /// Sessions holding each block (0: free).
    counts: Vec<u32>,
    free: Vec<u32>,
}

pub struct KvPool {
    gpu: Arc<Gpu>,
    config: ModelConfig,
    dtype: KvDtype,
    blocks: usize,
    /// Per attention layer: K and V, (blocks · BLOCK_TOKENS, kv_heads, head_dim) each.
    layers: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    refs: Mutex<Refs>,
    /// The pool's bytes in the model's VRAM budget.
    _vram: Option<Reservation>,
}

impl KvPool {
    /// A pool of `blocks` blocks for the sessions of a model of `config` on `gpu`,
    /// its bytes taken from `budget` when there is one ([`crate::Model::kv_pool`]
    /// passes the model's).
    pub fn new(
        gpu: &Arc<Gpu>,
        config: &ModelConfig,
        budget: Option<&Arc<VramBudget>>,
        dtype: KvDtype,
        blocks: usize,
    ) -> Result<Arc<KvPool>> {
        let c = config;
        ops::check_cache_dtype(c, dtype.dtype())?;
        let blocks = blocks.max(1);
        let vram = budget
            .map(|budget| {
                let what = format!("a KV pool of {blocks} blocks");
                budget.reserve(&what, Self::bytes(c, dtype, blocks))
            })
            .transpose()?;
        let words = blocks * BLOCK_TOKENS * c.kv_dim() * dtype.bytes() / 4;
        let layers = (0..attention_layers(c))
            .map(|i| {
                Ok((
                    gpu.zeros(&format!("kv pool {i} k"), words)?,
                    gpu.zeros(&format!("kv pool {i} v"), words)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(KvPool {
            gpu: gpu.clone(),
            config: c.clone(),
            dtype,
            blocks,
            layers,
            refs: Mutex::new(Refs {
                counts: vec![0; blocks],
                free: (0..blocks as u32).rev().collect(),
            }),
            _vram: vram,
        }))
    }

    /// Bytes a pool of `blocks` blocks takes.
    pub fn bytes(c: &ModelConfig, dtype: KvDtype, blocks: usize) -> u64 {
        let per_layer = blocks.max(1) * BLOCK_TOKENS * c.kv_dim() * dtype.bytes();
        (attention_layers(c) * 2 * per_layer) as u64
    }

    /// Fails unless the sessions of a model of `config` on `gpu` can keep their cache
    /// here: the same device and attention shapes.
    pub(crate) fn check_serves(&self, gpu: &Arc<Gpu>, config: &ModelConfig) -> Result<()> {
        let same = Arc::ptr_eq(&self.gpu, gpu)
            && config.kv_dim() == self.config.kv_dim()
            && attention_layers(config) == attention_layers(&self.config);
        if !same {
            return Err(Error::Input(
                "this KV pool was made for another model (another device, or other attention shapes)".into(),
            ));
        }
        Ok(())
    }

    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Blocks no session holds.
    pub fn free_blocks(&self) -> usize {
        self.lock().map_or(0, |r| r.free.len())
    }

    pub(crate) fn layers(&self) -> &[(wgpu::Buffer, wgpu::Buffer)] {
        &self.layers
    }

    fn lock(&self) -> Result<MutexGuard<'_, Refs>> {
        self.refs
            .lock()
            .map_err(|_| Error::Gpu("KV pool poisoned".into()))
    }

    fn alloc(&self) -> Result<u32> {
        let mut refs = self.lock()?;
        let total = refs.counts.len();
        let block = refs.free.pop().ok_or(Error::KvPoolFull {
            blocks: total,
            block_tokens: BLOCK_TOKENS,
        })?;
        refs.counts[block as usize] = 1;
        Ok(block)
    }

    fn retain(&self, blocks: &[u32]) -> Result<()> {
        let mut refs = self.lock()?;
        for &b in blocks {
            refs.counts[b as usize] += 1;
        }
        Ok(())
    }

    fn release(&self, blocks: &[u32]) {
        // A poisoned lock only leaks the blocks.
        if let Ok(mut refs) = self.refs.lock() {
            for &b in blocks {
                let count = &mut refs.counts[b as usize];
                *count = count.saturating_sub(1);
                if *count == 0 {
                    refs.free.push(b);
                }
            }
        }
    }

    fn is_shared(&self, block: u32) -> Result<bool> {
        Ok(self.lock()?.counts[block as usize] > 1)
    }
}

fn attention_layers(c: &ModelConfig) -> usize {
    c.layers
        .iter()
        .filter(|k| **k == LayerKind::Attention)
        .count()
}

/// A session's positions → blocks of its pool, mirrored on the GPU for the kernels.
pub(crate) struct PageTable {
    pool: Arc<KvPool>,
    blocks: Vec<u32>,
    /// (max_context / BLOCK_TOKENS) u32.
    pub buffer: wgpu::Buffer,
    dirty: bool,
}

impl PageTable {
    pub fn new(pool: Arc<KvPool>, max_context: usize) -> Result<PageTable> {
        let buffer = pool.gpu.zeros("page table", blocks_for(max_context))?;
        Ok(PageTable {
            pool,
            blocks: Vec::new(),
            buffer,
            dirty: false,
        })
    }

    pub fn pool(&self) -> &Arc<KvPool> {
        &self.pool
    }

    /// Makes rows `from .. to` writable: missing blocks are allocated, shared ones
    /// copied first (the copies are recorded into `encoder`, before what writes).
    /// When the pool runs out, the blocks taken so far stay valid.
    pub fn prepare_write(
        &mut self,
        from: usize,
        to: usize,
        encoder: &mut wgpu::CommandEncoder,
        pass: &PassContext<'_>,
    ) -> Result<()> {
        let mut copies = Vec::new();
        let taken = (from / BLOCK_TOKENS..blocks_for(to)).try_for_each(|b| {
            if b == self.blocks.len() {
                self.blocks.push(self.pool.alloc()?);
                self.dirty = true;
            } else if self.pool.is_shared(self.blocks[b])? {
                let copy = self.pool.alloc()?;
                copies.push([self.blocks[b], copy]);
                self.pool.release(&[self.blocks[b]]);
                self.blocks[b] = copy;
                self.dirty = true;
            }
            Ok(())
        });
        self.copy_blocks(&copies, encoder, pass)?;
        self.upload();
        taken
    }

    /// Copies whole blocks, `[from, to]` pairs, of every layer with `kv_shift` through
    /// a two-entry page table each (a buffer cannot be copied onto itself).
    fn copy_blocks(
        &self,
        copies: &[[u32; 2]],
        encoder: &mut wgpu::CommandEncoder,
        pass: &PassContext<'_>,
    ) -> Result<()> {
        let pool = &*self.pool;
        let copy = KvShift {
            src: 0,
            dst: BLOCK_TOKENS,
            rows: BLOCK_TOKENS,
            rotate: false,
        };
        let mut dispatches = Vec::new();
        for pair in copies {
            let pages = pool.gpu.upload("block copy", bytemuck::cast_slice(pair))?;
            for (k, v) in pool.layers() {
                for cache in [k, v] {
                    dispatches.push(pool.shift(pass.rope_table, &pages, cache, copy)?);
                }
            }
        }
        pass.encode(encoder, "copy on write", &dispatches);
        Ok(())
    }

    /// Forgets the rows from `rows` on (whole blocks past it go back to the pool).
    pub fn truncate(&mut self, rows: usize) {
        let keep = blocks_for(rows).min(self.blocks.len());
        self.pool.release(&self.blocks[keep..]);
        self.blocks.truncate(keep);
    }

    /// Holds the blocks `other` holds instead of its own (a fork).
    pub fn share_blocks_of(&mut self, other: &PageTable) -> Result<()> {
        self.pool.retain(&other.blocks)?;
        self.truncate(0);
        self.blocks = other.blocks.clone();
        self.dirty = true;
        self.upload();
        Ok(())
    }

    /// Uploads the table if it changed since the last upload.
    pub fn upload(&mut self) {
        if self.dirty {
            self.pool
                .gpu
                .queue
                .write_buffer(&self.buffer, 0, bytemuck::cast_slice(&self.blocks));
            self.dirty = false;
        }
    }

    /// Byte ranges of rows `0 .. rows` of one layer's K (or V) buffer, block by block.
    pub fn row_ranges(&self, rows: usize) -> Vec<(u64, u64)> {
        let row_bytes = (self.pool.config.kv_dim() * self.pool.dtype.bytes()) as u64;
        let block_bytes = BLOCK_TOKENS as u64 * row_bytes;
        self.blocks
            .iter()
            .enumerate()
            .take(blocks_for(rows))
            .map(|(i, &b)| {
                let n = (rows - i * BLOCK_TOKENS).min(BLOCK_TOKENS) as u64;
                (b as u64 * block_bytes, n * row_bytes)
            })
            .collect()
    }
}

impl Drop for PageTable {
    fn drop(&mut self) {
        self.pool.release(&self.blocks);
    }
}

impl KvPool {
    /// A `kv_shift` launch over `cache` through page table `pages`.
    pub(crate) fn shift(
        &self,
        rope_table: &wgpu::Buffer,
        pages: &wgpu::Buffer,
        cache: &wgpu::Buffer,
        shift: KvShift,
    ) -> Result<Dispatch> {
        let dtype = self.dtype.dtype();
        ops::kv_shift(
            &self.gpu,
            &self.config,
            dtype,
            [rope_table, pages, cache],
            shift,
        )
    }
}

/// What launches outside the forward graph need: the session's `Step` bind group and
/// RoPE table.
pub(crate) struct PassContext<'a> {
    pub gpu: &'a Gpu,
    pub step_group: &'a wgpu::BindGroup,
    pub rope_table: &'a wgpu::Buffer,
}

impl PassContext<'_> {
    /// Records `dispatches` (grids that ignore the batch size) in a compute pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, label: &str, dispatches: &[Dispatch]) {
        if dispatches.is_empty() {
            return;
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        pass.set_bind_group(1, self.step_group, &[]);
        let max_per_dim = self.gpu.limits.max_compute_workgroups_per_dimension;
        for d in dispatches {
            d.encode(&mut pass, 1, max_per_dim);
        }
    }
}
