//! lfm-edge: Liquid AI's LFM2 models on any GPU through wgpu.
//!
//! A token's path: [`Model::load`] reads config, tokenizer and weights (kept at file
//! precision in VRAM); a [`Session`] owns the KV cache and conv state and records the
//! model's forward graph once; [`Session::feed`] runs the graph over a batch of tokens
//! and reads back logits; a [`Sampler`] picks the next token, and [`generate`] loops
//! over sampling, streaming and feeding. A session can rewind, fork, shift its context
//! and be saved to bytes. Loaded within a [`VramBudget`], a model and its sessions
//! reserve their bytes before allocating them, a session's context being what the
//! budget holds; a [`MemoryPlan`] answers the same ahead of time.

pub mod bench;
pub mod budget;
pub mod chat;
pub mod config;
pub mod constraint;
pub mod dtype;
pub mod error;
pub mod files;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod hub;
pub mod kv_pool;
pub mod model;
mod names;
pub mod npy;
pub mod ops;
pub mod perplexity;
pub mod safetensors;
pub mod sampler;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
mod state;
pub mod stop;
pub mod tokenizer;
pub mod tools;
pub mod units;
pub mod vram;
pub mod weights;

pub use budget::MemoryPlan;
pub use chat::{ChatTemplate, Message};
pub use config::{LayerKind, ModelConfig};
pub use constraint::{Constraint, ConstraintKind, Grammar};
pub use dtype::KvDtype;
pub use error::{Error, Result};
pub use generate::{
    generate, Chunk, Flow, GenerateOptions, Generation, Piece, StopReason, TokenStream,
};
pub use gpu::{Backend, Gpu, GpuOptions};
pub use kv_pool::KvPool;
pub use model::{LoadOptions, Model};
pub use sampler::{Sampler, SamplerConfig};
pub use session::{ContextOverflow, Session, SessionOptions};
pub use tokenizer::{TextStream, Tokenizer};
pub use tools::{ToolCall, ToolChoice, Tools};
pub use vram::VramBudget;
