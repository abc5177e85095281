//! The crate's one error type. Every variant names what was being read or checked
//! (file, tensor, limit) so a failure can be acted on without a debugger.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Weights { path: PathBuf, message: String },

    #[error("tensor {name} ({path}): {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },

    /// A GGUF file that cannot be read or lacks what is asked of it; the message names
    /// the metadata key or tensor.
    #[error("{path}: {message}")]
    Gguf { path: PathBuf, message: String },

    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),

    #[error("{what} needs {needed} bytes, above the adapter's {limit} of {available} bytes")]
    Limit {
        what: String,
        limit: &'static str,
        needed: u64,
        available: u64,
    },

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error("{0}")]
    Input(String),

    /// A session with no room for more tokens, under `ContextOverflow::Error`.
    #[error("context full: {held} cached + {new} new tokens exceed the context of {capacity}")]
    ContextFull {
        held: usize,
        new: usize,
        capacity: usize,
    },

    /// A KV pool shared by several sessions has no free block left.
    #[error("the KV pool is full: its {blocks} blocks of {block_tokens} tokens are all in use")]
    KvPoolFull { blocks: usize, block_tokens: usize },

    /// What a `--vram-budget` cannot hold, with the numbers.
    #[error("VRAM budget of {budget} bytes: {message}")]
    Budget { budget: u64, message: String },

    /// A saved session that cannot be restored here; `origin` names the file or "bytes".
    #[error("session state {origin}: {message}")]
    SessionFile { origin: String, message: String },

    /// A cancel hook stopped feeding a prompt between two batches; the session holds
    /// the batches fed before it.
    #[error("cancelled")]
    Cancelled,

    /// A `--model hf:…` that could not be fetched; `spec` as the user wrote it.
    #[error("{spec}: {message}")]
    Hub { spec: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn gguf(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Gguf {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(
        path: impl Into<PathBuf>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Tensor {
            path: path.into(),
            name: name.into(),
            message: message.into(),
        }
    }
}
