//! An LFM2 model, top to bottom: config → weights (uploaded at file precision) →
//! the forward graph of a session (a `match` per layer kind) → logits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::budget::weight_file_bytes;
use crate::config::{LayerKind, ModelConfig, MoeConfig};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufWeights};
use crate::gpu::{Gpu, Step};
use crate::ops::{
    self, ExpertLinear, ExpertMatrix, GpuTensor, Linear, LinearOutput, MoeBuffers, ShortConv,
};
use crate::safetensors::Checkpoint;
use crate::state::{LayerState, State};
use crate::tokenizer::Tokenizer;
use crate::vram::{Reservation, VramBudget};
use crate::weights::WeightSource;

/// The operator of one decoder layer, with its weights.
enum Operator {
    Conv(ConvWeights),
    Attention(AttentionWeights),
}

/// LIV gated short convolution.
struct ConvWeights {
    in_proj: GpuTensor,               // (3 · hidden, hidden): conv.in_proj.weight
    in_proj_bias: Option<GpuTensor>,  // (3 · hidden)
    conv: GpuTensor,                  // (hidden, 1, L): conv.conv.weight
    conv_bias: Option<GpuTensor>,     // (hidden)
    out_proj: GpuTensor,              // (hidden, hidden): conv.out_proj.weight
    out_proj_bias: Option<GpuTensor>, // (hidden)
}

/// Grouped-query attention.
struct AttentionWeights {
    q_proj: GpuTensor,   // (heads · d, hidden): self_attn.q_proj.weight
    k_proj: GpuTensor,   // (kv_heads · d, hidden)
    v_proj: GpuTensor,   // (kv_heads · d, hidden)
    out_proj: GpuTensor, // (hidden, heads · d): self_attn.out_proj.weight
    q_norm: GpuTensor,   // (d): self_attn.q_layernorm.weight
    k_norm: GpuTensor,   // (d): self_attn.k_layernorm.weight
}

/// The feed-forward of one decoder layer.
// One per layer, built once at load: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum FeedForward {
    /// SwiGLU: w2(silu(w1 x) · w3 x).
    Dense {
        w1: GpuTensor, // (ff, hidden): feed_forward.w1.weight, the gate
        w3: GpuTensor, // (ff, hidden): feed_forward.w3.weight, the up projection
        w2: GpuTensor, // (hidden, ff): feed_forward.w2.weight, the down projection
    },
    /// Sparse MoE: a sigmoid router picks top_k SwiGLU experts per token.
    Moe(MoeWeights),
}

struct MoeWeights {
    router: GpuTensor,              // (experts, hidden): feed_forward.gate.weight
    expert_bias: Option<GpuTensor>, // (experts) f32: feed_forward.expert_bias
    gate: ExpertMatrix,             // (experts, expert_ff, hidden): experts' w1
    up: ExpertMatrix,               // (experts, expert_ff, hidden): experts' w3
    down: ExpertMatrix,             // (experts, hidden, expert_ff): experts' w2
}

struct Layer {
    operator_norm: GpuTensor, // (hidden)
    operator: Operator,
    ffn_norm: GpuTensor, // (hidden)
    ffn: FeedForward,
}

pub struct Model {
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub gpu: Arc<Gpu>,
    /// The GGUF file or HF directory it was loaded from.
    pub path: PathBuf,
    embed_tokens: GpuTensor,    // (vocab, hidden): model.embed_tokens.weight
    final_norm: GpuTensor,      // (hidden): model.embedding_norm.weight, after the last layer
    lm_head: Option<GpuTensor>, // (vocab, hidden) when the embedding is not tied
    layers: Vec<Layer>,
    /// Bound where a projection has no bias.
    no_bias: wgpu::Buffer,
    /// The weights' bytes in the VRAM budget the model was loaded within.
    vram: Option<Reservation>,
}

/// A model's forward pass as recorded for a session.
pub(crate) struct Graph {
    pub steps: Vec<Step>,
    /// Named intermediates, in graph order (`Session::trace` reads them).
    pub taps: Vec<Tap>,
}

