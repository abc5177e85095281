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
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
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
