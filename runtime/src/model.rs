//! An LFM2 model, top to bottom: config → weights (uploaded at file precision) →
//! the forward graph of a session (a `match` per layer kind) → logits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{LayerKind, ModelConfig};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Step};
use crate::ops::{self, GpuTensor, Linear, LinearOutput, ShortConv};
use crate::safetensors::Checkpoint;
use crate::state::{LayerState, State};
use crate::tokenizer::Tokenizer;

/// The operator of one decoder layer, with its weights.
enum Operator {
    Conv {
        in_proj: GpuTensor,               // (3 · hidden, hidden): conv.in_proj.weight
        in_proj_bias: Option<GpuTensor>,  // (3 · hidden)
        conv: GpuTensor,                  // (hidden, 1, L): conv.conv.weight
        conv_bias: Option<GpuTensor>,     // (hidden)
        out_proj: GpuTensor,              // (hidden, hidden): conv.out_proj.weight
        out_proj_bias: Option<GpuTensor>, // (hidden)
    },
    Attention {
        q_proj: GpuTensor,   // (heads · d, hidden): self_attn.q_proj.weight
        k_proj: GpuTensor,   // (kv_heads · d, hidden)
        v_proj: GpuTensor,   // (kv_heads · d, hidden)
        out_proj: GpuTensor, // (hidden, heads · d): self_attn.out_proj.weight
        q_norm: GpuTensor,   // (d): self_attn.q_layernorm.weight
        k_norm: GpuTensor,   // (d): self_attn.k_layernorm.weight
    },
}

struct Layer {
    operator_norm: GpuTensor, // (hidden)
    operator: Operator,
    ffn_norm: GpuTensor, // (hidden)
    w1: GpuTensor,       // (ff, hidden): feed_forward.w1.weight, the gate
    w3: GpuTensor,       // (ff, hidden): feed_forward.w3.weight, the up projection
    w2: GpuTensor,       // (hidden, ff): feed_forward.w2.weight, the down projection
}

pub struct Model {
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub gpu: Arc<Gpu>,
    pub dir: PathBuf,
    embed_tokens: GpuTensor,    // (vocab, hidden): model.embed_tokens.weight
    final_norm: GpuTensor,      // (hidden): model.embedding_norm.weight, after the last layer
    lm_head: Option<GpuTensor>, // (vocab, hidden) when the embedding is not tied
    layers: Vec<Layer>,
    /// Bound where a projection has no bias.
    no_bias: wgpu::Buffer,
}

/// Uploads checkpoint tensors after checking their shapes against the config.
struct Loader<'a> {
    gpu: &'a Gpu,
    checkpoint: &'a Checkpoint,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let view = self.checkpoint.get(name)?;
        view.expect_shape(shape)?;
        Ok(GpuTensor {
            buffer: self.gpu.upload(name, view.bytes)?,
            name: name.to_string(),
            dtype: view.dtype,
            shape: view.shape,
        })
    }

    fn bias(
        &self,
        present: bool,
        name: &str,
        weight: &GpuTensor,
        len: usize,
    ) -> Result<Option<GpuTensor>> {
        if !present {
            return Ok(None);
        }
        let bias = self.tensor(name, &[len])?;
        if bias.dtype != weight.dtype {
            return Err(Error::tensor(
                &weight.name,
                name,
                format!(
                    "is {} but {} is {}; mixed precision in one layer is not supported",
                    bias.dtype, weight.name, weight.dtype
                ),
            ));
        }
        Ok(Some(bias))
    }
}

