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

mod ahead;
mod file;
mod history;
pub(crate) mod options;
mod trace;

use std::sync::Arc;

use crate::budget::{fit_session, session_scratch_bytes, ID_READBACK_BYTES};
use crate::error::{Error, Result};
use crate::gpu::StepUniform;
use crate::kv_pool::{blocks_for, KvPool, PageTable, PassContext};
use crate::model::{Graph, Model, TapSource};
use crate::ops;
use crate::sampler::TopLogits;
use crate::state::State;
use crate::vram::Reservation;

pub use crate::dtype::KvDtype;
pub use options::{ContextOverflow, SessionOptions};
pub use trace::{Intermediate, Trace};

pub struct Session {
    model: Arc<Model>,
    state: State,
    graph: Graph,
    step_uniform: wgpu::Buffer,
    step_group: wgpu::BindGroup,
    /// MAP_READ copy of the logits (or of a sampled step's candidates).
    staging: wgpu::Buffer,
    /// MAP_READ copies of a greedy step's pick, taken in turn (`ids_turn` next), so
    /// that a step may be submitted behind one whose pick is still to be read.
    ids: [wgpu::Buffer; 2],
    ids_turn: usize,
    /// The last row's argmax into the first token id, for [`Session::step_greedy`].
    argmax: ops::Pick,
    /// The last row's candidates into `top_record`, for [`Session::step_top`].
    top: ops::Pick,
    top_record: wgpu::Buffer,
    /// The tokens the picks may return, a bit each: all of them, but during a pick
    /// limited to some ([`Session::pick_greedy`], [`Session::pick_top`]).
    allowed: wgpu::Buffer,
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
    /// The step a greedy step fed ahead of the caller's feeding its token, while that
    /// step is not yet the session's (`ahead.rs`).
    ahead: Option<ahead::Ahead>,
    /// The step after a sampled one, recorded while the GPU ran that one and not yet
    /// submitted: its token is the sampler's pick (`ahead.rs`).
    sampled_next: Option<Recorded>,
    /// The session's bytes (its pool's, when its own, are the pool's) in the model's
    /// VRAM budget.
    _vram: Option<Reservation>,
}

/// `options` with the context the model's VRAM budget has room for, if it has one.
fn fit(model: &Model, options: &SessionOptions, own_pool: bool) -> Result<SessionOptions> {
    match model.vram_budget() {
        Some(budget) => fit_session(&model.config, options, budget, own_pool),
        None => Ok(options.clone()),
    }
}

