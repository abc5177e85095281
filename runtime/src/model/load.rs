//! Loading a model: its config and tokenizer, then every weight tensor from a GGUF file
//! or an HF checkpoint, its shape checked against the config, uploaded at file precision.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use super::{
    AttentionWeights, ConvWeights, FeedForward, GateUpWeights, Layer, Model, MoeWeights, Operator,
    QkvWeights,
};
use crate::budget::weight_file_bytes;
use crate::config::{LayerKind, ModelConfig, MoeConfig};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufWeights};
use crate::gpu::Gpu;
use crate::ops::{ExpertMatrix, GpuTensor};
use crate::safetensors::Checkpoint;
use crate::tokenizer::Tokenizer;
use crate::vram::VramBudget;
use crate::weights::{TensorView, WeightSource};

/// Uploads checkpoint tensors after checking their shapes against the config.
struct Loader<'a> {
    gpu: &'a Gpu,
    source: &'a dyn WeightSource,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        self.upload(name, &self.view(name, shape)?)
    }

    /// The checkpoint's tensor `name`, its shape checked, not uploaded yet.
    fn view(&self, name: &str, shape: &[usize]) -> Result<TensorView<'_>> {
        let view = self.source.get(name)?;
        view.expect_shape(shape)?;
        Ok(view)
    }

    fn upload(&self, name: &str, view: &TensorView) -> Result<GpuTensor> {
        GpuTensor::upload(self.gpu, name, view.dtype, &view.shape, &[&view.bytes])
    }

    fn bias(&self, present: bool, name: &str, len: usize) -> Result<Option<GpuTensor>> {
        present.then(|| self.tensor(name, &[len])).transpose()
    }

    /// `views` (of one dtype) as one tensor named `name`: their rows back to back.
    fn join(&self, name: &str, views: &[TensorView]) -> Result<GpuTensor> {
        let first = &views[0];
        let rows = views.iter().map(|v| v.shape[0]).sum();
        let shape = [&[rows], &first.shape[1..]].concat();
        let parts: Vec<&[u8]> = views.iter().map(|v| v.bytes.as_ref()).collect();
        GpuTensor::upload(self.gpu, name, first.dtype, &shape, &parts)
    }

    /// [`Loader::join`] where the views share a dtype and together fit one binding (a
    /// projection then takes all their rows in one launch); None where they do not.
    fn join_in_one_binding(&self, name: &str, views: &[TensorView]) -> Result<Option<GpuTensor>> {
        let bytes: usize = views.iter().map(|v| v.bytes.len()).sum();
        let fits = views.iter().all(|v| v.dtype == views[0].dtype)
            && bytes as u64 <= self.gpu.limits.max_storage_buffer_binding_size;
        fits.then(|| self.join(name, views)).transpose()
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
        let name = |module: &str, what: &str| format!("{p}.self_attn.{module}.{what}");
        let tensor = |module: &str, shape: &[usize]| self.tensor(&name(module, "weight"), shape);
        let bias = |module: &str, len| self.bias(c.attention_bias, &name(module, "bias"), len);
        let norm = |module: &str| {
            c.architecture
                .qk_norm()
                .then(|| tensor(module, &[d]))
                .transpose()
        };
        // q_proj's, k_proj's and v_proj's weights (or biases): rows of `cols` each.
        let projections = [
            ("q_proj", c.q_dim()),
            ("k_proj", c.kv_dim()),
            ("v_proj", c.kv_dim()),
        ];
        let views = |what: &str, cols: &[usize]| {
            projections
                .iter()
                .map(|&(module, rows)| self.view(&name(module, what), &[&[rows], cols].concat()))
                .collect::<Result<Vec<_>>>()
        };
        let joined = format!("{p}.self_attn.q_proj+k_proj+v_proj");
        let weights = views("weight", &[h])?;
        let qkv = match self.join_in_one_binding(&joined, &weights)? {
            Some(qkv) => QkvWeights::Joined(qkv),
            None => {
                let apart = |i: usize| self.upload(&name(projections[i].0, "weight"), &weights[i]);
                QkvWeights::Apart {
                    q_proj: apart(0)?,
                    k_proj: apart(1)?,
                    v_proj: apart(2)?,
                }
            }
        };
        // One bias tensor either way: each projection adds its columns' part of it.
        let qkv_bias = if c.attention_bias {
            let biases = views("bias", &[])?;
            let dtype = biases[0].dtype;
            if let Some(odd) = biases.iter().find(|b| b.dtype != dtype) {
                return Err(Error::tensor(
                    odd.path,
                    odd.name,
                    format!(
                        "is {} but {} is {dtype}: q, k and v take their biases from one tensor",
                        odd.dtype, biases[0].name
                    ),
                ));
            }
            Some(self.join(&format!("{joined}.bias"), &biases)?)
        } else {
            None
        };
        Ok(AttentionWeights {
            qkv,
            qkv_bias,
            out_proj: tensor("out_proj", &[h, c.q_dim()])?,
            out_bias: bias("out_proj", h)?,
            q_norm: norm("q_layernorm")?,
            k_norm: norm("k_layernorm")?,
        })
    }

    fn feed_forward(&self, p: &str, c: &ModelConfig, layer: usize) -> Result<FeedForward> {
        let (h, ff) = (c.hidden_size, c.ff_size);
        let moe = match &c.moe {
            Some(moe) if c.is_moe_layer(layer) => moe,
            _ => {
                let name = |which: &str| format!("{p}.feed_forward.{which}.weight");
                let views = [
                    self.view(&name("w1"), &[ff, h])?,
                    self.view(&name("w3"), &[ff, h])?,
                ];
                let joined = format!("{p}.feed_forward.w1+w3");
                let gate_up = match self.join_in_one_binding(&joined, &views)? {
                    Some(gate_up) => GateUpWeights::Joined(gate_up),
                    None => GateUpWeights::Apart {
                        w1: self.upload(&name("w1"), &views[0])?,
                        w3: self.upload(&name("w3"), &views[1])?,
                    },
                };
                return Ok(FeedForward::Dense {
                    gate_up,
                    w2: self.tensor(&name("w2"), &[h, ff])?,
                });
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
        } else {
            let (gate, up) = (
                self.experts(p, "w1", moe, [i, h])?,
                self.experts(p, "w3", moe, [i, h])?,
            );
            let down = self.experts(p, "w2", moe, [h, i])?;
            let down = matrix(self.stack(p, "w2", &[&down])?, h, 0);
            if gate.dtype == up.dtype {
                // Each expert's gate rows then its up rows, as transformers keeps them:
                // a token's gate and up projections then take one launch.
                let gate_up = self.stack(p, "w1+w3", &[&gate, &up])?;
                (matrix(gate_up.clone(), i, 0), matrix(gate_up, i, i), down)
            } else {
                let gate = matrix(self.stack(p, "w1", &[&gate])?, i, 0);
                (gate, matrix(self.stack(p, "w3", &[&up])?, i, 0), down)
            }
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

    /// The matrices `which` (w1, w3 or w2) of every expert, `shape` each: GGUF's
    /// (experts, rows, cols) tensor, or the published `experts.K.<which>.weight`.
    fn experts(
        &self,
        p: &str,
        which: &str,
        moe: &MoeConfig,
        shape: [usize; 2],
    ) -> Result<ExpertViews<'_>> {
        let e = moe.n_experts;
        let stacked = format!("{p}.feed_forward.experts.{which}");
        if self.source.contains(&stacked) {
            let view = self.view(&stacked, &[e, shape[0], shape[1]])?;
            return Ok(ExpertViews {
                dtype: view.dtype,
                shape,
                views: vec![view],
            });
        }
        let extra = format!("{p}.feed_forward.experts.{e}.{which}.weight");
        if self.source.contains(&extra) {
            return Err(Error::tensor(
                self.source.path(),
                extra,
                format!("exists, but config.json says num_experts is {e}"),
            ));
        }
        let views = (0..e)
            .map(|k| {
                self.view(
                    &format!("{p}.feed_forward.experts.{k}.{which}.weight"),
                    &shape,
                )
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
        Ok(ExpertViews {
            dtype,
            shape,
            views,
        })
    }

    /// One (experts, rows, cols) tensor holding, for each expert in turn, its matrix of
    /// each of `matrices` (of one dtype and width), named `experts.<which>`.
    fn stack(&self, p: &str, which: &str, matrices: &[&ExpertViews]) -> Result<GpuTensor> {
        let first = matrices[0];
        let experts: Vec<Vec<&[u8]>> = matrices.iter().map(|m| m.per_expert()).collect();
        let parts: Vec<&[u8]> = (0..experts[0].len())
            .flat_map(|k| experts.iter().map(move |m| m[k]))
            .collect();
        let rows = matrices.iter().map(|m| m.shape[0]).sum();
        GpuTensor::upload(
            self.gpu,
            &format!("{p}.feed_forward.experts.{which}"),
            first.dtype,
            &[experts[0].len(), rows, first.shape[1]],
            &parts,
        )
    }
}

/// One matrix of every expert, as the checkpoint holds them: one stacked view, or a
/// view per expert.
struct ExpertViews<'a> {
    dtype: DType,
    /// (rows, cols) of one expert's matrix.
    shape: [usize; 2],
    views: Vec<TensorView<'a>>,
}

impl ExpertViews<'_> {
    /// Each expert's bytes.
    fn per_expert(&self) -> Vec<&[u8]> {
        match &self.views[..] {
            [stacked] => {
                let bytes = self.dtype.bytes_for(self.shape[0] * self.shape[1]);
                stacked.bytes.chunks(bytes).collect()
            }
            views => views.iter().map(|v| v.bytes.as_ref()).collect(),
        }
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
            let weights = GgufWeights::new(file, &config);
            return Self::from_source(path, config, tokenizer, &weights, gpu);
        }
        if !path.is_dir() {
            let (kind, message) = match path.exists() {
                true => (ErrorKind::InvalidInput, "not a regular file or a directory"),
                false => (ErrorKind::NotFound, "no such model file or directory"),
            };
            return Err(Error::io(path, std::io::Error::new(kind, message)));
        }
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let tokenizer = Tokenizer::from_dir(path)?;
        let checkpoint = Checkpoint::open(path)?.named(config.architecture);
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
        // The config's sizes against the weights' before anything is sized from them:
        // the layer count, then vocab and hidden by the embedding.
        let found = source.layer_count();
        if found != c.n_layers() {
            return Err(Error::Weights {
                path: source.path(),
                message: format!(
                    "the weights hold {found} layers, the config has {}",
                    c.n_layers()
                ),
            });
        }
        let vocab_shape = [c.vocab_size, h];
        let embed_tokens = loader.tensor("model.embed_tokens.weight", &vocab_shape)?;

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
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(loader.tensor("lm_head.weight", &vocab_shape)?)
        };
        let model = Model {
            embed_tokens,
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
}
