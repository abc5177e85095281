//! The handles and structs of lfm_edge.h, field for field, and their defaults. Enum
//! values and bools cross as fixed-size integers: a C caller can put any value in such
//! a field, and only an integer can hold it until it is checked.
//!
//! Every options struct starts with `struct_size`, which its `_default()` sets: the
//! library reads that many bytes and takes the defaults for fields past them, so a
//! later version can append fields without breaking apps built against this one.

use std::ffi::{c_char, c_void, CStr};
use std::{mem, ptr, slice};

use lfm_edge::{
    Constraint, GenerateOptions, GpuOptions, LoadOptions, SamplerConfig, SessionOptions,
};

use crate::chat_session::{stop_code, Outcome};
use crate::error::{FfiError, FfiResult};
use crate::model::{backend, constraint, nonzero, AppLoadOptions, AppModel};
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
    pub struct_size: u32,
    /// An `lfm_backend`.
    pub backend: i32,
    /// Bytes for the weights and every session of the model (0: no budget).
    pub vram_budget_bytes: u64,
    /// Lowers the adapter's storage binding size limit (0: the adapter's).
    pub max_binding_bytes: u64,
    /// Lowers the adapter's buffer size limit (0: the adapter's).
    pub max_buffer_bytes: u64,
    /// Tokens of one KV pool shared by the model's sessions (0: a cache per session).
    pub kv_pool_tokens: u32,
}

/// `lfm_session_options`; 0 in a field means its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LfmSessionOptions {
    pub struct_size: u32,
    pub context_length: u32,
    pub batch: u32,
}

/// `lfm_generate_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LfmGenerateOptions {
    pub struct_size: u32,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub penalty_window: u32,
    pub seed: u64,
    /// `n_stop_strings` NUL-terminated strings (NULL when there are none).
    pub stop_strings: *const *const c_char,
    pub n_stop_strings: usize,
    /// A C `bool`.
    pub ignore_eos: u8,
    // The second version of the struct adds the fields below.
    /// An `lfm_constraint_kind`; 64 bits wide so that it starts past the padding that
    /// ends the first version on every ABI.
    pub constraint_kind: u64,
    /// The JSON schema, regex or Lark grammar, NUL-terminated UTF-8 (NULL without one).
    pub constraint: *const c_char,
}

/// `lfm_constraint_kind` values.
pub const CONSTRAINT_NONE: u64 = 0;
pub const CONSTRAINT_JSON_SCHEMA: u64 = 1;
pub const CONSTRAINT_REGEX: u64 = 2;
pub const CONSTRAINT_LARK: u64 = 3;

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

/// `LFM_TOKEN_NONE`: the token of text held back for a stop string and let go at the end.
pub const TOKEN_NONE: u32 = u32::MAX;

/// An options struct with a leading `struct_size`.
pub(crate) trait Versioned: Copy {
    const NAME: &'static str;
    /// The sizes of every version of the struct, the current one last.
    const SIZES: &'static [usize];
    fn defaults() -> Self;
}

impl Versioned for LfmModelOptions {
    const NAME: &'static str = "lfm_model_options";
    const SIZES: &'static [usize] = &[mem::size_of::<Self>()];
    fn defaults() -> Self {
        lfm_model_options_default()
    }
}

impl Versioned for LfmSessionOptions {
    const NAME: &'static str = "lfm_session_options";
    const SIZES: &'static [usize] = &[mem::size_of::<Self>()];
    fn defaults() -> Self {
        lfm_session_options_default()
    }
}

impl Versioned for LfmGenerateOptions {
    const NAME: &'static str = "lfm_generate_options";
    /// The first version ends before `constraint_kind`: that field's 8-byte alignment
    /// is the struct's, so it starts where the first version's size (padding included)
    /// ends.
    const SIZES: &'static [usize] = &[
        mem::offset_of!(LfmGenerateOptions, constraint_kind),
        mem::size_of::<Self>(),
    ];
    fn defaults() -> Self {
        lfm_generate_options_default()
    }
}

/// An options struct as the caller's version has it, the fields past its
/// `struct_size` at their defaults; NULL: the defaults.
///
/// # Safety
/// `ptr` is NULL or points to a live struct of at least its `struct_size` bytes.
pub(crate) unsafe fn options_arg<T: Versioned>(ptr: *const T) -> FfiResult<T> {
    let mut value = T::defaults();
    if ptr.is_null() {
        return Ok(value);
    }
    let size = ptr.cast::<u32>().read_unaligned() as usize;
    if !T::SIZES.contains(&size) {
        let current = T::SIZES[T::SIZES.len() - 1];
        let name = T::NAME;
        return Err(FfiError::InvalidArgument(format!(
            "{name}.struct_size is {size}, not the size of a version of {name} this library \
             knows ({current} bytes now): start from {name}_default()"
        )));
    }
    ptr::copy_nonoverlapping(
        ptr.cast::<u8>(),
        ptr::addr_of_mut!(value).cast::<u8>(),
        size,
    );
    Ok(value)
}

