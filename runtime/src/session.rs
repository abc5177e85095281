//! A conversation with a model: its own KV cache and conv state, fed tokens in batches.
//! Each batch is one command buffer: write the tokens and the `Step` uniform, record the
//! forward graph, copy the logits out, submit, read back. Nothing is allocated per token.
//!
//! The conv layers' state has no positions: it is the last L−1 values of the sequence,
//! so a session cannot simply forget its latest tokens. It keeps instead a snapshot of
//! every conv state each `snapshot_interval` tokens (batches end on those boundaries)
//! and the tokens themselves; rewinding to position p restores the snapshot at or before
//! p and feeds the tokens from there to p again. Attention needs nothing: its rows past
//! p are simply overwritten later.
//!
//! The KV cache lives in a [`KvPool`] of fixed-size blocks: a session's own by default,
//! or one shared by several sessions of the model ([`Session::new_in`]), where a fork
//! shares its parent's blocks until either writes into them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::{Step, StepUniform};
use crate::kv_pool::{blocks_for, KvPool, PageTable, PassContext};
use crate::model::Model;
use crate::ops::KvShift;
use crate::state::{State, StateShape};

/// What a KV cache element is stored as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    /// Half the memory; attention still accumulates in f32.
    #[default]
    F16,
    F32,
}

impl KvDtype {
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F16 => 2,
            KvDtype::F32 => 4,
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            KvDtype::F16 => DType::F16,
            KvDtype::F32 => DType::F32,
        }
    }
}

impl FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvDtype::F16),
            "f32" => Ok(KvDtype::F32),
            other => Err(format!("unknown KV cache type {other:?} (f16, f32)")),
        }
    }
}

impl fmt::Display for KvDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvDtype::F16 => "f16",
            KvDtype::F32 => "f32",
        })
    }
}

/// What feeding does when the context is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContextOverflow {
    /// Refuse the tokens with [`Error::ContextFull`].
    #[default]
    Error,
    /// Drop the oldest tokens after the first `shift_keep` (half of the rest, or as
    /// many as the batch needs), as llama.cpp's context shift does: cached keys are
    /// moved and rotated to their new positions, conv state needs nothing.
    Shift,
}

impl FromStr for ContextOverflow {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(ContextOverflow::Error),
            "shift" => Ok(ContextOverflow::Shift),
            other => Err(format!("unknown context overflow {other:?} (error, shift)")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Tokens the KV cache holds (capped at the model's max_position_embeddings).
    pub max_context: usize,
    /// Most tokens per forward pass; longer prompts are fed in several passes.
    pub batch: usize,
    /// Return logits for every fed token, not only the last.
    pub all_logits: bool,
    pub kv_dtype: KvDtype,
    pub overflow: ContextOverflow,
    /// Tokens a context shift keeps at the start (the bos token, a system prompt).
    pub shift_keep: usize,
    /// Tokens between two conv-state snapshots: the most a rewind feeds again.
    pub snapshot_interval: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_context: 4096,
            batch: 128,
            all_logits: false,
            kv_dtype: KvDtype::default(),
            overflow: ContextOverflow::default(),
            shift_keep: 1,
            snapshot_interval: 128,
        }
    }
}

impl SessionOptions {
    /// The sizes a session of `model` allocates for these options.
    pub(crate) fn shape(&self, max_position_embeddings: usize) -> StateShape {
        let max_context = self.max_context.min(max_position_embeddings).max(1);
        StateShape {
            batch: self.batch.clamp(1, max_context),
            max_context,
            all_logits: self.all_logits,
            kv_dtype: self.kv_dtype,
            snapshot_interval: self.snapshot_interval.max(1),
        }
    }
}

pub struct Session {
    model: Arc<Model>,
    state: State,
    graph: Vec<Step>,
    step_uniform: wgpu::Buffer,
    step_group: wgpu::BindGroup,
    /// MAP_READ copy of the logits.
    staging: wgpu::Buffer,
    /// Positions → blocks of the KV pool.
    pages: PageTable,
    /// Whether the pool is this session's alone (its bytes count as the session's).
    own_pool: bool,
    options: SessionOptions,
    /// Tokens in the cache, oldest first (its length is the position).
    tokens: Vec<u32>,
    /// The earliest position a rewind can reach: 0, or where the last context shift
    /// left the session (earlier snapshots describe tokens that are gone).
    floor: usize,
}

