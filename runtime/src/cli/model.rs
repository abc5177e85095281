//! `--model`, `--backend` and the memory options: which model a command opens, through
//! the library's one loader, and the session it runs in.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use lfm_edge::units::format_size;
use lfm_edge::{Backend, Error, GpuOptions, LoadOptions, Model, Result, Session};

use super::demo;
use super::memory::MemoryArgs;

#[derive(Args)]
pub struct ModelArgs {
    /// A model directory (config.json, model.safetensors or shards, tokenizer.json), a
    /// .gguf file, or hf:OWNER/REPO[:FILE] to fetch from the Hugging Face hub into its
    /// cache. [default: the bundled demo model, models/lfm2-demo-Q8_0.gguf]
    #[arg(long)]
    pub model: Option<String>,
    /// GPU backend: auto, vulkan, metal, dx12, gl (auto also honours WGPU_BACKEND).
    #[arg(long, default_value = "auto")]
    pub backend: Backend,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

impl ModelArgs {
    /// The model's name: `--model`, or the bundled demo model's path.
    fn spec(&self) -> Result<String> {
        match &self.model {
            Some(spec) => Ok(spec.clone()),
            None => Ok(demo::path()?.to_string_lossy().into_owned()),
        }
    }

    /// The model on disk: fetched first for hf: names.
    pub fn path(&self) -> Result<PathBuf> {
        lfm_edge::hub::resolve(&self.spec()?)
    }

    pub fn load(&self) -> Result<Arc<Model>> {
        let options = LoadOptions {
            gpu: GpuOptions {
                backend: self.backend,
                max_binding_size: self.memory.max_binding,
                max_buffer_size: self.memory.max_buffer,
                matvec_launch: self.memory.matvec_launch,
                prefill: self.memory.prefill_launch,
                key_ranges: self.memory.key_ranges,
                reduce: self.memory.sums,
                ..GpuOptions::default()
            },
            vram_budget: self.memory.vram_budget,
        };
        Model::open(&self.spec()?, &options)
    }

    /// The command's one session, sized by the memory options.
    pub fn session(&self, model: &Arc<Model>, all_logits: bool) -> Result<Session> {
        let positions = model.config.max_position_embeddings;
        if let Some(context) = self.memory.context.filter(|&n| n > positions) {
            return Err(Error::Input(format!(
                "--context {context} is above the model's max_position_embeddings of {positions}"
            )));
        }
        let options = self.memory.session_options(all_logits);
        let session = Session::new(model.clone(), &options)?;
        if let Some(budget) = model.vram_budget() {
            log::info!(
                "VRAM budget {}: {} in use, context {} tokens",
                format_size(budget.total()),
                format_size(budget.used()),
                session.max_context()
            );
        }
        Ok(session)
    }
}
