//! A model, top to bottom: config → weights (uploaded at file precision) → the forward
//! graph of a session (a `match` per layer kind) → logits. One graph serves every
//! architecture: LFM2's conv and attention layers, LFM2-MoE's sparse feed-forward, and
//! the all-attention Qwen3 and Ministral 3, whose attention differs only in its
//! weights (q/k norms, biases) and its RoPE. Opening a model
//! by name is `open.rs`; loading the weights from a checkpoint `load.rs`; counting
//! them (parameters, bytes) `size.rs`.

mod load;
mod open;
mod size;

pub use open::{config_of, LoadOptions};

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::dtype::KvDtype;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Step};
use crate::kv_pool::KvPool;
use crate::ops::{
    self, ExpertLinear, ExpertMatrix, ExpertOutput, GateUp, GpuTensor, InputNorm, Linear,
    LinearOutput, MoeBuffers, Rope, ShortConv,
};
use crate::state::{LayerState, State};
use crate::tokenizer::Tokenizer;
use crate::vram::{Reservation, VramBudget};

/// The operator of one decoder layer, with its weights.
// One per layer, built once at load: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
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
    qkv: QkvWeights,
    /// (qkv_dim): q_proj's, k_proj's and v_proj's biases where the config has
    /// attention_bias, one tensor whichever way the weights are held.
    qkv_bias: Option<GpuTensor>,
    out_proj: GpuTensor,         // (hidden, heads · d): self_attn.out_proj.weight
    out_bias: Option<GpuTensor>, // (hidden)
    q_norm: Option<GpuTensor>,   // (d): self_attn.q_layernorm.weight (not Ministral 3's)
    k_norm: Option<GpuTensor>,   // (d): self_attn.k_layernorm.weight
}

/// The q, k and v projections, which write a token's q, k and v side by side into one
/// row of `State::qkv` (qkv_dim = (heads + 2 · kv_heads) · d wide).
enum QkvWeights {
    /// (qkv_dim, hidden): q_proj's rows, then k_proj's, then v_proj's, so that a token
    /// (or a batch) computes all three in one launch.
    Joined(GpuTensor),
    /// Where their dtypes differ, or together they exceed a binding: each writes its
    /// columns of the rows.
    Apart {
        q_proj: GpuTensor, // (heads · d, hidden): self_attn.q_proj.weight
        k_proj: GpuTensor, // (kv_heads · d, hidden)
        v_proj: GpuTensor, // (kv_heads · d, hidden)
    },
}

/// The feed-forward of one decoder layer.
// One per layer, built once at load: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum FeedForward {
    /// SwiGLU: w2(silu(w1 x) · w3 x).
    Dense {
        gate_up: GateUpWeights,
        w2: GpuTensor, // (hidden, ff): feed_forward.w2.weight, the down projection
    },
    /// Sparse MoE: a sigmoid router picks top_k SwiGLU experts per token.
    Moe(MoeWeights),
}

/// A dense SwiGLU's gate (w1) and up (w3) projections.
enum GateUpWeights {
    /// (2 · ff, hidden): w1's rows then w3's, so that a token computes both in one launch.
    Joined(GpuTensor),
    /// Where their dtypes differ, or together they exceed a binding.
    Apart {
        w1: GpuTensor, // (ff, hidden): feed_forward.w1.weight, the gate
        w3: GpuTensor, // (ff, hidden): feed_forward.w3.weight, the up projection
    },
}

struct MoeWeights {
    router: GpuTensor,              // (experts, hidden): feed_forward.gate.weight
    expert_bias: Option<GpuTensor>, // (experts) f32: feed_forward.expert_bias
    gate: ExpertMatrix,             // (experts, expert_ff, hidden): experts' w1
    up: ExpertMatrix,               // (experts, expert_ff, hidden): experts' w3
    down: ExpertMatrix,             // (experts, hidden, expert_ff): experts' w2
}

