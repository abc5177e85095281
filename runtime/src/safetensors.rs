//! HF safetensors checkpoints, single-file or sharded, memory-mapped. Tensors are handed
//! out as byte slices into the maps: nothing is copied or converted on the CPU.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};
use serde::Deserialize;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::{TensorView, WeightSource};

struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range inside the file (header included in the offset).
    start: usize,
    end: usize,
}

pub struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    tensors: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The weight files of the checkpoint in `dir`: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists (which need not exist yet: the hub module
/// downloads them from this list).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.exists() {
        Ok(vec![single])
    } else if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
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
        };
        for path in weight_files(dir)? {
            checkpoint.add_file(path)?;
        }
        Ok(checkpoint)
    }

    fn add_file(&mut self, path: PathBuf) -> Result<()> {
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only; a checkpoint rewritten while loaded is outside
        // what any runtime can defend against, as with llama.cpp's mmap loading.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let bad = |message: String| Error::Weights {
            path: path.clone(),
            message,
        };
        // The safetensors crate checks the header and that every offset lies in the file.
        let (header_len, metadata) = SafeTensors::read_metadata(&map[..])
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let data_start = 8 + header_len;
        let file_index = self.files.len();
        for (name, info) in metadata.tensors() {
            let dtype = match info.dtype {
                StDtype::F32 => DType::F32,
                StDtype::F16 => DType::F16,
                StDtype::BF16 => DType::BF16,
                other => {
                    return Err(Error::tensor(
                        &path,
                        name,
                        format!("dtype {other:?} is not supported (f32, f16, bf16)"),
                    ))
                }
            };
            let (start, end) = info.data_offsets;
            let (start, end) = (data_start + start, data_start + end);
            if end > map.len() {
                return Err(bad(format!(
                    "tensor {name} ends at byte {end}, past the end of the file ({} bytes)",
                    map.len()
                )));
            }
            if self.tensors.contains_key(&name) {
                return Err(Error::tensor(&path, name, "appears in more than one shard"));
            }
            let entry = Entry {
                file: file_index,
                dtype,
                shape: info.shape.clone(),
                start,
                end,
            };
            self.tensors.insert(name, entry);
        }
        self.files.push((path, map));
        Ok(())
    }
}

impl WeightSource for Checkpoint {
    /// The tensor called `name`, or an error naming it.
    fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let (stored_name, entry) = self
            .tensors
            .get_key_value(name)
            .ok_or_else(|| Error::tensor(self.path(), name, "missing from the checkpoint"))?;
        let (path, map) = &self.files[entry.file];
        Ok(TensorView {
            name: stored_name,
            dtype: entry.dtype,
            shape: entry.shape.clone(),
            bytes: &map[entry.start..entry.end],
            path,
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
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
