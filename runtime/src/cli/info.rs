//! `lfm-edge info`: what a model is, what it takes in memory, and the adapter.

use lfm_edge::gpu::Prefill;
use lfm_edge::{ModelConfig, Result};

use super::model::ModelArgs;

pub fn run(args: &ModelArgs) -> Result<()> {
    let model = args.load()?;
    let c = &model.config;
    let gpu = &model.gpu;
    outln!("model: {}", model.path.display())?;
    outln!("architecture: {}", c.architecture.name())?;
    if let Some(skipped) = c.skipped {
        outln!("not loaded: {skipped} (the checkpoint's; only the language model runs)")?;
    }
    outln!(
        "layers: {} ({}; c = conv, A = attention)",
        c.n_layers(),
        c.layer_pattern()
    )?;
    outln!(
        "hidden: {}, ff: {}, heads: {} / kv {}, head_dim: {}, vocab: {}",
        c.hidden_size,
        c.ff_size,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.vocab_size
    )?;
    outln!("attention: {}", attention_details(c))?;
    outln!("parameters: {}", model.parameter_count())?;
    if let Some(moe) = &c.moe {
        outln!(
            "experts: {} per MoE layer, top {} per token, {} dense layers first",
            moe.n_experts,
            moe.top_k,
            moe.n_dense_layers
        )?;
        outln!(
            "active parameters per token: {}",
            model.active_parameter_count()
        )?;
    }
    outln!("weight bytes: {}", model.weight_bytes())?;
    for (dtype, tensors, bytes) in model.bytes_by_dtype() {
        outln!(
            "  {dtype}: {tensors} tensors, {bytes} bytes, {} bits per weight",
            dtype.bits_per_weight()
        )?;
    }
    for line in args.memory.describe(&model)? {
        outln!("{line}")?;
    }
    outln!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name,
        gpu.info.backend,
        gpu.info.device_type
    )?;
    let t = gpu.tuning;
    outln!(
        "kernels: {:?} halves, {:?} sums (subgroups of {} to {}), matvec launch {}/{}/{}, prefill {}, picks over chunks of {} (argmax) and {} (candidates), a token's attention over up to {} key ranges of multiples of {} keys",
        gpu.halves,
        gpu.reduce,
        gpu.info.subgroup_min_size,
        gpu.info.subgroup_max_size,
        t.matvec_workgroup,
        t.matvec_row_threads,
        t.matvec_rows_per_thread,
        match t.prefill {
            Prefill::Tiled => "tiled".to_string(),
            Prefill::Rows {
                workgroup,
                rows_per_thread,
                tokens_per_thread,
            } => format!("{workgroup}/{rows_per_thread}/{tokens_per_thread}"),
        },
        t.pick_chunks.argmax,
        t.pick_chunks.top,
        t.key_ranges.most,
        t.key_ranges.keys
    )?;
    outln!(
        "limits: max_buffer_size {}, max_storage_buffer_binding_size {}, max_compute_workgroup_size_x {}, max_compute_workgroups_per_dimension {}",
        gpu.limits.max_buffer_size,
        gpu.limits.max_storage_buffer_binding_size,
        gpu.limits.max_compute_workgroup_size_x,
        gpu.limits.max_compute_workgroups_per_dimension
    )?;
    Ok(())
}

/// RoPE and what else sets an architecture's attention apart.
fn attention_details(c: &ModelConfig) -> String {
    let mut parts = vec![format!("RoPE theta {}", c.rope.theta)];
    if let Some(y) = &c.rope.yarn {
        parts.push(format!(
            "YaRN factor {} over {} positions (attention factor {:.4})",
            y.factor, y.original_context, y.attention_factor
        ));
    }
    if let Some(t) = &c.rope.temperature {
        parts.push(format!(
            "attention temperature beta {} every {} positions",
            t.beta, t.floor_scale
        ));
    }
    if c.architecture.qk_norm() {
        parts.push("q/k RMSNorm".into());
    }
    if c.attention_bias {
        parts.push("q/k/v/o biases".into());
    }
    parts.push(
        if c.tie_word_embeddings {
            "tied output head"
        } else {
            "untied output head"
        }
        .into(),
    );
    parts.join(", ")
}
