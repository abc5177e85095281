//! Parts of the command line kept out of main.rs: memory and sampling options shared by
//! the commands, and the interactive chat.

pub mod chat;
pub mod memory;
pub mod sampling;
