//! Loading a model for an app through the library's one loader, plus what apps add:
//! a KV pool its sessions may share.

use std::sync::Arc;

use lfm_edge::kv_pool::{blocks_for, BLOCK_TOKENS};
use lfm_edge::{
    Backend, Constraint, ConstraintKind, KvDtype, KvPool, LoadOptions, Model, Session,
    SessionOptions,
};

use crate::capi::{CONSTRAINT_JSON_SCHEMA, CONSTRAINT_LARK, CONSTRAINT_NONE, CONSTRAINT_REGEX};
use crate::chat_session::ChatSession;
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

/// `lfm_constraint_kind` (ABI, never renumber; JNI and Swift number kinds the same) and
/// its text to the library's constraint. `kind_name` is the kind's field as the caller
/// spells it. A text that does not parse is INVALID_ARGUMENT, as every other option.
pub fn constraint(code: u64, kind_name: &str, text: Option<&str>) -> FfiResult<Option<Constraint>> {
    let kind = match code {
        CONSTRAINT_NONE => return Ok(None),
        CONSTRAINT_JSON_SCHEMA => ConstraintKind::JsonSchema,
        CONSTRAINT_REGEX => ConstraintKind::Regex,
        CONSTRAINT_LARK => ConstraintKind::Lark,
        other => {
            return Err(FfiError::InvalidArgument(format!(
                "{kind_name} {other} is not an lfm_constraint_kind"
            )))
        }
    };
    let text = text.ok_or(FfiError::Null("constraint"))?;
    Constraint::of_kind(kind, text)
        .map(Some)
        .map_err(|e| FfiError::InvalidArgument(e.to_string()))
}

/// 0 means "none" in the option structs of every binding.
pub fn nonzero(value: u64) -> Option<u64> {
    (value != 0).then_some(value)
}

/// A model as apps hold it: the weights, and the KV pool its sessions share when it
/// was loaded with one.
pub struct AppModel {
    pub model: Arc<Model>,
    pool: Option<Arc<KvPool>>,
}

/// How an app loads a model: `lfm_model_options` and its Kotlin and Swift mirrors.
pub struct AppLoadOptions {
    pub load: LoadOptions,
    /// 0: each session has a KV cache of its own; else one pool of this many tokens
    /// that all the model's sessions take blocks from as they grow.
    pub kv_pool_tokens: u32,
}

/// Opens the model `spec` names (a folder, a .gguf file, or hf:OWNER/REPO[:FILE]),
/// with a shared KV pool unless its size is 0.
pub fn load_model(spec: &str, options: &AppLoadOptions) -> FfiResult<AppModel> {
    let model = Model::open(spec, &options.load)?;
    let pool = match options.kv_pool_tokens {
        0 => None,
        tokens => Some(model.kv_pool(KvDtype::default(), blocks_for(tokens as usize))?),
    };
    Ok(AppModel { model, pool })
}

impl AppModel {
    /// A session, its cache in the shared pool when there is one. A `context_length`
    /// of 0 is the default: the pool's size, or all that a VRAM budget has left, or
    /// 4096 (the session fits its context to the budget when created).
    pub fn open_session(&self, context_length: u32, batch: u32) -> FfiResult<ChatSession> {
        let defaults = SessionOptions::default();
        let context = match (context_length, &self.pool, self.model.vram_budget()) {
            (0, Some(pool), _) => pool.blocks() * BLOCK_TOKENS,
            (0, None, Some(_)) => usize::MAX,
            (0, None, None) => defaults.max_context,
            (n, _, _) => n as usize,
        };
        let options = SessionOptions {
            max_context: context,
            batch: if batch == 0 {
                defaults.batch
            } else {
                batch as usize
            },
            all_logits: false,
            ..defaults
        };
        let session = match &self.pool {
            Some(pool) => Session::new_in(pool, self.model.clone(), &options)?,
            None => Session::new(self.model.clone(), &options)?,
        };
        Ok(ChatSession::new(session))
    }
}

/// Ids as `Tokenizer.encode` gives them, with or without the special tokens (bos).
pub fn tokenize(model: &Model, text: &str, add_special_tokens: bool) -> FfiResult<Vec<u32>> {
    Ok(model.tokenizer.encode_with(text, add_special_tokens)?)
}
