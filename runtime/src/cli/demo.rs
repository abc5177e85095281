//! The demo model that runs without `--model`: scripts/train_demo.py trains it and
//! scripts/make_demo_gguf.py makes the GGUF file that models/ keeps. The binary
//! carries a copy, so that one installed away from the source tree still has it.

use std::path::{Path, PathBuf};

use lfm_edge::{Error, Result};

const FILE_NAME: &str = "lfm2-demo-Q8_0.gguf";
const IN_SOURCE_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lfm2-demo-Q8_0.gguf");
static BYTES: &[u8] = include_bytes!("../../../models/lfm2-demo-Q8_0.gguf");

/// Where the demo model is: in the source tree when the binary runs from it, else the
/// binary's copy, written once into the user's cache folder.
pub fn path() -> Result<PathBuf> {
    locate(Path::new(IN_SOURCE_TREE), cache_dir())
}

/// `source` when it holds the demo model, else the copy in `cache`, written if missing.
fn locate(source: &Path, cache: Option<PathBuf>) -> Result<PathBuf> {
    if is_copy(source) {
        return Ok(source.to_path_buf());
    }
    let dir = cache.ok_or_else(|| {
        Error::Input(
            "no --model given, and no cache folder for the demo model (set HOME or \
             XDG_CACHE_HOME): pass --model PATH or --model hf:OWNER/REPO"
                .into(),
        )
    })?;
    let path = dir.join(FILE_NAME);
    if !is_copy(&path) {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // Written whole under another name, then renamed: a reader never sees half.
        let partial = dir.join(format!("{FILE_NAME}.{}.partial", std::process::id()));
        std::fs::write(&partial, BYTES).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(path)
}

/// Whether `path` holds the demo model as this binary knows it.
fn is_copy(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes == BYTES)
}

fn cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("lfm-edge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_away_from_the_source_tree_writes_its_copy_once() {
        let cache = tempfile::tempdir().unwrap();
        let missing = cache.path().join("no-source-tree/model.gguf");
        let dir = cache.path().join("lfm-edge");
        let path = locate(&missing, Some(dir.clone())).unwrap();
        assert_eq!(path, dir.join(FILE_NAME));
        assert_eq!(std::fs::read(&path).unwrap(), BYTES);
        // A damaged copy is replaced; a good one is used as it is.
        std::fs::write(&path, b"GGUF").unwrap();
        assert_eq!(locate(&missing, Some(dir.clone())).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), BYTES);
        assert!(locate(&missing, None).is_err());
        let source = Path::new(IN_SOURCE_TREE);
        assert_eq!(locate(source, Some(dir)).unwrap(), source);
    }
}
