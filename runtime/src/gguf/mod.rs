//! GGUF, llama.cpp's model format: a reader over the memory-mapped file (versions 2 and
//! 3), ggml's tensor types, a CPU dequantizer used as the reference for the GPU kernels,
//! and the tokenizer rebuilt from the file's metadata.
//!
//! Layout of a file: magic "GGUF", version, tensor count, metadata count; the metadata
//! key/values; the tensor table (name, dimensions innermost first, ggml type, offset);
//! padding to `general.alignment`; the data section, where each tensor starts at its
//! offset (a multiple of the alignment).

mod cursor;
mod dequant;
mod file;
mod ggml_type;
mod model;
mod parse;
mod tensor;
mod tokenizer;
mod value;
mod weights;

pub use dequant::dequantize;
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use model::model_config;
pub use tensor::{GgufTensor, TensorInfo};
pub use tokenizer::{tokenizer_from_gguf, GgufTokenizer};
pub use value::{Value, ValueType};
pub use weights::GgufWeights;