impl MoeWeights {
    /// Whether gate and up are one stack, each expert's gate rows followed by its up
    /// rows (the loader joins them where their dtypes agree): a token's gate and up
    /// projections then take one launch.
    fn paired(&self) -> bool {
        self.gate.tensor.name == self.up.tensor.name
            && self.gate.row_offset == 0
            && self.up.row_offset == self.gate.rows
    }
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

impl Model {
    /// The budget the model was loaded within, if any.
    pub fn vram_budget(&self) -> Option<&Arc<VramBudget>> {
        self.vram.as_ref().map(Reservation::budget)
    }

    /// A KV pool of `blocks` blocks that sessions of this model can share
    /// ([`crate::Session::new_in`]), within the model's budget.
    pub fn kv_pool(&self, dtype: KvDtype, blocks: usize) -> Result<Arc<KvPool>> {
        KvPool::new(&self.gpu, &self.config, self.vram_budget(), dtype, blocks)
    }

    /// Takes `bytes` for `what` from the model's budget, if it has one.
    pub(crate) fn reserve(&self, what: &str, bytes: u64) -> Result<Option<Reservation>> {
        self.vram_budget()
            .map(|budget| budget.reserve(what, bytes))
            .transpose()
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
            let norm = self.input_norm(&layer.operator_norm, s, &mut steps)?;
            self.operator_steps(i, &layer.operator, state, s, norm, &mut steps)?;
            tap(
                &steps,
                format!("model.layers.{i}.operator"),
                TapSource::Residual,
            );
            // out = h + ffn(ffn_norm(h))
            let norm = self.input_norm(&layer.ffn_norm, s, &mut steps)?;
            self.ffn_steps(i, &layer.ffn, s, norm, &mut steps)?;
            tap(&steps, format!("model.layers.{i}"), TapSource::Residual);
        }
        // logits = final_norm(x) · embed_tokensᵀ (or lm_head), the norm applied by the
        // head's matvec itself where it can.
        let norm = self.input_norm(&self.final_norm, s, &mut steps)?;
        tap(&steps, "model.embedding_norm".into(), TapSource::Normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let output = if s.shape.all_logits {
            LinearOutput::Rows
        } else {
            LinearOutput::LastRow
        };
        steps.push(self.linear(head, None, &s.xn, &s.logits, output, norm)?);
        Ok(Graph { steps, taps })
    }