impl Session {
    /// A session with a KV pool of its own, as large as its context. Within a VRAM
    /// budget, the context is at most what the budget has left room for.
    pub fn new(model: Arc<Model>, options: &SessionOptions) -> Result<Session> {
        let options = &fit(&model, options, true)?;
        let shape = options.shape(model.config.max_position_embeddings);
        let pool = model.kv_pool(shape.kv_dtype, blocks_for(shape.max_context))?;
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
        let options = fit(&model, &options, false)?;
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
        pool.check_serves(&model.gpu, &model.config)?;
        let vram = model.reserve(
            &format!("a session of {} tokens", shape.max_context),
            session_scratch_bytes(&model.config, options, shape.max_context),
        )?;
        let pages = PageTable::new(pool, shape.max_context)?;
        let state = State::new(gpu, &model.config, shape, pages.pool(), &pages.buffer)?;
        let graph = model.forward_graph(&state)?;
        let (step_uniform, step_group) = gpu.step_binding("step", &StepUniform::default())?;
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: state.logits.size().max(ops::TOP_RECORD_BYTES),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let ids = [0, 1].map(|_| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("greedy pick readback"),
                size: ID_READBACK_BYTES,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let vocab = model.config.vocab_size;
        let allowed = ops::allow_every(gpu, vocab);
        let argmax = ops::argmax(gpu, &state.logits, vocab, &allowed, &state.tokens)?;
        let top_record = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("top logits"),
            size: ops::TOP_RECORD_BYTES,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let top = ops::top_logits(gpu, &state.logits, vocab, &allowed, &top_record)?;
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
            ids,
            ids_turn: 0,
            argmax,
            top,
            top_record,
            allowed,
            pages,
            own_pool,
            options,
            tokens: Vec::new(),
            floor: 0,
            ahead: None,
            sampled_next: None,
            _vram: vram,
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
        let pool = self.pages.pool();
        let pool = if self.own_pool {
            KvPool::bytes(&self.model.config, pool.dtype(), pool.blocks())
        } else {
            0
        };
        self.state.allocated_bytes()
            + self.staging.size()
            + self.ids.iter().map(wgpu::Buffer::size).sum::<u64>()
            + self.top_record.size()
            + self.allowed.size()
            + self.argmax.scratch_bytes()
            + self.top.scratch_bytes()
            + pool
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
        self.ahead = None;
        self.sampled_next = None;
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for conv in self.state.conv_layers() {
            encoder.clear_buffer(conv.state, 0, None);
            encoder.clear_buffer(conv.snapshots, 0, None);
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
        self.feed_until(tokens, &|| false)
    }

    /// As [`Session::feed`], polling `cancelled` before each batch: once it returns
    /// true, [`Error::Cancelled`], the batches before it staying fed.
    pub fn feed_until(&mut self, tokens: &[u32], cancelled: &dyn Fn() -> bool) -> Result<Vec<f32>> {
        self.feed_with(tokens, cancelled, Readback::Logits)
    }

    /// One greedy decode step: feeds `token` and returns the most likely next one (the
    /// first maximum of its logits, NaNs as −∞), picked on the GPU so that one id and
    /// not the row comes back. As [`Session::step`] then `sampler::argmax`.
    pub fn step_greedy(&mut self, token: u32) -> Result<u32> {
        only_pick(self.feed_with(&[token], &|| false, Readback::Argmax)?)
    }

    /// One sampled decode step: feeds `token` and returns the next one's candidates,
    /// picked on the GPU with the row's softmax mass at `temperature`, so that a few
    /// hundred logits and not the row come back (`Sampler::sample_top`; where they
    /// cannot decide, [`Session::last_logits`] reads the row).
    pub fn step_top(&mut self, token: u32, temperature: f32) -> Result<TopLogits> {
        self.set_top_temperature(temperature);
        top_logits(&self.feed_with(&[token], &|| false, Readback::Top)?)
    }

    /// Feeds `token` and submits its step without waiting for it: the next token is
    /// then picked on the GPU ([`Session::pick_greedy`], [`Session::pick_top`]) or read
    /// as a row ([`Session::last_logits`]), so that the CPU can work meanwhile (a
    /// constraint computes its mask while the GPU runs the step).
    pub fn submit_step(&mut self, token: u32) -> Result<()> {
        if self.take_ahead(token) {
            return Ok(());
        }
        self.feed_with::<u32>(&[token], &|| false, Readback::Nothing)
            .map(drop)
    }

    /// The most likely token after the one the latest one-token step fed, among those
    /// `allowed` allows (a bit per token, bit `i % 32` of word `i / 32`; every token with
    /// `None`): picked on the GPU, as [`Session::step_greedy`] picks. Where it allows
    /// no token whose logit is a number, the pick is token 0.
    pub fn pick_greedy(&mut self, allowed: Option<&[u32]>) -> Result<u32> {
        only_pick(self.pick(Readback::Argmax, allowed)?)
    }

    /// The candidates after the one the latest one-token step fed, among the tokens
    /// `allowed` allows (as [`Session::pick_greedy`]), with their softmax mass at
    /// `temperature`: picked on the GPU, as [`Session::step_top`] picks.
    pub fn pick_top(&mut self, temperature: f32, allowed: Option<&[u32]>) -> Result<TopLogits> {
        self.set_top_temperature(temperature);
        top_logits(&self.pick(Readback::Top, allowed)?)
    }

    /// Runs the pick `readback` names over the last row, limited to `allowed` where
    /// given (every token is allowed again after it), and reads it back.
    fn pick(&mut self, readback: Readback, allowed: Option<&[u32]>) -> Result<Vec<u32>> {
        let (landing, index) = self.submit_pick(readback, allowed)?;
        self.read_back(landing, index)
    }

    /// Submits the pick `readback` names over the last row, limited to `allowed` where
    /// given (every token is allowed again after it): where its result lands, and the
    /// submission.
    fn submit_pick(
        &mut self,
        readback: Readback,
        allowed: Option<&[u32]>,
    ) -> Result<(Landing, wgpu::SubmissionIndex)> {
        let gpu = self.model.gpu.clone();
        let words = self.allowed.size() as usize / 4;
        if let Some(allowed) = allowed {
            if allowed.len() != words {
                return Err(Error::Input(format!(
                    "a mask of {} words for a vocabulary of {} tokens (needs {words})",
                    allowed.len(),
                    self.model.config.vocab_size
                )));
            }
            (gpu.queue).write_buffer(&self.allowed, 0, bytemuck::cast_slice(allowed));
        }
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let landing = self.encode_pick(&mut encoder, readback, 1);
        let index = gpu.queue.submit([encoder.finish()]);
        if allowed.is_some() {
            // The queue runs the write after the pick: every token allowed again.
            let size = wgpu::BufferSize::new(self.allowed.size());
            if let Some(mut every) =
                size.and_then(|size| (gpu.queue).write_buffer_with(&self.allowed, 0, size))
            {
                every.slice(..).fill(0xff);
            }
        }
        Ok((landing, index))
    }

    /// What a submission (`index`) left where `landing` says, once it is done (not
    /// waiting for those submitted after it).
    fn read_back<T: bytemuck::Pod>(
        &self,
        landing: Landing,
        index: wgpu::SubmissionIndex,
    ) -> Result<Vec<T>> {
        let (buffer, bytes) = match landing {
            Landing::Nothing => return Ok(Vec::new()),
            Landing::Staging(bytes) => (&self.staging, bytes),
            Landing::Id(slot) => (&self.ids[slot], 4),
        };
        self.model
            .gpu
            .map_and_read_after(buffer, bytes, Some(index))
    }

    /// The temperature of the mass the next candidates' launch sums.
    fn set_top_temperature(&self, temperature: f32) {
        let params = ops::top_params(self.model.config.vocab_size, temperature);
        self.top.write_params(&self.model.gpu.queue, &params);
    }

    /// The logits of the token the latest one-token step fed, read again.
    pub fn last_logits(&self) -> Result<Vec<f32>> {
        let gpu = &self.model.gpu;
        let bytes = self.model.config.vocab_size as u64 * 4;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.state.logits, 0, &self.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        gpu.map_and_read(&self.staging, bytes)
    }

    /// [`Session::feed_until`], reading back what `readback` says after each batch: the
    /// logits (f32), the last row's argmax (u32) or its candidates' record (u32).
    fn feed_with<T: bytemuck::Pod>(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
        readback: Readback,
    ) -> Result<Vec<T>> {
        self.settle()?;
        self.check_tokens(tokens)?;
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
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let mut n = rest.len().min(self.options.batch);
            if self.position() + n > self.max_context() {
                self.shift(n)?;
            }
            // Batches end on snapshot boundaries.
            let interval = self.options.snapshot_interval;
            n = n.min(interval - self.position() % interval);
            let rows: Vec<T> = self.run_batch(&rest[..n], None, readback)?;
            if !self.options.all_logits {
                logits.clear();
            }
            logits.extend(rows);
            rest = &rest[n..];
        }
        Ok(logits)
    }

    /// One decode step: feeds `token` and returns the logits of the next one (a
    /// [`crate::TokenStream`] steps with sampling, yielding tokens and their text).
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        self.feed(&[token])
    }

