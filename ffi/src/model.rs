//! Loading a model for an app: the GPU it runs on and its weights, shared by every
//! session opened on it.

use std::path::Path;
use std::sync::Arc;

use lfm_edge::{Backend, Gpu, GpuOptions, Model, ModelConfig};

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

/// `vram_budget_bytes` is reserved: the runtime does not allocate within a budget yet,
/// and the only memory checks are those against the adapter's own limits.
pub fn load_model(dir: &Path, backend: Backend, vram_budget_bytes: u64) -> FfiResult<Arc<Model>> {
    // A missing or bad model fails before paying for GPU start-up.
    ModelConfig::from_file(&dir.join("config.json"))?;
    if vram_budget_bytes != 0 {
        log::debug!("vram budget of {vram_budget_bytes} bytes noted; budgets are not enforced yet");
    }
    let gpu = Gpu::new(&GpuOptions {
        backend,
        ..GpuOptions::default()
    })?;
    Ok(Arc::new(Model::load(dir, gpu)?))
}

/// Ids as `Tokenizer.encode` gives them, with or without the special tokens (bos).
pub fn tokenize(model: &Model, text: &str, add_special_tokens: bool) -> FfiResult<Vec<u32>> {
    Ok(model.tokenizer.encode_with(text, add_special_tokens)?)
}
