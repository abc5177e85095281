//! HF safetensors checkpoints, single-file or sharded, memory-mapped. Tensors are handed
//! out as byte slices into the maps: nothing is copied or converted on the CPU.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};
use serde::Deserialize;

use crate::config::Architecture;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::files::open_regular;
use crate::names::HfNames;
use crate::weights::{layer_count, read_text, TensorView, WeightSource};

/// One tensor a safetensors header lists.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range inside the file (header included in the offset).
    pub start: usize,
    pub end: usize,
}

/// A tensor of a checkpoint: which of its files, and where in it.
struct Entry {
    file: usize,
    tensor: TensorEntry,
}

pub struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    tensors: HashMap<String, Entry>,
    /// How its tensors are named (LFM2's names until [`Checkpoint::named`] says).
    names: HfNames,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The weight files of the checkpoint in `dir`: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists (which need not exist yet: the hub module
/// downloads them from this list). Those that exist are regular files.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = listed_files(dir)?;
    for path in files.iter().filter(|p| p.exists()) {
        open_regular(path)?;
    }
    Ok(files)
}

/// The files `dir`'s checkpoint names, whether or not they exist.
fn listed_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.exists() {
        Ok(vec![single])
    } else if index.exists() {
        let text = read_text(&index)?;
        let parsed: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::Weights {
            path: index.clone(),
            message: format!("invalid shard index: {e}"),
        })?;
        let mut names: Vec<String> = parsed.weight_map.into_values().collect();
        names.sort();
        names.dedup();
        Ok(names.into_iter().map(|n| dir.join(n)).collect())
    } else {
        Err(Error::Weights {
            path: dir.to_path_buf(),
            message: "neither model.safetensors nor model.safetensors.index.json found".into(),
        })
    }
}

impl Checkpoint {
    /// Opens `model.safetensors`, or the shards that `model.safetensors.index.json` lists.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut checkpoint = Checkpoint {
            files: Vec::new(),
            tensors: HashMap::new(),
            names: HfNames::lfm2(),
        };
        for path in weight_files(dir)? {
            checkpoint.add_file(path)?;
        }
        Ok(checkpoint)
    }

    /// The checkpoint read as `architecture` names its tensors.
    pub fn named(mut self, architecture: Architecture) -> Self {
        self.names = HfNames::new(architecture, |name| self.tensors.contains_key(name));
        self
    }

    fn add_file(&mut self, path: PathBuf) -> Result<()> {
        let (file, _) = open_regular(&path)?;
        // SAFETY: the map is read-only; a checkpoint rewritten while loaded is outside
        // what any runtime can defend against, as with llama.cpp's mmap loading.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let file_index = self.files.len();
        for (name, tensor) in read_header(&map, &path)? {
            if self.tensors.contains_key(&name) {
                return Err(Error::tensor(&path, name, "appears in more than one shard"));
            }
            let entry = Entry {
                file: file_index,
                tensor,
            };
            self.tensors.insert(name, entry);
        }
        self.files.push((path, map));
        Ok(())
    }
}

/// The tensors the header of `bytes`, a whole safetensors file, lists: each of a dtype
/// the runtime reads and inside the file. `path` names the file in messages.
pub fn read_header(bytes: &[u8], path: &Path) -> Result<Vec<(String, TensorEntry)>> {
    let bad = |message: String| Error::Weights {
        path: path.to_path_buf(),
        message,
    };
    // The safetensors crate checks the header and that every offset lies in the file.
    let (header_len, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let data_start = 8 + header_len;
    let mut tensors = Vec::new();
    for (name, info) in metadata.tensors() {
        let dtype = match info.dtype {
            StDtype::F32 => DType::F32,
            StDtype::F16 => DType::F16,
            StDtype::BF16 => DType::BF16,
            other => {
                return Err(Error::tensor(
                    path,
                    name,
                    format!("dtype {other:?} is not supported (f32, f16, bf16)"),
                ))
            }
        };
        let (start, end) = info.data_offsets;
        let (start, end) = (data_start + start, data_start + end);
        if end > bytes.len() {
            return Err(bad(format!(
                "tensor {name} ends at byte {end}, past the end of the file ({} bytes)",
                bytes.len()
            )));
        }
        let shape = info.shape.clone();
        tensors.push((
            name,
            TensorEntry {
                dtype,
                shape,
                start,
                end,
            },
        ));
    }
    Ok(tensors)
}

impl WeightSource for Checkpoint {
    /// The tensor called `name`, or an error naming it.
    fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let name = self.names.to_file(name);
        let (stored_name, entry) = self.tensors.get_key_value(name.as_ref()).ok_or_else(|| {
            Error::tensor(self.path(), name.as_ref(), "missing from the checkpoint")
        })?;
        let (path, map) = &self.files[entry.file];
        let tensor = &entry.tensor;
        Ok(TensorView {
            name: stored_name,
            dtype: tensor.dtype,
            shape: tensor.shape.clone(),
            bytes: Cow::Borrowed(&map[tensor.start..tensor.end]),
            path,
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(self.names.to_file(name).as_ref())
    }

    fn layer_count(&self) -> usize {
        let prefix = self.names.layers_prefix();
        layer_count(self.tensors.keys().map(String::as_str), &prefix)
    }

    /// Where the checkpoint lives, for messages: the file, or the first shard's folder.
    fn path(&self) -> PathBuf {
        match self.files.as_slice() {
            [(path, _)] => path.clone(),
            [(path, _), ..] => path.parent().unwrap_or(path).to_path_buf(),
            [] => PathBuf::new(),
        }
    }
}
