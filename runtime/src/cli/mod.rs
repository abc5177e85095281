//! The commands of the command line, one module each, and what they share: the model
//! they open and its memory options, sampling options, token ids, the demo model.

#[macro_use]
pub mod output;

pub mod bench;
pub mod chat;
pub mod demo;
pub mod generate;
pub mod ids;
pub mod info;
pub mod logits;
pub mod memory;
pub mod model;
pub mod perplexity;
pub mod sampling;
#[cfg(feature = "server")]
pub mod serve;
pub mod trace;
