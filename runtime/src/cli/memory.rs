//! `--context`, `--vram-budget`, `--kv-cache`, `--context-overflow`: how a command's
//! session is sized, planned before anything is allocated; `--max-binding`,
//! `--max-buffer`: a phone's limits on a larger GPU; `--matvec-launch`,
//! `--prefill-launch`, `--sums`, `--key-ranges`: launch shapes, a way of summing and a
//! split of attention's keys to measure.

use clap::Args;
use lfm_edge::gpu::{KeyRanges, Prefill, Reduce};
use lfm_edge::units::{format_size, parse_size};
use lfm_edge::{ContextOverflow, KvDtype, MemoryPlan, Model, Result, SessionOptions};

/// Without a budget, a session holds this many tokens unless told otherwise.
const DEFAULT_CONTEXT: usize = 4096;

#[derive(Args, Clone)]
pub struct MemoryArgs {
    /// Tokens the KV cache holds [default: 4096, or all that --vram-budget leaves].
    #[arg(long)]
    pub context: Option<usize>,
    /// GPU memory for weights, scratch and cache, e.g. 1.5GiB, 800MB, 2G: the cache gets
    /// what the weights and scratch leave.
    #[arg(long, value_parser = size)]
    pub vram_budget: Option<u64>,
    /// KV cache element type: f16 or f32.
    #[arg(long, default_value = "f16")]
    pub kv_cache: KvDtype,
    /// When the context is full: error, or shift (drop the oldest tokens after the
    /// first, as llama.cpp's context shift).
    #[arg(long, default_value = "error")]
    pub context_overflow: ContextOverflow,
    /// Lower the adapter's max_storage_buffer_binding_size to SIZE, as on a phone:
    /// larger weights are then bound in parts.
    #[arg(long, value_parser = size)]
    pub max_binding: Option<u64>,
    /// Lower the adapter's max_buffer_size to SIZE: larger weights are then uploaded
    /// as several buffers.
    #[arg(long, value_parser = size)]
    pub max_buffer: Option<u64>,
    /// Decode's matvec launch shape WG,THREADS,ROWS (threads per workgroup, threads
    /// sharing a row, rows per thread) instead of the adapter's: for measuring shapes
    /// on a new device with `bench`.
    #[arg(long, value_parser = launch, value_name = "WG,THREADS,ROWS")]
    pub matvec_launch: Option<[u32; 3]>,
    /// Prefill's projection kernel instead of the adapter's: tiled (tiles through
    /// workgroup memory) or WG,ROWS,TOKENS (threads per workgroup, each with a block of
    /// rows × tokens in registers): for measuring both on a new device with `bench`.
    #[arg(long, value_parser = prefill, value_name = "tiled|WG,ROWS,TOKENS")]
    pub prefill_launch: Option<Prefill>,
    /// How the kernels sum across invocations: subgroups (where the adapter has
    /// subgroup operations) or workgroup (a tree in workgroup memory) instead of the
    /// adapter's best: for measuring both with `bench`.
    #[arg(long, value_parser = sums, value_name = "subgroups|workgroup")]
    pub sums: Option<Reduce>,
    /// How a decoded token's attention splits the keys it sees, MOST,KEYS (up to MOST
    /// ranges side by side, each a multiple of KEYS keys; 1,N: never) instead of the
    /// adapter's: for measuring long contexts on a new device with `bench --depth`.
    #[arg(long, value_parser = key_ranges, value_name = "MOST,KEYS")]
    pub key_ranges: Option<KeyRanges>,
}

fn key_ranges(text: &str) -> std::result::Result<KeyRanges, String> {
    match numbers(text)?[..] {
        [most, keys] => Ok(KeyRanges { most, keys }),
        ref n => Err(format!("two numbers, MOST,KEYS, not {}", n.len())),
    }
}

fn prefill(text: &str) -> std::result::Result<Prefill, String> {
    if text == "tiled" {
        return Ok(Prefill::Tiled);
    }
    match numbers(text).as_deref() {
        Ok(&[workgroup, rows_per_thread, tokens_per_thread]) => Ok(Prefill::Rows {
            workgroup,
            rows_per_thread,
            tokens_per_thread,
        }),
        _ => Err(format!("{text:?}: tiled, or three numbers WG,ROWS,TOKENS")),
    }
}

fn sums(text: &str) -> std::result::Result<Reduce, String> {
    match text {
        "subgroups" => Ok(Reduce::Subgroups),
        "workgroup" => Ok(Reduce::Workgroup),
        _ => Err(format!("{text:?}: subgroups or workgroup")),
    }
}

fn launch(text: &str) -> std::result::Result<[u32; 3], String> {
    numbers(text)?
        .try_into()
        .map_err(|n: Vec<u32>| format!("three numbers, WG,THREADS,ROWS, not {}", n.len()))
}

/// Comma-separated numbers.
fn numbers(text: &str) -> std::result::Result<Vec<u32>, String> {
    (text.split(','))
        .map(|n| n.trim().parse::<u32>().map_err(|e| format!("{n:?}: {e}")))
        .collect()
}

fn size(text: &str) -> std::result::Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

impl MemoryArgs {
    /// Options for a session; within a budget, the context defaults to all that the
    /// budget holds (the session fits it when created).
    pub fn session_options(&self, all_logits: bool) -> SessionOptions {
        let context = match (self.context, self.vram_budget) {
            (Some(n), _) => n,
            (None, Some(_)) => usize::MAX,
            (None, None) => DEFAULT_CONTEXT,
        };
        SessionOptions {
            max_context: context,
            all_logits,
            kv_dtype: self.kv_cache,
            overflow: self.context_overflow,
            ..SessionOptions::default()
        }
    }

    /// The plan for one session of `model` within the budget, if there is one.
    fn plan(&self, model: &Model) -> Result<Option<MemoryPlan>> {
        let Some(budget) = self.vram_budget else {
            return Ok(None);
        };
        let options = self.session_options(false);
        MemoryPlan::new(&model.config, model.vram_bytes(), budget, &options, 1).map(Some)
    }

    /// What `info` reports about memory.
    pub fn describe(&self, model: &Model) -> Result<Vec<String>> {
        let c = &model.config;
        let options = self.session_options(false);
        let kv = lfm_edge::budget::kv_bytes_per_token(c, &options);
        let mut lines = vec![format!(
            "kv cache bytes per token: {kv} ({}, {} attention layers of {})",
            options.kv_dtype,
            c.layers
                .iter()
                .filter(|k| **k == lfm_edge::LayerKind::Attention)
                .count(),
            c.n_layers()
        )];
        if let Some(plan) = self.plan(model)? {
            lines.push(format!(
                "vram budget: {} ({}): weights {}, session scratch {}, {} per token of context",
                plan.budget,
                format_size(plan.budget),
                format_size(plan.weights),
                format_size(plan.session_fixed),
                format_size(plan.per_token)
            ));
            lines.push(format!("context that fits: {} tokens", plan.context));
        }
        Ok(lines)
    }
}
