//! Loading a model for an app: the GPU it runs on and its weights, shared by every
//! session opened on it.

use std::path::Path;
use std::sync::Arc;

use lfm_edge::{Backend, Gpu, GpuOptions, Model, ModelConfig, SessionOptions, VramBudget};

use crate::error::{FfiError, FfiResult};

/// `lfm_backend` (ABI, never renumber) to the runtime's backend.
pub fn backend(code: i32) -> FfiResult<Backend> {
    Ok(match code {
        0 => Backend::Auto,
        1 => Backend::Vulkan,
        2 => Backend::Metal,
        3 => Backend::Dx12,
        4 => Backend::Gl,
        other => {
            return Err(FfiError::InvalidArgument(format!(
                "backend {other} is not one of auto (0), vulkan (1), metal (2), dx12 (3), gl (4)"
            )))
        }
    })
}

/// Loads a model, within a VRAM budget of `vram_budget_bytes` unless it is 0: the
/// weights and every session opened on the model take their bytes from it.
pub fn load_model(dir: &Path, backend: Backend, vram_budget_bytes: u64) -> FfiResult<Arc<Model>> {
    // A missing or bad model fails before paying for GPU start-up.
    ModelConfig::from_file(&dir.join("config.json"))?;
    let budget = (vram_budget_bytes != 0).then(|| VramBudget::new(vram_budget_bytes));
    let gpu = Gpu::new(&GpuOptions {
        backend,
        ..GpuOptions::default()
    })?;
    Ok(Arc::new(match budget {
        Some(budget) => Model::load_within(dir, gpu, &budget)?,
        None => Model::load(dir, gpu)?,
    }))
}

/// A session's options: a `context_length` of 0 is the default, or with a VRAM budget
/// all that the budget has left (the session fits its context when created).
pub fn session_options(model: &Model, context_length: u32, batch: u32) -> SessionOptions {
    let defaults = SessionOptions::default();
    let context = match (context_length, model.vram_budget()) {
        (0, Some(_)) => usize::MAX,
        (0, None) => defaults.max_context,
        (n, _) => n as usize,
    };
    SessionOptions {
        max_context: context,
        batch: if batch == 0 {
            defaults.batch
        } else {
            batch as usize
        },
        all_logits: false,
        ..defaults
    }
}

/// Ids as `Tokenizer.encode` gives them, with or without the special tokens (bos).
pub fn tokenize(model: &Model, text: &str, add_special_tokens: bool) -> FfiResult<Vec<u32>> {
    Ok(model.tokenizer.encode_with(text, add_special_tokens)?)
}