    /// Fails on an empty batch or an id outside the vocabulary (`feed` checks its
    /// tokens so before feeding any).
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.model.config.vocab_size;
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to feed (empty prompt)".into()));
        }
        match tokens
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= vocab)
        {
            Some((i, t)) => Err(Error::Input(format!(
                "token id {t} at position {i} is out of range: vocab_size is {vocab}"
            ))),
            None => Ok(()),
        }
    }

    /// Runs one batch and reads its logits back; with `trace`, also copies each tap of
    /// the graph, in order, into it (n_tokens × hidden f32 each).
    fn run_batch<T: bytemuck::Pod>(
        &mut self,
        tokens: &[u32],
        trace: Option<&wgpu::Buffer>,
        readback: Readback,
    ) -> Result<Vec<T>> {
        let batch = Batch {
            tokens: Some(tokens),
            n: tokens.len(),
            pos: self.position(),
        };
        let recorded = self.record(batch, trace, readback)?;
        let index = self.model.gpu.queue.submit([recorded.commands]);
        let values = self.read_back(recorded.landing, index)?;
        self.tokens.extend_from_slice(tokens);
        Ok(values)
    }

    /// Records a batch into a command buffer, not yet submitted: the writes of its token
    /// ids (where the CPU has them) and `Step` uniform, the KV blocks it needs, the
    /// forward graph, the conv snapshot where it ends on a boundary, and the copy of
    /// what `readback` says into the staging buffer.
    fn record(
        &mut self,
        batch: Batch<'_>,
        trace: Option<&wgpu::Buffer>,
        readback: Readback,
    ) -> Result<Recorded> {
        let gpu = &self.model.gpu;
        let (n, pos) = (batch.n as u32, batch.pos);
        let step = StepUniform {
            n_tokens: n,
            pos: pos as u32,
            _pad: [0; 2],
        };
        if let Some(tokens) = batch.tokens {
            gpu.queue
                .write_buffer(&self.state.tokens, 0, bytemuck::cast_slice(tokens));
        }
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
        let end = pos + batch.n;
        self.pages.prepare_write(pos, end, &mut encoder, &context)?;
        self.encode_graph(&mut encoder, n, end as u32, trace);
        let interval = self.options.snapshot_interval;
        if end % interval == 0 {
            let size = self.state.conv_state_bytes(&self.model.config);
            let slot = (end / interval) as u64;
            for conv in self.state.conv_layers() {
                encoder.copy_buffer_to_buffer(conv.state, 0, conv.snapshots, slot * size, size);
            }
        }
        let landing = self.encode_pick(&mut encoder, readback, n);
        Ok(Recorded {
            commands: encoder.finish(),
            landing,
        })
    }

    /// Records what `readback` says after a batch of `n` tokens: the pick over the last
    /// row where it is one, and the copy of what comes back into a readback buffer
    /// (a greedy pick's into the next of `ids`); where it lands.
    fn encode_pick(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        readback: Readback,
        n: u32,
    ) -> Landing {
        let (source, bytes) = match readback {
            Readback::Nothing => return Landing::Nothing,
            Readback::Logits => {
                let rows = if self.options.all_logits {
                    n as usize
                } else {
                    1
                };
                let bytes = rows * self.model.config.vocab_size * 4;
                (&self.state.logits, bytes as u64)
            }
            Readback::Argmax | Readback::Top => {
                let (pick, out, bytes) = match readback {
                    Readback::Argmax => (&self.argmax, &self.state.tokens, 4),
                    _ => (&self.top, &self.top_record, ops::TOP_RECORD_BYTES),
                };
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(pick.label()),
                    timestamp_writes: None,
                });
                pass.set_bind_group(1, &self.step_group, &[]);
                let max_per_dim = self.model.gpu.limits.max_compute_workgroups_per_dimension;
                pick.encode(&mut pass, max_per_dim);
                drop(pass);
                (out, bytes)
            }
        };
        if readback == Readback::Argmax {
            let slot = self.ids_turn;
            self.ids_turn = 1 - slot;
            encoder.copy_buffer_to_buffer(source, 0, &self.ids[slot], 0, bytes);
            return Landing::Id(slot);
        }
        encoder.copy_buffer_to_buffer(source, 0, &self.staging, 0, bytes);
        Landing::Staging(bytes)
    }

    /// Records the forward graph for a batch of `n` tokens, whose last sees `n_keys`
    /// positions, in one compute pass; with `trace`, the pass is split at each tap and
    /// the tap's rows copied out there.
    fn encode_graph(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        n: u32,
        n_keys: u32,
        trace: Option<&wgpu::Buffer>,
    ) {
        let gpu = &self.model.gpu;
        let max_per_dim = gpu.limits.max_compute_workgroups_per_dimension;
        let taps = if trace.is_some() {
            &self.graph.taps[..]
        } else {
            &[]
        };
        let ends = taps.iter().map(|t| t.after).chain([self.graph.steps.len()]);
        // A trace takes the batch kernels even for one token: they write every tap's
        // buffer (a token's projections normalize their input themselves, leaving the
        // norm's output unwritten).
        let kernels_for = if trace.is_some() { n.max(2) } else { n };
        let tap_bytes = (n as usize * self.model.config.hidden_size * 4) as u64;
        let mut start = 0;
        for (i, end) in ends.enumerate() {
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("forward"),
                    timestamp_writes: None,
                });
                pass.set_bind_group(1, &self.step_group, &[]);
                for node in &self.graph.steps[start..end] {
                    for dispatch in node.dispatches(kernels_for, n_keys) {
                        dispatch.encode(&mut pass, n, max_per_dim);
                    }
                }
            }
            start = end;
            if let (Some(out), Some(tap)) = (trace, taps.get(i)) {
                let source = match tap.source {
                    TapSource::Residual => &self.state.x,
                    TapSource::Normed => &self.state.xn,
                };
                encoder.copy_buffer_to_buffer(source, 0, out, i as u64 * tap_bytes, tap_bytes);
            }
        }
    }
}

