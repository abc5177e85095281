//! lfm-edge for apps: a stable C ABI (declared in `ffi/include/lfm_edge.h`, built as a
//! cdylib and a staticlib) and, with the `jni` feature, the JNI entry points of the
//! Android library in `android/`. Both are thin boundaries over the same safe core:
//! [`model::load_model`] (the library's loader) and [`chat_session::ChatSession`]
//! (raw generation plus multi-turn chat on the library's generation loop).
//!
//! No panic crosses either boundary: each entry point catches unwinding and reports it
//! as an error (`LFM_ERROR_INTERNAL`, or a Java `LfmException`).

pub mod capi;
pub mod chat_session;
pub mod error;
#[cfg(feature = "jni")]
mod jni_bindings;
pub mod model;
mod session_file;
pub mod shared_session;

pub use error::{FfiError, LfmStatus};
