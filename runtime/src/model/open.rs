//! The one way front ends open a model (the command line, the C ABI, JNI, Kotlin,
//! Swift, the examples): a name — an HF model folder, a `.gguf` file or
//! `hf:OWNER/REPO[:FILE]` — and how much of which GPU it may use. Everything that can
//! be checked on the CPU (the name, the config, the budget) is checked before the GPU
//! starts.

use std::path::Path;
use std::sync::Arc;

use super::Model;
use crate::budget::{weight_file_bytes, MemoryPlan};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::{Gpu, GpuOptions};
use crate::session::options::SessionOptions;
use crate::vram::VramBudget;

/// How to open a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The backend, and adapter limits lowered to a phone's.
    pub gpu: GpuOptions,
    /// Bytes of GPU memory for the weights and every session of the model (`None`: no
    /// budget): each session's context is then what the budget has left.
    pub vram_budget: Option<u64>,
}

impl Model {
    /// Opens the model `spec` names — a model folder (config.json, safetensors,
    /// tokenizer.json), a `.gguf` file, or `hf:OWNER/REPO[:FILE]` fetched into the
    /// hub's cache — on a GPU of its own.
    pub fn open(spec: &str, options: &LoadOptions) -> Result<Arc<Model>> {
        let path = crate::hub::resolve(spec)?;
        let config = config_of(&path)?;
        if let Some(budget) = options.vram_budget {
            // A one-token session at least must fit beside the weights.
            let session = SessionOptions {
                max_context: 1,
                ..SessionOptions::default()
            };
            MemoryPlan::new(&config, weight_file_bytes(&path)?, budget, &session, 1)?;
        }
        let gpu = Gpu::new(&options.gpu)?;
        Ok(Arc::new(match options.vram_budget {
            Some(budget) => Model::load_within(&path, gpu, &VramBudget::new(budget))?,
            None => Model::load(&path, gpu)?,
        }))
    }
}

/// The config of the model at `path`, a GGUF file or a model folder.
pub fn config_of(path: &Path) -> Result<ModelConfig> {
    let kind = std::fs::metadata(path).map(|m| m.file_type());
    match kind {
        Ok(kind) if kind.is_file() => crate::gguf::model_config(&GgufFile::open(path)?),
        Ok(kind) if kind.is_dir() => ModelConfig::from_file(&path.join("config.json")),
        Ok(_) => {
            let odd = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file or a directory",
            );
            Err(Error::io(path, odd))
        }
        Err(_) => {
            let missing = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such model file or directory",
            );
            Err(Error::io(path, missing))
        }
    }
}