/// An intermediate of the forward pass, (n_tokens, hidden), named after the HF module
/// that outputs it, readable once the first `after` steps have run.
pub(crate) struct Tap {
    pub after: usize,
    pub name: String,
    pub source: TapSource,
}

/// Which session buffer holds a tap's values.
#[derive(Clone, Copy)]
pub(crate) enum TapSource {
    /// The residual stream (`State::x`).
    Residual,
    /// A norm's output (`State::xn`).
    Normed,
}

/// Uploads checkpoint tensors after checking their shapes against the config.
struct Loader<'a> {
    gpu: &'a Gpu,
    source: &'a dyn WeightSource,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let view = self.source.get(name)?;
        view.expect_shape(shape)?;
        GpuTensor::upload(self.gpu, name, view.dtype, &view.shape, &[view.bytes])
    }

    fn bias(&self, present: bool, name: &str, len: usize) -> Result<Option<GpuTensor>> {
        present.then(|| self.tensor(name, &[len])).transpose()
    }
}

impl Loader<'_> {
    fn conv(&self, p: &str, c: &ModelConfig) -> Result<ConvWeights> {
        let h = c.hidden_size;
        let bias = |name: &str, len| self.bias(c.conv_bias, &format!("{p}.conv.{name}.bias"), len);
        Ok(ConvWeights {
            in_proj: self.tensor(&format!("{p}.conv.in_proj.weight"), &[3 * h, h])?,
            in_proj_bias: bias("in_proj", 3 * h)?,
            conv: self.tensor(&format!("{p}.conv.conv.weight"), &[h, 1, c.conv_l_cache])?,
            conv_bias: bias("conv", h)?,
            out_proj: self.tensor(&format!("{p}.conv.out_proj.weight"), &[h, h])?,
            out_proj_bias: bias("out_proj", h)?,
        })
    }

    fn attention(&self, p: &str, c: &ModelConfig) -> Result<AttentionWeights> {
        let (h, d) = (c.hidden_size, c.head_dim);
        let tensor = |name: &str, shape: &[usize]| {
            self.tensor(&format!("{p}.self_attn.{name}.weight"), shape)
        };
        Ok(AttentionWeights {
            q_proj: tensor("q_proj", &[c.n_heads * d, h])?,
            k_proj: tensor("k_proj", &[c.kv_dim(), h])?,
            v_proj: tensor("v_proj", &[c.kv_dim(), h])?,
            out_proj: tensor("out_proj", &[h, c.n_heads * d])?,
            q_norm: tensor("q_layernorm", &[d])?,
            k_norm: tensor("k_layernorm", &[d])?,
        })
    }

    fn feed_forward(&self, p: &str, c: &ModelConfig, layer: usize) -> Result<FeedForward> {
        let (h, ff) = (c.hidden_size, c.ff_size);
        let moe = match &c.moe {
            Some(moe) if c.is_moe_layer(layer) => moe,
            _ => {
                return Ok(FeedForward::Dense {
                    w1: self.tensor(&format!("{p}.feed_forward.w1.weight"), &[ff, h])?,
                    w3: self.tensor(&format!("{p}.feed_forward.w3.weight"), &[ff, h])?,
                    w2: self.tensor(&format!("{p}.feed_forward.w2.weight"), &[h, ff])?,
                })
            }
        };
        let (e, i) = (moe.n_experts, moe.expert_ff);
        let matrix = |tensor: GpuTensor, rows, row_offset| ExpertMatrix {
            tensor,
            rows,
            row_offset,
        };
        let fused = format!("{p}.feed_forward.experts.gate_up_proj");
        let (gate, up, down) = if self.source.contains(&fused) {
            // transformers' in-memory layout: gate_up_proj (E, 2I, H), gate rows first.
            let gate_up = self.tensor(&fused, &[e, 2 * i, h])?;
            let down = self.tensor(&format!("{p}.feed_forward.experts.down_proj"), &[e, h, i])?;
            (
                matrix(gate_up.clone(), i, 0),
                matrix(gate_up, i, i),
                matrix(down, h, 0),
            )
        } else if self
            .source
            .contains(&format!("{p}.feed_forward.experts.w1"))
        {
            // GGUF: each expert matrix already stacked, (E, rows, cols).
            let stacked = |which: &str, shape: [usize; 2]| {
                self.tensor(
                    &format!("{p}.feed_forward.experts.{which}"),
                    &[e, shape[0], shape[1]],
                )
            };
            (
                matrix(stacked("w1", [i, h])?, i, 0),
                matrix(stacked("w3", [i, h])?, i, 0),
                matrix(stacked("w2", [h, i])?, h, 0),
            )
        } else {
            // As published: experts.K.w1 / w3 / w2, stacked here into one tensor each.
            (
                matrix(self.experts(p, "w1", moe, [i, h])?, i, 0),
                matrix(self.experts(p, "w3", moe, [i, h])?, i, 0),
                matrix(self.experts(p, "w2", moe, [h, i])?, h, 0),
            )
        };
        // After the experts, so that a wrong expert count is reported on them.
        let expert_bias = if moe.use_expert_bias {
            Some(self.tensor(&format!("{p}.feed_forward.expert_bias"), &[e])?)
        } else {
            None
        };
        Ok(FeedForward::Moe(MoeWeights {
            router: self.tensor(&format!("{p}.feed_forward.gate.weight"), &[e, h])?,
            expert_bias,
            gate,
            up,
            down,
        }))
    }

    /// `experts.K.<which>.weight` for every expert, stacked into (experts, rows, cols).
    fn experts(
        &self,
        p: &str,
        which: &str,
        moe: &MoeConfig,
        shape: [usize; 2],
    ) -> Result<GpuTensor> {
        let extra = format!("{p}.feed_forward.experts.{}.{which}.weight", moe.n_experts);
        if self.source.contains(&extra) {
            return Err(Error::tensor(
                self.source.path(),
                extra,
                format!(
                    "exists, but config.json says num_experts is {}",
                    moe.n_experts
                ),
            ));
        }
        let views = (0..moe.n_experts)
            .map(|k| {
                let view = self
                    .source
                    .get(&format!("{p}.feed_forward.experts.{k}.{which}.weight"))?;
                view.expect_shape(&shape)?;
                Ok(view)
            })
            .collect::<Result<Vec<_>>>()?;
        let dtype = views[0].dtype;
        if let Some(odd) = views.iter().find(|v| v.dtype != dtype) {
            return Err(Error::tensor(
                odd.path,
                odd.name,
                format!("is {} but expert 0 is {dtype}", odd.dtype),
            ));
        }
        let name = format!("{p}.feed_forward.experts.{which}");
        let parts: Vec<&[u8]> = views.iter().map(|v| v.bytes).collect();
        GpuTensor::upload(
            self.gpu,
            &name,
            dtype,
            &[moe.n_experts, shape[0], shape[1]],
            &parts,
        )
    }
}

