//! Where a model's tensors come from: a safetensors checkpoint or a GGUF file, both
//! addressed by HF tensor names so the model code has one vocabulary.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::files;

/// One tensor, borrowed from its memory map (or, where a format stores it reordered,
/// its bytes put back in the order the model code expects).
pub struct TensorView<'a> {
    /// The name the source stores it under (HF's, or GGUF's for a GGUF file).
    pub name: &'a str,
    pub dtype: DType,
    /// PyTorch order, outermost first.
    pub shape: Vec<usize>,
    pub bytes: Cow<'a, [u8]>,
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
    /// How many layers the tensors number: one more than the highest layer index.
    fn layer_count(&self) -> usize;
}

/// One more than the highest `i` among tensors named `{prefix}{i}.…`; 0 when none is.
pub(crate) fn layer_count<'a>(names: impl Iterator<Item = &'a str>, prefix: &str) -> usize {
    names
        .filter_map(|name| {
            name.strip_prefix(prefix)?
                .split_once('.')?
                .0
                .parse::<usize>()
                .ok()
        })
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0)
}

/// The text of `path`, read only if it is a regular file (a FIFO would block) and no
/// further than its length.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let (mut file, len) = files::open_regular(path)?;
    let mut bytes = Vec::new();
    files::read_exactly(&mut file, path, len, &mut bytes)?;
    String::from_utf8(bytes)
        .map_err(|e| Error::io(path, io::Error::new(io::ErrorKind::InvalidData, e)))
}
