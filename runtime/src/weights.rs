//! Where a model's tensors come from: a safetensors checkpoint or a GGUF file, both
//! addressed by HF tensor names so the model code has one vocabulary.

use std::path::{Path, PathBuf};

use crate::dtype::DType;
use crate::error::{Error, Result};

/// One tensor, borrowed from its memory map.
pub struct TensorView<'a> {
    /// The name the source stores it under (HF's, or GGUF's for a GGUF file).
    pub name: &'a str,
    pub dtype: DType,
    /// PyTorch order, outermost first.
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
    pub path: &'a Path,
}

impl TensorView<'_> {
    /// Checks the shape against what the config implies.
    pub fn expect_shape(&self, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::tensor(
                self.path,
                self.name,
                format!(
                    "shape {:?}, expected {:?} from the model's config",
                    self.shape, expected
                ),
            ));
        }
        Ok(())
    }
}

/// Tensors by HF name (`model.layers.0.conv.in_proj.weight`, …).
pub trait WeightSource {
    fn get(&self, name: &str) -> Result<TensorView<'_>>;
    fn contains(&self, name: &str) -> bool;
    /// The file or folder, for messages.
    fn path(&self) -> PathBuf;
}
