//! The handles and structs of lfm_edge.h, field for field, and their defaults. Enum
//! values cross as fixed-size integers: a C caller can put any value in an enum field,
//! and only an integer can hold it until it is checked.

use lfm_edge::SessionOptions;
use std::ffi::{c_char, c_void};

use crate::error::FfiResult;
use crate::generator::{GenerateParams, Generation};
use crate::model::{backend, AppModel, LoadOptions};
use crate::shared_session::SharedSession;

/// `lfm_model`: the weights on the GPU (and the KV pool), shared by sessions (each
/// holds a reference, so freeing the model before its sessions is allowed).
pub struct LfmModel(pub(crate) AppModel);

/// `lfm_session`.
pub struct LfmSession(pub(crate) SharedSession);

/// `lfm_model_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LfmModelOptions {
    /// An `lfm_backend`.
    pub backend: i32,
    /// Bytes for the weights and every session of the model (0: no budget).
    pub vram_budget_bytes: u64,
    /// Tokens of one KV pool shared by the model's sessions (0: a cache per session).
    pub kv_pool_tokens: u32,
}

/// `lfm_session_options`; 0 in a field means its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LfmSessionOptions {
    pub context_length: u32,
    pub batch: u32,
}

/// `lfm_generate_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LfmGenerateOptions {
    pub max_tokens: u32,
    pub temperature: f32,
    pub seed: u64,
    pub ignore_eos: bool,
}

/// `lfm_generation`: how a generation went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LfmGeneration {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// An `lfm_stop_reason`.
    pub stop_reason: i32,
}

/// `lfm_token_callback`: returns whether to go on.
pub type LfmTokenCallback = Option<
    unsafe extern "C" fn(
        text: *const c_char,
        text_len: usize,
        token: u32,
        user_data: *mut c_void,
    ) -> bool,
>;

#[no_mangle]
pub extern "C" fn lfm_model_options_default() -> LfmModelOptions {
    LfmModelOptions {
        backend: 0,
        vram_budget_bytes: 0,
        kv_pool_tokens: 0,
    }
}

#[no_mangle]
pub extern "C" fn lfm_session_options_default() -> LfmSessionOptions {
    let defaults = SessionOptions::default();
    LfmSessionOptions {
        context_length: defaults.max_context as u32,
        batch: defaults.batch as u32,
    }
}

#[no_mangle]
pub extern "C" fn lfm_generate_options_default() -> LfmGenerateOptions {
    let defaults = GenerateParams::default();
    LfmGenerateOptions {
        max_tokens: defaults.max_tokens as u32,
        temperature: defaults.temperature,
        seed: defaults.seed,
        ignore_eos: defaults.ignore_eos,
    }
}

impl LfmModelOptions {
    pub(crate) fn to_load_options(self) -> FfiResult<LoadOptions> {
        Ok(LoadOptions {
            backend: backend(self.backend)?,
            vram_budget_bytes: self.vram_budget_bytes,
            kv_pool_tokens: self.kv_pool_tokens,
        })
    }
}

impl LfmGenerateOptions {
    pub(crate) fn to_params(self) -> GenerateParams {
        GenerateParams {
            max_tokens: self.max_tokens as usize,
            temperature: self.temperature,
            seed: self.seed,
            ignore_eos: self.ignore_eos,
        }
    }
}

impl From<&Generation> for LfmGeneration {
    fn from(generation: &Generation) -> Self {
        LfmGeneration {
            prompt_tokens: generation.prompt_tokens,
            generated_tokens: generation.tokens.len(),
            stop_reason: generation.stop as i32,
        }
    }
}
