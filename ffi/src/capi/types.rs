//! The handles and structs of lfm_edge.h, field for field, and their defaults. Enum
//! values cross as fixed-size integers: a C caller can put any value in an enum field,
//! and only an integer can hold it until it is checked.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use lfm_edge::{Model, SessionOptions};

use crate::generator::{GenerateParams, Generation};
use crate::shared_session::SharedSession;

/// `lfm_model`: the weights on the GPU, shared by sessions (each holds a reference, so
/// freeing the model before its sessions is allowed).
pub struct LfmModel(pub(crate) Arc<Model>);

/// `lfm_session`.
pub struct LfmSession(pub(crate) SharedSession);

/// `lfm_model_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LfmModelOptions {
    /// An `lfm_backend`.
    pub backend: i32,
    /// Reserved: budgets are not enforced yet (0 = none).
    pub vram_budget_bytes: u64,
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

impl LfmSessionOptions {
    pub(crate) fn to_runtime(self) -> SessionOptions {
        let defaults = SessionOptions::default();
        let or_default = |value: u32, default: usize| match value {
            0 => default,
            value => value as usize,
        };
        SessionOptions {
            max_context: or_default(self.context_length, defaults.max_context),
            batch: or_default(self.batch, defaults.batch),
            all_logits: false,
            ..defaults
        }
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