impl Session {
    /// A session with a KV pool of its own, as large as its context.
    pub fn new(model: Arc<Model>, options: &SessionOptions) -> Result<Session> {
        let shape = options.shape(model.config.max_position_embeddings);
        let pool = KvPool::new(&model, shape.kv_dtype, blocks_for(shape.max_context))?;
        Self::with_pool(model, options, pool, true)
    }

    /// A session whose KV cache lives in `pool`, shared with other sessions of the
    /// model (its KV type is the pool's).
    pub fn new_in(
        pool: &Arc<KvPool>,
        model: Arc<Model>,
        options: &SessionOptions,
    ) -> Result<Session> {
        let options = SessionOptions {
            kv_dtype: pool.dtype(),
            ..options.clone()
        };
        Self::with_pool(model, &options, pool.clone(), false)
    }

    fn with_pool(
        model: Arc<Model>,
        options: &SessionOptions,
        pool: Arc<KvPool>,
        own_pool: bool,
    ) -> Result<Session> {
        let shape = options.shape(model.config.max_position_embeddings);
        let gpu = &model.gpu;
        let pages = PageTable::new(pool, shape.max_context)?;
        let state = State::new(gpu, &model.config, shape, pages.pool(), &pages.buffer)?;
        let graph = model.forward_graph(&state)?;
        let step_uniform = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("step"),
                contents: bytemuck::bytes_of(&StepUniform::default()),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let step_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("step"),
            layout: &*gpu.step_layout()?,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: step_uniform.as_entire_binding(),
            }],
        });
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: state.logits.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.check()?;
        let options = SessionOptions {
            max_context: shape.max_context,
            batch: shape.batch,
            snapshot_interval: shape.snapshot_interval,
            ..options.clone()
        };
        Ok(Session {
            model,
            state,
            graph,
            step_uniform,
            step_group,
            staging,
            pages,
            own_pool,
            options,
            tokens: Vec::new(),
            floor: 0,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The options as applied (context and batch clamped).
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// Tokens in the cache.
    pub fn position(&self) -> usize {
        self.tokens.len()
    }

    /// The tokens in the cache, oldest first.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn max_context(&self) -> usize {
        self.options.max_context
    }

    /// The earliest position [`Session::rewind`] can reach.
    pub fn rewind_floor(&self) -> usize {
        self.floor
    }

    /// Whether `n` more tokens can be fed (always, when the context shifts).
    pub fn has_room(&self, n: usize) -> bool {
        self.options.overflow == ContextOverflow::Shift || self.position() + n <= self.max_context()
    }

    /// Tokens a context shift keeps at the start, e.g. a system prompt's.
    pub fn set_shift_keep(&mut self, tokens: usize) {
        self.options.shift_keep = tokens;
    }

    /// Bytes of GPU memory the session holds (activations, conv state, readback, and
    /// its KV pool when it is its own).
    pub fn gpu_bytes(&self) -> u64 {
        let pool = match self.own_pool {
            true => {
                let pool = self.pages.pool();
                KvPool::bytes(&self.model.config, pool.dtype(), pool.blocks())
            }
            false => 0,
        };
        self.state.allocated_bytes() + self.staging.size() + pool
    }

    /// The pool holding this session's KV cache.
    pub fn kv_pool(&self) -> &Arc<KvPool> {
        self.pages.pool()
    }

    pub(crate) fn page_table(&self) -> &PageTable {
        &self.pages
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    /// Forgets everything fed so far.
    pub fn reset(&mut self) {
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for (conv_state, snapshots) in self.state.conv_layers() {
            encoder.clear_buffer(conv_state, 0, None);
            encoder.clear_buffer(snapshots, 0, None);
        }
        gpu.queue.submit([encoder.finish()]);
        self.tokens.clear();
        self.pages.truncate(0);
        self.floor = 0;
    }

    /// Feeds `tokens` after what the cache holds. Returns the logits of the last token
    /// (vocab values), or of every token (n · vocab) when the session was created with
    /// `all_logits`.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let vocab = self.model.config.vocab_size;
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to feed (empty prompt)".into()));
        }
        if let Some((i, &t)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= vocab)
        {
            return Err(Error::Input(format!(
                "token id {t} at position {i} is out of range: vocab_size is {vocab}"
            )));
        }
        if !self.has_room(tokens.len()) {
            return Err(Error::ContextFull {
                held: self.position(),
                new: tokens.len(),
                capacity: self.max_context(),
            });
        }
        let mut logits = Vec::new();
        let mut rest = tokens;
        while !rest.is_empty() {
            let mut n = rest.len().min(self.options.batch);
            if self.position() + n > self.max_context() {
                self.shift(n)?;
            }
            // Batches end on snapshot boundaries.
            let interval = self.options.snapshot_interval;
            n = n.min(interval - self.position() % interval);
            let rows = self.run_batch(&rest[..n])?;
            if !self.options.all_logits {
                logits.clear();
            }
            logits.extend(rows);
            rest = &rest[n..];
        }
        Ok(logits)
    }

    /// Makes the cache hold exactly `tokens` and returns the logits of the last one:
    /// the longest prefix the cache already holds is kept (a new chat turn feeds only
    /// what it adds), the rest is rewound and fed.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to feed (empty prompt)".into()));
        }
        let common = self
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // At least the last token is fed again: its logits are the answer.
        let keep = common.min(tokens.len() - 1);
        if keep < self.floor {
            self.reset();
            return self.feed(tokens);
        }
        let start = self.restore_snapshot(keep)?;
        self.truncate(start);
        log::debug!(
            "prefill: {keep} of {} tokens cached, feeding from {start}",
            tokens.len()
        );
        self.feed(&tokens[start..])
    }

    /// Forgets the tokens after position `to`, as if only the first `to` had been fed.
    pub fn rewind(&mut self, to: usize) -> Result<()> {
        if to > self.position() {
            return Err(Error::Input(format!(
                "cannot rewind to position {to}: the session holds {} tokens",
                self.position()
            )));
        }
        if to < self.floor {
            return Err(Error::Input(format!(
                "cannot rewind to position {to}: a context shift dropped the tokens before {}",
                self.floor
            )));
        }
        if to == self.position() {
            return Ok(());
        }
        let start = self.restore_snapshot(to)?;
        let again = self.tokens[start..to].to_vec();
        self.truncate(start);
        if !again.is_empty() {
            self.feed(&again)?;
        }
        Ok(())
    }

    /// Restores the conv state of the latest snapshot at or before `to` (>= the floor)
    /// and returns its position: the caller truncates the tokens there, and feeds again
    /// those from it to `to`.
    fn restore_snapshot(&mut self, to: usize) -> Result<usize> {
        let interval = self.options.snapshot_interval;
        let aligned = to / interval * interval;
        let (slot, start) = if aligned > self.floor {
            (aligned / interval, aligned)
        } else {
            (0, self.floor)
        };
        let gpu = &self.model.gpu;
        let size = self.state.conv_state_bytes(&self.model.config);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for (conv_state, snapshots) in self.state.conv_layers() {
            encoder.copy_buffer_to_buffer(snapshots, slot as u64 * size, conv_state, 0, size);
        }
        gpu.queue.submit([encoder.finish()]);
        Ok(start)
    }

    /// Forgets the tokens from position `to` on, and the KV blocks past them.
    fn truncate(&mut self, to: usize) {
        self.tokens.truncate(to);
        self.pages.truncate(to);
    }

    /// A new session holding the same tokens, which then goes its own way: it shares
    /// the KV blocks (each copied only when one of the two writes into it) and gets a
    /// copy of the conv state and its snapshots. A fork of a session with a pool of its
    /// own gets a pool of its own too.
    pub fn fork(&self) -> Result<Session> {
        let mut other = match self.own_pool {
            true => Session::new(self.model.clone(), &self.options)?,
            false => Session::new_in(self.pages.pool(), self.model.clone(), &self.options)?,
        };
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        if self.own_pool {
            // Separate pools: the cache rows are copied.
            let context = PassContext {
                gpu,
                step_group: &other.step_group,
                rope_table: &other.state.rope_table,
            };
            let pos = self.position();
            other.pages.prepare_write(0, pos, &mut encoder, &context)?;
            let rows = self.pages.row_ranges(pos).into_iter();
            let runs: Vec<_> = rows.zip(other.pages.row_ranges(pos)).collect();
            let pools = self.kv_pool().layers().iter().zip(other.kv_pool().layers());
            for ((k, v), (k2, v2)) in pools {
                for (from, to) in [(k, k2), (v, v2)] {
                    for &((src, size), (dst, _)) in &runs {
                        encoder.copy_buffer_to_buffer(from, src, to, dst, size);
                    }
                }
            }
        } else {
            other.pages.share_blocks_of(&self.pages)?;
        }
        for ((state, snaps), (state2, snaps2)) in
            self.state.conv_layers().zip(other.state.conv_layers())
        {
            encoder.copy_buffer_to_buffer(state, 0, state2, 0, state.size());
            encoder.copy_buffer_to_buffer(snaps, 0, snaps2, 0, snaps.size());
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.check()?;
        other.tokens = self.tokens.clone();
        other.floor = self.floor;
        Ok(other)
    }

    /// Empties the session and gives it KV blocks for `rows` positions (a restore).
    pub(crate) fn reserve(&mut self, rows: usize) -> Result<()> {
        self.reset();
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let context = PassContext {
            gpu,
            step_group: &self.step_group,
            rope_table: &self.state.rope_table,
        };
        self.pages.prepare_write(0, rows, &mut encoder, &context)?;
        gpu.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// Restores what a saved session held (see `session_file.rs`).
    pub(crate) fn set_restored(&mut self, tokens: Vec<u32>, floor: usize) {
        self.tokens = tokens;
        self.floor = floor;
    }

    /// Makes room for `needed` more tokens by dropping cached tokens after the first
    /// `shift_keep`: cache rows move down and keys turn back to their new positions.
    fn shift(&mut self, needed: usize) -> Result<()> {
        let (pos, capacity) = (self.position(), self.max_context());
        let keep = self.options.shift_keep.min(pos);
        let deficit = (pos + needed).saturating_sub(capacity);
        let discard = ((pos - keep) / 2).max(deficit);
        if discard > pos - keep {
            return Err(Error::Input(format!(
                "context shift: a context of {capacity} tokens cannot hold the {keep} kept tokens and a batch of {needed}"
            )));
        }
        let gpu = &*self.model.gpu;
        let moved = pos - keep - discard;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let context = PassContext {
            gpu,
            step_group: &self.step_group,
            rope_table: &self.state.rope_table,
        };
        // The moved rows' destination must be this session's alone.
        self.pages
            .prepare_write(keep, keep + moved, &mut encoder, &context)?;
        let pool = self.pages.pool();
        let mut moves = Vec::new();
        for (k_cache, v_cache) in pool.layers() {
            for (cache, rotate) in [(k_cache, true), (v_cache, false)] {
                // At most `discard` rows per launch: source and destination stay apart.
                for done in (0..moved).step_by(discard.max(1)) {
                    let shift = KvShift {
                        src: keep + discard + done,
                        dst: keep + done,
                        rows: discard.min(moved - done),
                        rotate,
                    };
                    let table = &self.state.rope_table;
                    moves.push(pool.shift(table, &self.pages.buffer, cache, shift)?);
                }
            }
        }
        context.encode(&mut encoder, "context shift", &moves);
        // The conv state is that of the last token, wherever it now sits: it becomes
        // the state a rewind to the new floor restores.
        let size = self.state.conv_state_bytes(&self.model.config);
        for (conv_state, snapshots) in self.state.conv_layers() {
            encoder.copy_buffer_to_buffer(conv_state, 0, snapshots, 0, size);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.check()?;
        self.tokens.drain(keep..keep + discard);
        self.pages.truncate(self.tokens.len());
        self.floor = self.position();
        log::info!("context shift: dropped {discard} tokens after the first {keep}");
        Ok(())
    }

    fn run_batch(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let gpu = &self.model.gpu;
        let n = tokens.len() as u32;
        let pos = self.position();
        let step = StepUniform {
            n_tokens: n,
            pos: pos as u32,
            _pad: [0; 2],
        };
        gpu.queue
            .write_buffer(&self.state.tokens, 0, bytemuck::cast_slice(tokens));
        gpu.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            });
        let context = PassContext {
            gpu,
            step_group: &self.step_group,
            rope_table: &self.state.rope_table,
        };
        self.pages
            .prepare_write(pos, pos + tokens.len(), &mut encoder, &context)?;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            pass.set_bind_group(1, &self.step_group, &[]);
            let max_per_dim = gpu.limits.max_compute_workgroups_per_dimension;
            for node in &self.graph {
                for dispatch in node.dispatches(n) {
                    dispatch.encode(&mut pass, n, max_per_dim);
                }
            }
        }
        let end = pos + tokens.len();
        let interval = self.options.snapshot_interval;
        if end % interval == 0 {
            let size = self.state.conv_state_bytes(&self.model.config);
            let slot = (end / interval) as u64;
            for (conv_state, snapshots) in self.state.conv_layers() {
                encoder.copy_buffer_to_buffer(conv_state, 0, snapshots, slot * size, size);
            }
        }
        let rows = if self.options.all_logits {
            n as usize
        } else {
            1
        };
        let bytes = (rows * self.model.config.vocab_size * 4) as u64;
        encoder.copy_buffer_to_buffer(&self.state.logits, 0, &self.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let logits: Vec<f32> = gpu.map_and_read(&self.staging, bytes)?;
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }
}