    /// The RMSNorm of the residual stream before a layer's operator or feed-forward.
    /// A batch launches it into `s.xn`; a single token's projections apply it
    /// themselves as they read `s.x`, where the width allows, so that it takes no launch.
    fn input_norm<'a>(
        &self,
        weight: &'a GpuTensor,
        s: &'a State,
        steps: &mut Vec<Step>,
    ) -> Result<Option<InputNorm<'a>>> {
        let eps = self.config.norm_eps;
        let launch = ops::rmsnorm(&self.gpu, &s.x, weight, eps, &s.xn)?;
        if !InputNorm::fits(self.config.hidden_size) {
            steps.push(Step::Always(launch));
            return Ok(None);
        }
        steps.push(Step::Batch(launch));
        Ok(Some(InputNorm {
            weight,
            eps,
            residual: &s.x,
        }))
    }

    fn linear(
        &self,
        weight: &GpuTensor,
        bias: Option<&GpuTensor>,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        output: LinearOutput,
        norm: Option<InputNorm>,
    ) -> Result<Step> {
        ops::linear(
            &self.gpu,
            Linear {
                weight,
                bias,
                x,
                out,
                output,
                gate: None,
                norm,
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
        norm: Option<InputNorm>,
        steps: &mut Vec<Step>,
    ) -> Result<()> {
        let (gpu, c, none) = (&*self.gpu, &self.config, &self.no_bias);
        match (operator, state) {
            (
                Operator::Conv(w),
                LayerState::Conv {
                    conv_state,
                    previous,
                    ..
                },
            ) => {
                // in_proj → B, C, x; C · conv(B · x); out_proj
                let in_proj = self.linear(
                    &w.in_proj,
                    w.in_proj_bias.as_ref(),
                    &s.xn,
                    &s.bcx,
                    LinearOutput::Rows,
                    norm,
                )?;
                let op = ShortConv {
                    weight: &w.conv,
                    bias: w.conv_bias.as_ref(),
                    bcx: &s.bcx,
                    state: conv_state,
                    previous,
                    out: &s.mixed,
                };
                let bias = w.in_proj_bias.as_ref();
                let fused = ops::conv_in_proj(gpu, &op, &w.in_proj, bias, &s.xn, norm, none)?;
                match (fused, in_proj) {
                    // A token's in_proj and conv are one launch, which moves the state.
                    (Some(one), Step::BySize { many, .. }) => {
                        steps.push(Step::BySize { one, many });
                        steps.push(Step::Batch(ops::shortconv(gpu, &op, none)?));
                    }
                    // Else a token's conv moves its state in the same launch.
                    (_, in_proj) => {
                        steps.push(in_proj);
                        steps.push(Step::BySize {
                            one: ops::shortconv_token(gpu, &op, none)?,
                            many: ops::shortconv(gpu, &op, none)?,
                        });
                    }
                }
                steps.push(Step::Batch(ops::shortconv_state(gpu, &op, none)?));
                steps.push(self.linear(
                    &w.out_proj,
                    w.out_proj_bias.as_ref(),
                    &s.mixed,
                    &s.x,
                    LinearOutput::Accumulate,
                    None,
                )?);
            }
            (Operator::Attention(w), LayerState::Attention { k_cache, v_cache }) => {
                // q, k, v side by side; per-head norm (where the model has one) + RoPE,
                // q then scaled by position (where it has an attention temperature), k
                // and v joining the cache (f32 or f16) in the same launch.
                let bias = w.qkv_bias.as_ref();
                match &w.qkv {
                    QkvWeights::Joined(weight) => {
                        let rows = LinearOutput::Rows;
                        steps.push(self.linear(weight, bias, &s.xn, &s.qkv, rows, norm)?);
                    }
                    QkvWeights::Apart {
                        q_proj,
                        k_proj,
                        v_proj,
                    } => {
                        let (q_dim, kv_dim, width) = (c.q_dim(), c.kv_dim(), c.qkv_dim());
                        for (weight, first) in
                            [(q_proj, 0), (k_proj, q_dim), (v_proj, q_dim + kv_dim)]
                        {
                            let columns = LinearOutput::Columns { first, width };
                            steps.push(self.linear(weight, bias, &s.xn, &s.qkv, columns, norm)?);
                        }
                    }
                }
                let label = format!("model.layers.{i}.self_attn");
                let cache = s.shape.kv_dtype.dtype();
                let rope = Rope {
                    label: &label,
                    q_norm: w.q_norm.as_ref(),
                    k_norm: w.k_norm.as_ref(),
                    table: &s.rope_table,
                    qkv: &s.qkv,
                    pages: &s.pages,
                    k_cache,
                    v_cache,
                    cache_dtype: cache,
                    out: &s.mixed,
                    partials: &s.partials,
                };
                // A token's RoPE and attention are one launch (two where its keys are
                // split, to combine them); a batch's two.
                steps.push(Step::Batch(ops::rope(gpu, c, &rope, none)?));
                let attend = [&s.qkv, &s.pages, k_cache, v_cache, &s.mixed];
                steps.push(Step::BySize {
                    one: ops::rope_attention(gpu, c, &rope, none)?,
                    many: ops::attention(gpu, &label, c, cache, attend)?,
                });
                steps.extend(ops::attention_combine(gpu, c, &rope, none)?);
                steps.push(self.linear(
                    &w.out_proj,
                    w.out_bias.as_ref(),
                    &s.mixed,
                    &s.x,
                    LinearOutput::Accumulate,
                    None,
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
        norm: Option<InputNorm>,
        steps: &mut Vec<Step>,
    ) -> Result<()> {
        let (gpu, c, none) = (&*self.gpu, &self.config, &self.no_bias);
        let label = format!("model.layers.{i}.feed_forward");
        match (ffn, &c.moe, &s.moe) {
            (FeedForward::Dense { gate_up, w2 }, _, _) => {
                // A token's up projection applies SwiGLU itself; a batch's takes a launch.
                match gate_up {
                    GateUpWeights::Joined(weight) => {
                        let op = GateUp {
                            weight,
                            x: &s.xn,
                            gate: &s.gate,
                            up: &s.up,
                            norm,
                        };
                        steps.push(ops::gate_up(gpu, op, none)?);
                    }
                    GateUpWeights::Apart { w1, w3 } => {
                        let rows = LinearOutput::Rows;
                        steps.push(self.linear(w1, None, &s.xn, &s.gate, rows, norm)?);
                        let up = Linear {
                            weight: w3,
                            bias: None,
                            x: &s.xn,
                            out: &s.up,
                            output: LinearOutput::Rows,
                            gate: Some(&s.gate),
                            norm,
                        };
                        steps.push(ops::linear(gpu, up, none)?);
                    }
                }
                steps.push(Step::Batch(ops::swiglu(
                    gpu, &label, &s.gate, &s.up, c.ff_size,
                )?));
                steps.push(self.linear(w2, None, &s.up, &s.x, LinearOutput::Accumulate, None)?);
            }
            (FeedForward::Moe(w), Some(moe), Some(m)) => {
                // router → top-k (and, for a batch, each expert's slots) → gate → up with
                // SwiGLU → down with the weighted sum into the residual: four launches
                // for a token; a batch's matmuls leave SwiGLU and the sum to their own.
                let router = self.linear(
                    &w.router,
                    None,
                    &s.xn,
                    &m.router_logits,
                    LinearOutput::Rows,
                    norm,
                )?;
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
                let route = ops::moe_route(gpu, &buffers, none)?;
                // A token's router projection and routing take one launch where the
                // router is of a float type.
                let token_route = norm
                    .map(|n| ops::moe_route_token(gpu, &buffers, &w.router, n, none))
                    .transpose()?
                    .flatten();
                match token_route {
                    Some(one) => {
                        steps.push(router.batch_only());
                        steps.push(Step::BySize { one, many: route });
                    }
                    None => {
                        steps.push(router);
                        steps.push(Step::Always(route));
                    }
                }
                steps.push(Step::Batch(ops::moe_lists(gpu, &buffers, none)?));
                let expert = |weight, x, x_per_slot, out, single| {
                    let op = ExpertLinear {
                        weight,
                        x,
                        x_per_slot,
                        out,
                        single,
                        norm: if x_per_slot { None } else { norm },
                        top_k: moe.top_k,
                        routes: &m.routes,
                        slots: &m.slots,
                    };
                    ops::expert_linear(gpu, op, none)
                };
                let (gate, up) = (&m.expert_gate, &m.expert_up);
                if w.paired() {
                    let paired = ExpertOutput::Paired { up };
                    steps.push(expert(&w.gate, &s.xn, false, gate, paired)?);
                    let slots = ExpertOutput::Slots;
                    steps.push(expert(&w.up, &s.xn, false, up, slots)?.batch_only());
                } else {
                    steps.push(expert(&w.gate, &s.xn, false, gate, ExpertOutput::Slots)?);
                    let gated = ExpertOutput::Gated { gate };
                    steps.push(expert(&w.up, &s.xn, false, up, gated)?);
                }
                let slot_width = moe.top_k * moe.expert_ff;
                steps.push(Step::Batch(ops::swiglu(
                    gpu,
                    &label,
                    gate,
                    &m.expert_up,
                    slot_width,
                )?));
                // A stack bound in parts adds up its slots as a batch does, through
                // expert_out and the combine, so that splitting changes no bit.
                let combine = ops::moe_combine(gpu, &buffers, none)?;
                if ops::row_parts(gpu, &w.down.tensor)?.len() == 1 {
                    let fused = ExpertOutput::Combine { residual: &s.x };
                    steps.push(expert(&w.down, &m.expert_up, true, &m.expert_out, fused)?);
                    steps.push(Step::Batch(combine));
                } else {
                    let slots = ExpertOutput::Slots;
                    steps.push(expert(&w.down, &m.expert_up, true, &m.expert_out, slots)?);
                    steps.push(Step::Always(combine));
                }
            }
            _ => return Err(Error::Gpu(format!("layer {i}: session has no MoE buffers"))),
        }
        Ok(())
    }
}
