//! `GgufFile`: a parsed GGUF file over its memory map (or any owned buffer), with typed
//! metadata look-ups and tensors handed out as slices of the map.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::parse::{parse, Parsed};
use super::tensor::{GgufTensor, TensorInfo};
use super::value::Value;
use crate::error::{Error, Result};
use crate::files::open_regular;

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }
}

pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    parsed: Parsed,
}

impl GgufFile {
    /// Memory-maps `path` and checks its header, metadata and tensor table.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let (file, _) = open_regular(path)?;
        // SAFETY: the map is read-only; a file rewritten while loaded is outside what any
        // runtime can defend against, as with llama.cpp's mmap loading.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        GgufFile::new(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Parses a GGUF image held in memory; `path` only names it in messages.
    pub fn from_bytes(bytes: Vec<u8>, path: impl Into<PathBuf>) -> Result<GgufFile> {
        GgufFile::new(path.into(), Storage::Owned(bytes))
    }

    fn new(path: PathBuf, storage: Storage) -> Result<GgufFile> {
        let parsed = parse(&storage).map_err(|message| Error::gguf(&path, message))?;
        Ok(GgufFile {
            path,
            storage,
            parsed,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    /// `general.alignment`, or the default of 32.
    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// Byte offset of the data section in the file; tensor offsets are relative to it.
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    /// Every key and value, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.parsed.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.parsed
            .key_index
            .get(key)
            .map(|&i| &self.parsed.metadata[i].1)
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::gguf(&self.path, message)
    }

    /// The value of `key` converted by `convert`, or an error naming the key, what was
    /// expected and what was found.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T> {
        let value = self
            .get(key)
            .ok_or_else(|| self.error(format!("metadata key {key} is missing")))?;
        convert(value).ok_or_else(|| {
            self.error(format!(
                "metadata key {key}: expected {expected}, found {}",
                value.describe()
            ))
        })
    }

    /// `get(file, key)` where the file has `key`, `None` where it has not: for keys that
    /// may be absent but must have the right type when present.
    pub fn optional<'a, T>(
        &'a self,
        key: &str,
        get: impl FnOnce(&'a Self, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            Some(_) => get(self, key).map(Some),
            None => Ok(None),
        }
    }

    /// Any integer type, as long as the value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.typed(key, "an integer that fits in u32", integer)
    }

    /// f32, or f64 narrowed to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, "f32", float)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "bool", |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, "string", Value::as_str)
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        self.typed(key, "array", Value::as_array)
    }

    /// An array whose every element `convert` accepts.
    fn typed_array<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.typed(key, &format!("array of {expected}"), |value| {
            value.as_array()?.iter().map(convert).collect()
        })
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.typed_array(key, "string", Value::as_str)
    }

    /// Any integer element type, each value fitting in u32 (per-layer head counts).
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>> {
        self.typed_array(key, "integers that fit in u32", integer)
    }

    /// Any integer element type, each value fitting in i32 (token types).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.typed_array(key, "integers that fit in i32", integer)
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.typed_array(key, "f32", float)
    }

    /// Every tensor's info, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.parsed.tensors.iter()
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.parsed
            .tensor_index
            .get(name)
            .map(|&i| &self.parsed.tensors[i])
    }

    /// The tensor called `name` with its bytes, if its type is one the runtime supports.
    pub fn tensor(&self, name: &str) -> Result<GgufTensor<'_>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.error(format!("tensor {name} is not in the file")))?;
        if !info.ggml_type.is_supported() {
            return Err(self.error(format!(
                "tensor {name} has type {}, which is not supported",
                info.ggml_type
            )));
        }
        // parse() checked start + n_bytes against the file's size.
        let bytes = &self.storage[info.start..info.start + info.n_bytes];
        Ok(GgufTensor { info, bytes })
    }
}

fn integer<T: TryFrom<i128>>(value: &Value) -> Option<T> {
    T::try_from(value.as_i128()?).ok()
}

fn float(value: &Value) -> Option<f32> {
    match *value {
        Value::F32(v) => Some(v),
        Value::F64(v) => Some(v as f32),
        _ => None,
    }
}
