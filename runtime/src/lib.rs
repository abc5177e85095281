//! lfm-edge: Liquid AI's LFM2 models on any GPU through wgpu.
//!
//! A token's path: [`Model::load`] reads config, tokenizer and weights (kept at file
//! precision in VRAM); a [`Session`] owns the KV cache and conv state and records the
//! model's forward graph once; [`Session::feed`] runs the graph over a batch of tokens
//! and reads back logits; a [`Sampler`] picks the next token.

pub mod config;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod model;
pub mod npy;
pub mod ops;
pub mod safetensors;
pub mod sampler;
pub mod session;
mod state;
pub mod tokenizer;

pub use config::{LayerKind, ModelConfig};
pub use error::{Error, Result};
pub use gpu::{Backend, Gpu, GpuOptions};
pub use model::Model;
pub use sampler::Sampler;
pub use session::{Session, SessionOptions};
pub use tokenizer::{TextStream, Tokenizer};
