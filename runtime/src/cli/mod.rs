//! Parts of the command line kept out of main.rs: memory and sampling options shared by
//! the commands, the interactive chat, and the benchmark's report.

pub mod bench;
pub mod chat;
pub mod memory;
pub mod sampling;
