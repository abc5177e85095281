//! What can go wrong behind the C and JNI boundaries, and the status code each failure
//! reports. The codes are ABI (`lfm_status` in lfm_edge.h, `LfmException.code` in
//! Java): never renumber them, only append.

use lfm_edge::Error;

/// `lfm_status`: what every C function returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LfmStatus {
    Ok = 0,
    NullArgument = 1,
    InvalidArgument = 2,
    Io = 3,
    Model = 4,
    NoAdapter = 5,
    Gpu = 6,
    ContextFull = 7,
    BufferTooSmall = 8,
    Busy = 9,
    Internal = 10,
    Budget = 11,
}

#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error(transparent)]
    Runtime(#[from] Error),

    #[error("{0} is NULL")]
    Null(&'static str),

    #[error("{0}")]
    InvalidArgument(String),

    #[error("context full: {held} tokens held + {new} new exceed the context of {capacity}; reset the session or open one with a longer context")]
    ContextFull {
        held: usize,
        new: usize,
        capacity: usize,
    },

    /// `what` counts the buffer's items: "tokens", "bytes".
    #[error("{needed} {what} do not fit the buffer of {capacity}")]
    BufferTooSmall {
        needed: usize,
        capacity: usize,
        what: &'static str,
    },

    #[error("the session is busy: it takes one call at a time, and a token callback must not call back into its own session")]
    Busy,

    /// A bug: a panic caught at the boundary, or a session left unusable by one.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type FfiResult<T> = std::result::Result<T, FfiError>;

impl FfiError {
    pub fn status(&self) -> LfmStatus {
        match self {
            FfiError::Runtime(e) => match e {
                Error::Io { .. } | Error::Hub { .. } => LfmStatus::Io,
                Error::Config { .. }
                | Error::Weights { .. }
                | Error::Tensor { .. }
                | Error::Tokenizer { .. }
                | Error::Gguf { .. } => LfmStatus::Model,
                Error::NoAdapter(_) => LfmStatus::NoAdapter,
                Error::Limit { .. } | Error::Gpu(_) => LfmStatus::Gpu,
                Error::Input(_) | Error::SessionFile { .. } => LfmStatus::InvalidArgument,
                Error::ContextFull { .. } | Error::KvPoolFull { .. } => LfmStatus::ContextFull,
                Error::Budget { .. } => LfmStatus::Budget,
                // Callers turn a cancel into a stop reason; it never crosses.
                Error::Cancelled => LfmStatus::Internal,
            },
            FfiError::Null(_) => LfmStatus::NullArgument,
            FfiError::InvalidArgument(_) => LfmStatus::InvalidArgument,
            FfiError::ContextFull { .. } => LfmStatus::ContextFull,
            FfiError::BufferTooSmall { .. } => LfmStatus::BufferTooSmall,
            FfiError::Busy => LfmStatus::Busy,
            FfiError::Internal(_) => LfmStatus::Internal,
        }
    }

    /// The message of a panic caught at the boundary.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> FfiError {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        FfiError::Internal(format!("panic: {message}"))
    }
}