#[no_mangle]
pub extern "C" fn lfm_model_options_default() -> LfmModelOptions {
    LfmModelOptions {
        struct_size: mem::size_of::<LfmModelOptions>() as u32,
        backend: 0,
        vram_budget_bytes: 0,
        max_binding_bytes: 0,
        max_buffer_bytes: 0,
        kv_pool_tokens: 0,
    }
}

#[no_mangle]
pub extern "C" fn lfm_session_options_default() -> LfmSessionOptions {
    let defaults = SessionOptions::default();
    LfmSessionOptions {
        struct_size: mem::size_of::<LfmSessionOptions>() as u32,
        context_length: defaults.max_context as u32,
        batch: defaults.batch as u32,
    }
}

#[no_mangle]
pub extern "C" fn lfm_generate_options_default() -> LfmGenerateOptions {
    let defaults = GenerateOptions::default();
    let sampler = defaults.sampler;
    LfmGenerateOptions {
        struct_size: mem::size_of::<LfmGenerateOptions>() as u32,
        max_tokens: defaults.max_tokens as u32,
        temperature: sampler.temperature,
        top_k: sampler.top_k as u32,
        top_p: sampler.top_p,
        min_p: sampler.min_p,
        repetition_penalty: sampler.repetition_penalty,
        presence_penalty: sampler.presence_penalty,
        frequency_penalty: sampler.frequency_penalty,
        penalty_window: sampler.penalty_window as u32,
        seed: sampler.seed,
        stop_strings: ptr::null(),
        n_stop_strings: 0,
        ignore_eos: u8::from(defaults.ignore_eos),
        constraint_kind: CONSTRAINT_NONE,
        constraint: ptr::null(),
    }
}

impl LfmModelOptions {
    pub(crate) fn to_load_options(self) -> FfiResult<AppLoadOptions> {
        Ok(AppLoadOptions {
            load: LoadOptions {
                gpu: GpuOptions {
                    backend: backend(self.backend)?,
                    max_binding_size: nonzero(self.max_binding_bytes),
                    max_buffer_size: nonzero(self.max_buffer_bytes),
                    ..GpuOptions::default()
                },
                vram_budget: nonzero(self.vram_budget_bytes),
            },
            kv_pool_tokens: self.kv_pool_tokens,
        })
    }
}

impl LfmGenerateOptions {
    /// # Safety
    /// `stop_strings` is NULL or points to `n_stop_strings` pointers, each NULL or a
    /// NUL-terminated string.
    pub(crate) unsafe fn to_options(self) -> FfiResult<GenerateOptions> {
        let stops = match (self.stop_strings.is_null(), self.n_stop_strings) {
            (_, 0) => &[][..],
            (true, _) => return Err(FfiError::Null("stop_strings")),
            (false, n) => slice::from_raw_parts(self.stop_strings, n),
        };
        let stop_strings = stops
            .iter()
            .enumerate()
            .map(|(i, &text)| {
                if text.is_null() {
                    return Err(FfiError::InvalidArgument(format!(
                        "stop_strings[{i}] is NULL"
                    )));
                }
                CStr::from_ptr(text)
                    .to_str()
                    .map(str::to_string)
                    .map_err(|_| {
                        FfiError::InvalidArgument(format!("stop_strings[{i}] is not valid UTF-8"))
                    })
            })
            .collect::<FfiResult<Vec<_>>>()?;
        Ok(GenerateOptions {
            max_tokens: self.max_tokens as usize,
            sampler: SamplerConfig {
                temperature: self.temperature,
                top_k: self.top_k as usize,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repetition_penalty,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                penalty_window: self.penalty_window as usize,
                seed: self.seed,
            },
            stop_strings,
            ignore_eos: self.ignore_eos != 0,
            constraint: self.constraint()?,
        })
    }

    /// # Safety
    /// `constraint` is NULL or a NUL-terminated string.
    unsafe fn constraint(&self) -> FfiResult<Option<Constraint>> {
        let text =
            if self.constraint.is_null() {
                None
            } else {
                Some(CStr::from_ptr(self.constraint).to_str().map_err(|_| {
                    FfiError::InvalidArgument("constraint is not valid UTF-8".into())
                })?)
            };
        constraint(self.constraint_kind, "constraint_kind", text)
    }
}

impl From<&Outcome> for LfmGeneration {
    fn from(outcome: &Outcome) -> Self {
        LfmGeneration {
            prompt_tokens: outcome.prompt_tokens,
            generated_tokens: outcome.generated_tokens,
            stop_reason: stop_code(outcome.stop),
        }
    }
}