impl Model {
    /// Loads a model onto `gpu`: a GGUF file, or an HF directory (config.json,
    /// safetensors, tokenizer.json).
    pub fn load(path: &Path, gpu: Arc<Gpu>) -> Result<Model> {
        if path.is_file() {
            let file = GgufFile::open(path)?;
            let config = crate::gguf::model_config(&file)?;
            let tokenizer = Tokenizer::from_gguf(&file)?;
            return Self::from_source(path, config, tokenizer, &GgufWeights::new(file), gpu);
        }
        if !path.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such model file or directory",
                ),
            ));
        }
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let tokenizer = Tokenizer::from_dir(path)?;
        let checkpoint = Checkpoint::open(path)?;
        Self::from_source(path, config, tokenizer, &checkpoint, gpu)
    }

    /// As [`Model::load`], within `budget`: the weight files are checked against what
    /// the budget has left before anything is uploaded, and the weights stay reserved
    /// in it while the model lives. Its sessions and KV pools take their bytes from it
    /// too, a session's context being what the budget holds.
    pub fn load_within(path: &Path, gpu: Arc<Gpu>, budget: &Arc<VramBudget>) -> Result<Model> {
        let what = format!("the weights of {}", path.display());
        let planned = budget.reserve(&what, weight_file_bytes(path)?)?;
        let mut model = Self::load(path, gpu)?;
        drop(planned);
        model.vram = Some(budget.reserve(&what, model.vram_bytes())?);
        Ok(model)
    }

    /// The budget the model was loaded within, if any.
    pub fn vram_budget(&self) -> Option<&Arc<VramBudget>> {
        self.vram.as_ref().map(Reservation::budget)
    }

    /// Takes `bytes` for `what` from the model's budget, if it has one.
    pub(crate) fn reserve(&self, what: &str, bytes: u64) -> Result<Option<Reservation>> {
        self.vram_budget()
            .map(|budget| budget.reserve(what, bytes))
            .transpose()
    }

    fn from_source(
        path: &Path,
        config: ModelConfig,
        tokenizer: Tokenizer,
        source: &dyn WeightSource,
        gpu: Arc<Gpu>,
    ) -> Result<Model> {
        let loader = Loader { gpu: &gpu, source };
        let c = &config;
        let h = c.hidden_size;
        log::info!(
            "loading {} ({} layers, {})",
            path.display(),
            c.n_layers(),
            c.layer_pattern()
        );

        let mut layers = Vec::with_capacity(c.n_layers());
        for (i, kind) in c.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let operator = match kind {
                LayerKind::Conv => Operator::Conv(loader.conv(&p, c)?),
                LayerKind::Attention => Operator::Attention(loader.attention(&p, c)?),
            };
            layers.push(Layer {
                operator_norm: loader.tensor(&format!("{p}.operator_norm.weight"), &[h])?,
                operator,
                ffn_norm: loader.tensor(&format!("{p}.ffn_norm.weight"), &[h])?,
                ffn: loader.feed_forward(&p, c, i)?,
            });
        }
        let vocab_shape = [c.vocab_size, h];
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(loader.tensor("lm_head.weight", &vocab_shape)?)
        };
        let model = Model {
            embed_tokens: loader.tensor("model.embed_tokens.weight", &vocab_shape)?,
            final_norm: loader.tensor("model.embedding_norm.weight", &[h])?,
            lm_head,
            layers,
            no_bias: gpu.zeros("no_bias", 1)?,
            vram: None,
            tokenizer,
            config,
            path: path.to_path_buf(),
            gpu,
        };
        model.gpu.check()?;
        log::info!(
            "weights: {} parameters, {} bytes in VRAM",
            model.parameter_count(),
            model.weight_bytes()
        );
        Ok(model)
    }

    /// Every weight tensor once (the fused gate_up_proj backs two expert matrices).
    fn tensors(&self) -> Vec<&GpuTensor> {
        let mut all = vec![&self.embed_tokens, &self.final_norm];
        all.extend(&self.lm_head);
        for l in &self.layers {
            all.extend([&l.operator_norm, &l.ffn_norm]);
            match &l.operator {
                Operator::Conv(w) => {
                    all.extend([&w.in_proj, &w.conv, &w.out_proj]);
                    all.extend(
                        [&w.in_proj_bias, &w.conv_bias, &w.out_proj_bias]
                            .into_iter()
                            .flatten(),
                    );
                }
                Operator::Attention(w) => all.extend([
                    &w.q_proj,
                    &w.k_proj,
                    &w.v_proj,
                    &w.out_proj,
                    &w.q_norm,
                    &w.k_norm,
                ]),
            }
            match &l.ffn {
                FeedForward::Dense { w1, w3, w2 } => all.extend([w1, w3, w2]),
                FeedForward::Moe(w) => {
                    all.extend([&w.router, &w.gate.tensor, &w.down.tensor]);
                    all.extend(&w.expert_bias);
                    if w.up.tensor.name != w.gate.tensor.name {
                        all.push(&w.up.tensor);
                    }
                }
            }
        }
        all
    }

    pub fn parameter_count(&self) -> u64 {
        self.tensors().iter().map(|t| t.elements()).sum()
    }

    /// Parameters one token goes through: MoE layers count only top_k of their experts.
    pub fn active_parameter_count(&self) -> u64 {
        self.parameter_count() - self.idle_experts(|m| (m.rows * m.tensor.shape[2]) as u64)
    }

    /// Bytes of weights one decoded token reads, the numerator of decode's bandwidth:
    /// every tensor once, except the experts a MoE layer does not route to and, when
    /// an lm_head is separate, the embedding rows not gathered (tied, the embedding is
    /// read whole as the head).
    pub fn decode_weight_bytes(&self) -> u64 {
        let expert_bytes = |m: &ExpertMatrix| {
            let dtype = m.tensor.dtype;
            dtype.bytes_for(m.rows * m.tensor.shape[2]) as u64
        };
        let unread_embedding = match self.lm_head {
            Some(_) => {
                self.embed_tokens.bytes() / self.config.vocab_size as u64
                    * (self.config.vocab_size as u64 - 1)
            }
            None => 0,
        };
        self.weight_bytes() - self.idle_experts(expert_bytes) - unread_embedding
    }

    /// `size` of one expert's matrices, summed over the experts a token does not use.
    fn idle_experts(&self, size: impl Fn(&ExpertMatrix) -> u64) -> u64 {
        let Some(moe) = &self.config.moe else {
            return 0;
        };
        let idle_experts = (moe.n_experts - moe.top_k) as u64;
        self.layers
            .iter()
            .filter_map(|l| match &l.ffn {
                FeedForward::Moe(moe) => Some(
                    [&moe.gate, &moe.up, &moe.down]
                        .into_iter()
                        .map(&size)
                        .sum::<u64>()
                        * idle_experts,
                ),
                FeedForward::Dense { .. } => None,
            })
            .sum()
    }

    /// Tensors and bytes per element type, most bytes first (a Q4_K_M file mixes several).
    pub fn bytes_by_dtype(&self) -> Vec<(crate::dtype::DType, usize, u64)> {
        let mut by_type: Vec<(crate::dtype::DType, usize, u64)> = Vec::new();
        for t in self.tensors() {
            match by_type.iter_mut().find(|(d, _, _)| *d == t.dtype) {
                Some((_, count, bytes)) => {
                    *count += 1;
                    *bytes += t.bytes();
                }
                None => by_type.push((t.dtype, 1, t.bytes())),
            }
        }
        by_type.sort_by_key(|&(_, _, bytes)| std::cmp::Reverse(bytes));
        by_type
    }

    /// Bytes of weights resident in VRAM.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors().iter().map(|t| t.bytes()).sum()
    }

    /// Bytes the model's buffers take in VRAM: the weights, each buffer padded to 16
    /// bytes, and the zero bias.
    pub fn vram_bytes(&self) -> u64 {
        let buffers = self.tensors().into_iter().flat_map(|t| &t.buffers);
        buffers.map(wgpu::Buffer::size).sum::<u64>() + self.no_bias.size()
    }

    /// Buffers holding the weights: one per tensor, more where a tensor exceeds the
    /// device's `max_buffer_size`.
    pub fn weight_buffer_count(&self) -> usize {
        self.tensors().iter().map(|t| t.buffers.len()).sum()
    }

    /// The final norm's weights, a cheap witness of which weights these are (a
    /// fine-tune changes them): session files check it.
    pub(crate) fn final_norm(&self) -> &GpuTensor {
        &self.final_norm
    }

    /// The forward pass over a batch, recorded once against a session's buffers, with
    /// the points where its named intermediates can be read.
    pub(crate) fn forward_graph(&self, s: &State) -> Result<Graph> {
        let gpu = &*self.gpu;
        let eps = self.config.norm_eps;
        let mut steps = vec![ops::embedding(gpu, &s.tokens, &self.embed_tokens, &s.x)?];
        let mut taps = Vec::new();
        let mut tap = |steps: &Vec<Step>, name: String, source| {
            taps.push(Tap {
                after: steps.len(),
                name,
                source,
            })
        };
        tap(&steps, "model.embed_tokens".into(), TapSource::Residual);
        for (i, (layer, state)) in self.layers.iter().zip(&s.layers).enumerate() {
            // h = x + operator(operator_norm(x))
            steps.push(Step::Always(ops::rmsnorm(
                gpu,
                &s.x,
                &layer.operator_norm,
                eps,
                &s.xn,
            )?));
            self.operator_steps(i, &layer.operator, state, s, &mut steps)?;
            tap(
                &steps,
                format!("model.layers.{i}.operator"),
                TapSource::Residual,
            );
            // out = h + ffn(ffn_norm(h))
            steps.push(Step::Always(ops::rmsnorm(
                gpu,
                &s.x,
                &layer.ffn_norm,
                eps,
                &s.xn,
            )?));
            self.ffn_steps(i, &layer.ffn, s, &mut steps)?;
            tap(&steps, format!("model.layers.{i}"), TapSource::Residual);
        }
        // logits = final_norm(x) · embed_tokensᵀ (or lm_head)
        steps.push(Step::Always(ops::rmsnorm(
            gpu,
            &s.x,
            &self.final_norm,
            eps,
            &s.xn,
        )?));
        tap(&steps, "model.embedding_norm".into(), TapSource::Normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let output = if s.shape.all_logits {
            LinearOutput::Rows
        } else {
            LinearOutput::LastRow
        };
        steps.push(self.linear(head, None, &s.xn, &s.logits, output)?);
        Ok(Graph { steps, taps })
    }

    fn linear(
        &self,
        weight: &GpuTensor,
        bias: Option<&GpuTensor>,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        output: LinearOutput,
    ) -> Result<Step> {
        ops::linear(
            &self.gpu,
            Linear {
                weight,
                bias,
                x,
                out,
                output,
            },
            &self.no_bias,
        )
    }

    /// Short conv or attention, its result added into the residual stream `s.x`.
    fn operator_steps(
        &self,
        i: usize,
        operator: &Operator,
        state: &LayerState,
        s: &State,
        steps: &mut Vec<Step>,
    ) -> Result<()> {
        let (gpu, c, none) = (&*self.gpu, &self.config, &self.no_bias);
        match (operator, state) {
            (Operator::Conv(w), LayerState::Conv { conv_state, .. }) => {
                // in_proj → B, C, x; C · conv(B · x); out_proj
                steps.push(self.linear(
                    &w.in_proj,
                    w.in_proj_bias.as_ref(),
                    &s.xn,
                    &s.bcx,
                    LinearOutput::Rows,
                )?);
                let op = ShortConv {
                    weight: &w.conv,
                    bias: w.conv_bias.as_ref(),
                    bcx: &s.bcx,
                    state: conv_state,
                    out: &s.mixed,
                };
                steps.push(Step::Always(ops::shortconv(gpu, &op, none)?));
                steps.push(Step::Always(ops::shortconv_state(gpu, &op, none)?));
                steps.push(self.linear(
                    &w.out_proj,
                    w.out_proj_bias.as_ref(),
                    &s.mixed,
                    &s.x,
                    LinearOutput::Accumulate,
                )?);
            }
            (Operator::Attention(w), LayerState::Attention { k_cache, v_cache }) => {
                // q, k, v; per-head norm + RoPE; k and v join the cache (f32 or f16).
                steps.push(self.linear(&w.q_proj, None, &s.xn, &s.q, LinearOutput::Rows)?);
                steps.push(self.linear(&w.k_proj, None, &s.xn, &s.k, LinearOutput::Rows)?);
                steps.push(self.linear(&w.v_proj, None, &s.xn, &s.v, LinearOutput::Rows)?);
                let rope = |norm, x, heads| {
                    ops::rope(gpu, norm, &s.rope_table, x, heads, c.norm_eps).map(Step::Always)
                };
                steps.push(rope(&w.q_norm, &s.q, c.n_heads)?);
                steps.push(rope(&w.k_norm, &s.k, c.n_kv_heads)?);
                let label = format!("model.layers.{i}.self_attn");
                let cache = s.shape.kv_dtype.dtype();
                let kv = [&s.k, &s.v, &s.pages, k_cache, v_cache];
                steps.push(Step::Always(ops::kv_store(gpu, &label, c, cache, kv)?));
                let attend = [&s.q, &s.pages, k_cache, v_cache, &s.mixed];
                steps.push(Step::Always(ops::attention(gpu, &label, c, cache, attend)?));
                steps.push(self.linear(
                    &w.out_proj,
                    None,
                    &s.mixed,
                    &s.x,
                    LinearOutput::Accumulate,
                )?);
            }
            _ => {
                return Err(Error::Gpu(format!(
                    "layer {i}: session state does not match the layer kind"
                )))
            }
        }
        Ok(())
    }

    /// Dense SwiGLU or sparse MoE, its result added into the residual stream `s.x`.
    fn ffn_steps(
        &self,
        i: usize,
        ffn: &FeedForward,
        s: &State,
        steps: &mut Vec<Step>,
    ) -> Result<()> {
        let (gpu, c, none) = (&*self.gpu, &self.config, &self.no_bias);
        let label = format!("model.layers.{i}.feed_forward");
        match (ffn, &c.moe, &s.moe) {
            (FeedForward::Dense { w1, w3, w2 }, _, _) => {
                steps.push(self.linear(w1, None, &s.xn, &s.gate, LinearOutput::Rows)?);
                steps.push(self.linear(w3, None, &s.xn, &s.up, LinearOutput::Rows)?);
                steps.push(Step::Always(ops::swiglu(
                    gpu, &label, &s.gate, &s.up, c.ff_size,
                )?));
                steps.push(self.linear(w2, None, &s.up, &s.x, LinearOutput::Accumulate)?);
            }
            (FeedForward::Moe(w), Some(moe), Some(m)) => {
                steps.push(self.linear(
                    &w.router,
                    None,
                    &s.xn,
                    &m.router_logits,
                    LinearOutput::Rows,
                )?);
                let buffers = MoeBuffers {
                    label: &label,
                    config: moe,
                    hidden: c.hidden_size,
                    router_logits: &m.router_logits,
                    expert_bias: w.expert_bias.as_ref(),
                    expert_out: &m.expert_out,
                    routes: &m.routes,
                    slots: &m.slots,
                    x: &s.x,
                };
                steps.push(Step::Always(ops::moe_route(gpu, &buffers, none)?));
                steps.push(Step::Always(ops::moe_group(gpu, &buffers, none)?));
                let expert = |weight, x, x_per_slot, out| {
                    let op = ExpertLinear {
                        weight,
                        x,
                        x_per_slot,
                        out,
                        top_k: moe.top_k,
                        routes: &m.routes,
                        slots: &m.slots,
                    };
                    ops::expert_linear(gpu, op, none)
                };
                steps.push(expert(&w.gate, &s.xn, false, &m.expert_gate)?);
                steps.push(expert(&w.up, &s.xn, false, &m.expert_up)?);
                let slot_width = moe.top_k * moe.expert_ff;
                steps.push(Step::Always(ops::swiglu(
                    gpu,
                    &label,
                    &m.expert_gate,
                    &m.expert_up,
                    slot_width,
                )?));
                steps.push(expert(&w.down, &m.expert_up, true, &m.expert_out)?);
                steps.push(Step::Always(ops::moe_combine(gpu, &buffers, none)?));
            }
            _ => return Err(Error::Gpu(format!("layer {i}: session has no MoE buffers"))),
        }
        Ok(())
    }
}