impl Model {
    /// Loads `dir` (config.json, safetensors, tokenizer.json) onto `gpu`.
    pub fn load(dir: &Path, gpu: Arc<Gpu>) -> Result<Model> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory"),
            ));
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        let checkpoint = Checkpoint::open(dir)?;
        let loader = Loader {
            gpu: &gpu,
            checkpoint: &checkpoint,
        };
        let c = &config;
        let (h, ff, d) = (c.hidden_size, c.ff_size, c.head_dim);
        log::info!(
            "loading {} ({} layers, {})",
            dir.display(),
            c.n_layers(),
            c.layer_pattern()
        );

        let mut layers = Vec::with_capacity(c.n_layers());
        for (i, kind) in c.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let operator = match kind {
                LayerKind::Conv => {
                    let in_proj =
                        loader.tensor(&format!("{p}.conv.in_proj.weight"), &[3 * h, h])?;
                    let conv =
                        loader.tensor(&format!("{p}.conv.conv.weight"), &[h, 1, c.conv_l_cache])?;
                    let out_proj = loader.tensor(&format!("{p}.conv.out_proj.weight"), &[h, h])?;
                    Operator::Conv {
                        in_proj_bias: loader.bias(
                            c.conv_bias,
                            &format!("{p}.conv.in_proj.bias"),
                            &in_proj,
                            3 * h,
                        )?,
                        conv_bias: loader.bias(
                            c.conv_bias,
                            &format!("{p}.conv.conv.bias"),
                            &conv,
                            h,
                        )?,
                        out_proj_bias: loader.bias(
                            c.conv_bias,
                            &format!("{p}.conv.out_proj.bias"),
                            &out_proj,
                            h,
                        )?,
                        in_proj,
                        conv,
                        out_proj,
                    }
                }
                LayerKind::Attention => Operator::Attention {
                    q_proj: loader
                        .tensor(&format!("{p}.self_attn.q_proj.weight"), &[c.n_heads * d, h])?,
                    k_proj: loader
                        .tensor(&format!("{p}.self_attn.k_proj.weight"), &[c.kv_dim(), h])?,
                    v_proj: loader
                        .tensor(&format!("{p}.self_attn.v_proj.weight"), &[c.kv_dim(), h])?,
                    out_proj: loader.tensor(
                        &format!("{p}.self_attn.out_proj.weight"),
                        &[h, c.n_heads * d],
                    )?,
                    q_norm: loader.tensor(&format!("{p}.self_attn.q_layernorm.weight"), &[d])?,
                    k_norm: loader.tensor(&format!("{p}.self_attn.k_layernorm.weight"), &[d])?,
                },
            };
            layers.push(Layer {
                operator_norm: loader.tensor(&format!("{p}.operator_norm.weight"), &[h])?,
                operator,
                ffn_norm: loader.tensor(&format!("{p}.ffn_norm.weight"), &[h])?,
                w1: loader.tensor(&format!("{p}.feed_forward.w1.weight"), &[ff, h])?,
                w3: loader.tensor(&format!("{p}.feed_forward.w3.weight"), &[ff, h])?,
                w2: loader.tensor(&format!("{p}.feed_forward.w2.weight"), &[h, ff])?,
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
            tokenizer,
            config,
            dir: dir.to_path_buf(),
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

    fn tensors(&self) -> impl Iterator<Item = &GpuTensor> {
        let per_layer = self.layers.iter().flat_map(|l| {
            let mut t = vec![&l.operator_norm, &l.ffn_norm, &l.w1, &l.w3, &l.w2];
            match &l.operator {
                Operator::Conv {
                    in_proj,
                    in_proj_bias,
                    conv,
                    conv_bias,
                    out_proj,
                    out_proj_bias,
                } => {
                    t.extend([in_proj, conv, out_proj]);
                    t.extend(
                        [in_proj_bias, conv_bias, out_proj_bias]
                            .into_iter()
                            .flatten(),
                    );
                }
                Operator::Attention {
                    q_proj,
                    k_proj,
                    v_proj,
                    out_proj,
                    q_norm,
                    k_norm,
                } => {
                    t.extend([q_proj, k_proj, v_proj, out_proj, q_norm, k_norm]);
                }
            }
            t
        });
        [&self.embed_tokens, &self.final_norm]
            .into_iter()
            .chain(self.lm_head.as_ref())
            .chain(per_layer)
    }

    pub fn parameter_count(&self) -> u64 {
        self.tensors()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum()
    }

    /// Bytes of weights resident in VRAM.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors().map(GpuTensor::bytes).sum()
    }

    /// The forward pass over a batch, recorded once against a session's buffers.
    pub(crate) fn forward_graph(&self, s: &State) -> Result<Vec<Step>> {
        let gpu = &*self.gpu;
        let c = &self.config;
        let eps = c.norm_eps;
        let nb = &self.no_bias;
        let linear = |weight, bias, x, out, output| {
            ops::linear(
                gpu,
                Linear {
                    weight,
                    bias,
                    x,
                    out,
                    output,
                },
                nb,
            )
        };

        let mut steps = vec![Step::Always(ops::embedding(
            gpu,
            &s.tokens,
            &self.embed_tokens,
            &s.x,
        )?)];
        for (i, (layer, state)) in self.layers.iter().zip(&s.layers).enumerate() {
            // h = x + operator(operator_norm(x))
            steps.push(Step::Always(ops::rmsnorm(
                gpu,
                &s.x,
                &layer.operator_norm,
                eps,
                &s.xn,
            )?));
            match (&layer.operator, state) {
                (
                    Operator::Conv {
                        in_proj,
                        in_proj_bias,
                        conv,
                        conv_bias,
                        out_proj,
                        out_proj_bias,
                    },
                    LayerState::Conv { conv_state },
                ) => {
                    steps.push(linear(
                        in_proj,
                        in_proj_bias.as_ref(),
                        &s.xn,
                        &s.bcx,
                        LinearOutput::Rows,
                    )?);
                    let op = ShortConv {
                        weight: conv,
                        bias: conv_bias.as_ref(),
                        bcx: &s.bcx,
                        state: conv_state,
                        out: &s.mixed,
                    };
                    steps.push(Step::Always(ops::shortconv(gpu, &op, nb)?));
                    steps.push(Step::Always(ops::shortconv_state(gpu, &op, nb)?));
                    steps.push(linear(
                        out_proj,
                        out_proj_bias.as_ref(),
                        &s.mixed,
                        &s.x,
                        LinearOutput::Accumulate,
                    )?);
                }
                (
                    Operator::Attention {
                        q_proj,
                        k_proj,
                        v_proj,
                        out_proj,
                        q_norm,
                        k_norm,
                    },
                    LayerState::Attention { k_cache, v_cache },
                ) => {
                    steps.push(linear(q_proj, None, &s.xn, &s.q, LinearOutput::Rows)?);
                    steps.push(linear(
                        k_proj,
                        None,
                        &s.xn,
                        k_cache,
                        LinearOutput::CacheRows,
                    )?);
                    steps.push(linear(
                        v_proj,
                        None,
                        &s.xn,
                        v_cache,
                        LinearOutput::CacheRows,
                    )?);
                    steps.push(Step::Always(ops::rope(
                        gpu,
                        q_norm,
                        &s.rope_table,
                        &s.q,
                        c.n_heads,
                        eps,
                        false,
                    )?));
                    steps.push(Step::Always(ops::rope(
                        gpu,
                        k_norm,
                        &s.rope_table,
                        k_cache,
                        c.n_kv_heads,
                        eps,
                        true,
                    )?));
                    let label = format!("model.layers.{i}.self_attn");
                    steps.push(Step::Always(ops::attention(
                        gpu, &label, c, &s.q, k_cache, v_cache, &s.mixed,
                    )?));
                    steps.push(linear(
                        out_proj,
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
            // out = h + w2(silu(w1 n) * w3 n), n = ffn_norm(h)
            steps.push(Step::Always(ops::rmsnorm(
                gpu,
                &s.x,
                &layer.ffn_norm,
                eps,
                &s.xn,
            )?));
            steps.push(linear(&layer.w1, None, &s.xn, &s.gate, LinearOutput::Rows)?);
            steps.push(linear(&layer.w3, None, &s.xn, &s.up, LinearOutput::Rows)?);
            let label = format!("model.layers.{i}.feed_forward");
            steps.push(Step::Always(ops::swiglu(
                gpu, &label, &s.gate, &s.up, c.ff_size,
            )?));
            steps.push(linear(
                &layer.w2,
                None,
                &s.up,
                &s.x,
                LinearOutput::Accumulate,
            )?);
        }

        // logits = final_norm(x) · embed_tokensᵀ (or lm_head)
        steps.push(Step::Always(ops::rmsnorm(
            gpu,
            &s.x,
            &self.final_norm,
            eps,
            &s.xn,
        )?));
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let output = if s.all_logits {
            LinearOutput::Rows
        } else {
            LinearOutput::LastRow
        };
        steps.push(linear(head, None, &s.xn, &s.logits, output)?);
        Ok(steps)
    }
}