/// The candidates a sampled step's readback holds.
fn top_logits(record: &[u32]) -> Result<TopLogits> {
    TopLogits::from_record(record)
        .ok_or_else(|| Error::Gpu("the top logits' record overruns itself".into()))
}

/// The one id a greedy step's readback holds.
fn only_pick(picked: Vec<u32>) -> Result<u32> {
    picked
        .first()
        .copied()
        .ok_or_else(|| Error::Gpu("argmax read back nothing".into()))
}

/// What a batch reads back: nothing (it is submitted, not waited for), the logits, or
/// the argmax or the candidates of its last row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readback {
    Nothing,
    Logits,
    Argmax,
    Top,
}

/// A batch to record: `n` tokens from position `pos`, their ids written by the CPU, or
/// (None) left in the token buffer by the argmax of the step before.
#[derive(Clone, Copy)]
struct Batch<'a> {
    tokens: Option<&'a [u32]>,
    n: usize,
    pos: usize,
}

/// A batch's command buffer, and where its readback lands.
struct Recorded {
    commands: wgpu::CommandBuffer,
    landing: Landing,
}

/// Where a batch's readback lands: nowhere, the first bytes of the staging buffer, or
/// one of the greedy picks' buffers.
#[derive(Clone, Copy)]
enum Landing {
    Nothing,
    Staging(u64),
    Id(usize),
}
