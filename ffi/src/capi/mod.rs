//! The C ABI declared in `ffi/include/lfm_edge.h`. Every function checks each pointer
//! argument for NULL, runs inside `catch_unwind`, and reports a failure as an
//! `lfm_status` whose message `lfm_last_error_message` returns on the same thread.

mod boundary;
mod generate;
mod model;
mod session;
mod tools;
mod types;

pub use boundary::{lfm_last_error_message, lfm_version};
pub use generate::{lfm_chat, lfm_chat_add, lfm_generate, lfm_generate_tokens};
pub use model::{lfm_model_free, lfm_model_load, lfm_tokenize};
pub use session::{
    lfm_session_cancel, lfm_session_context, lfm_session_free, lfm_session_load, lfm_session_new,
    lfm_session_reset, lfm_session_save,
};
pub use tools::{lfm_chat_set_tools, lfm_chat_tool_calls};
pub use types::{
    lfm_generate_options_default, lfm_model_options_default, lfm_session_options_default,
    LfmGenerateOptions, LfmGeneration, LfmModel, LfmModelOptions, LfmSession, LfmSessionOptions,
    LfmTokenCallback, CONSTRAINT_JSON_SCHEMA, CONSTRAINT_LARK, CONSTRAINT_NONE, CONSTRAINT_REGEX,
    TOKEN_NONE,
};

/// What the header promises about threads, checked by the compiler: a model may be used
/// from any thread and shared, a session moved between threads (and cancelled from any).
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<LfmModel>();
    shareable::<LfmSession>();
};
