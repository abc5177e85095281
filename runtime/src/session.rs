//! A conversation with a model: its own KV cache and conv state, fed tokens in batches.
//! Each batch is one command buffer: write the tokens and the `Step` uniform, record the
//! forward graph, copy the logits out, submit, read back. Nothing is allocated per token.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::{Step, StepUniform};
use crate::model::Model;
use crate::state::State;

#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Tokens the KV cache holds (capped at the model's max_position_embeddings).
    pub max_context: usize,
    /// Most tokens per forward pass; longer prompts are fed in several passes.
    pub batch: usize,
    /// Return logits for every fed token, not only the last.
    pub all_logits: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_context: 4096,
            batch: 128,
            all_logits: false,
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
    batch: usize,
    max_context: usize,
    /// Tokens in the cache.
    pos: usize,
}

impl Session {
    pub fn new(model: Arc<Model>, options: &SessionOptions) -> Result<Session> {
        let c = &model.config;
        let max_context = options.max_context.min(c.max_position_embeddings).max(1);
        let batch = options.batch.clamp(1, max_context);
        let gpu = &model.gpu;
        let state = State::new(gpu, c, batch, max_context, options.all_logits)?;
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
        Ok(Session {
            model,
            state,
            graph,
            step_uniform,
            step_group,
            staging,
            batch,
            max_context,
            pos: 0,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Tokens in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    /// Forgets everything fed so far.
    pub fn reset(&mut self) {
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        self.state.clear(&mut encoder);
        gpu.queue.submit([encoder.finish()]);
        self.pos = 0;
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
        if self.pos + tokens.len() > self.max_context {
            return Err(Error::Input(format!(
                "context full: {} cached + {} new tokens exceed the context of {}",
                self.pos,
                tokens.len(),
                self.max_context
            )));
        }
        let mut logits = Vec::new();
        for chunk in tokens.chunks(self.batch) {
            let rows = self.run_batch(chunk)?;
            if !self.state.all_logits {
                logits.clear();
            }
            logits.extend(rows);
        }
        Ok(logits)
    }

    fn run_batch(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let gpu = &self.model.gpu;
        let n = tokens.len() as u32;
        let step = StepUniform {
            n_tokens: n,
            pos: self.pos as u32,
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
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            pass.set_bind_group(1, &self.step_group, &[]);
            let max_per_dim = gpu.limits.max_compute_workgroups_per_dimension;
            for node in &self.graph {
                node.dispatch(n).encode(&mut pass, n, max_per_dim);
            }
        }
        let rows = if self.state.all_logits { n as usize } else { 1 };
        let bytes = (rows * self.model.config.vocab_size * 4) as u64;
        encoder.copy_buffer_to_buffer(&self.state.logits, 0, &self.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let logits = gpu.map_and_read(&self.staging, bytes)?;
        self.pos += tokens.len();
        Ok(logits)
    }
}
