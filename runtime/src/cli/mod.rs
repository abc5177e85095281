//! Parts of the command line kept out of main.rs: memory and sampling options shared by
//! the commands, the interactive chat, the benchmark's report, and the trace.

pub mod bench;
pub mod chat;
pub mod memory;
pub mod sampling;
pub mod trace;
