//! Parses a GGUF file (versions 2 and 3, little-endian) from its bytes: header, metadata,
//! tensor table, data section. Everything is checked against the file's size before any
//! tensor data is touched; the first problem found is returned, naming the key or tensor.

use std::collections::HashMap;

use super::cursor::{Cursor, Parse};
use super::tensor::{check_id_42, read_tensor_info, TensorInfo, MIN_TENSOR_INFO_SIZE};
use super::value::{Value, ValueType};

const MAGIC: &[u8; 4] = b"GGUF";
const ALIGNMENT_KEY: &str = "general.alignment";
const DEFAULT_ALIGNMENT: u32 = 32;
/// Bytes of the smallest key/value: key length, value type, a one-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Arrays may nest (the spec allows it, ggml does not write it); a bound keeps a file of
/// nested array headers from exhausting the stack.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Array elements in all the metadata together. A `Value` takes up to 32 times the bytes
/// of its encoding, so the file's size alone would not bound the memory; real files hold
/// well under a million (a 256k vocabulary, its token types and merges).
const MAX_ARRAY_VALUES: usize = 1 << 22;

pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the data section: the end of the tensor table, aligned.
    pub data_offset: u64,
}

pub(crate) fn parse(bytes: &[u8]) -> Parse<Parsed> {
    let mut cursor = Cursor::new(bytes);
    let version = read_header(&mut cursor)?;
    let n_tensors = cursor
        .count("tensor count", MIN_TENSOR_INFO_SIZE)
        .map_err(|e| format!("header: {e}"))?;
    let n_kv = cursor
        .count("metadata count", MIN_KV_SIZE)
        .map_err(|e| format!("header: {e}"))?;

    // Nothing is reserved from the counts: they are the file's word, the entries are not.
    let (mut metadata, mut key_index) = (Vec::new(), HashMap::new());
    let mut values_left = MAX_ARRAY_VALUES;
    for index in 0..n_kv {
        let (key, value) = read_kv(&mut cursor, index, &mut values_left)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(format!("metadata key {key} appears twice"));
        }
        metadata.push((key, value));
    }
    let alignment = alignment(&metadata, &key_index)?;

    let raw_tensors = (0..n_tensors)
        .map(|index| read_tensor_info(&mut cursor, index))
        .collect::<Parse<Vec<_>>>()?;
    // position <= file size and alignment <= 2^31: no overflow.
    let data_offset = cursor.position().next_multiple_of(alignment);
    if n_tensors > 0 && data_offset > bytes.len() as u64 {
        return Err(format!(
            "the data section (after the tensor table, aligned to {alignment}) starts past \
             the end of the file ({} bytes)",
            bytes.len()
        ));
    }
    check_id_42(
        &raw_tensors,
        alignment,
        (bytes.len() as u64).saturating_sub(data_offset),
    )?;
    let (mut tensors, mut tensor_index) = (Vec::new(), HashMap::new());
    for raw in raw_tensors {
        let info = raw.locate(data_offset, alignment, bytes.len())?;
        if tensor_index
            .insert(info.name.clone(), tensors.len())
            .is_some()
        {
            return Err(format!("tensor {} appears twice", info.name));
        }
        tensors.push(info);
    }
    Ok(Parsed {
        version,
        metadata,
        key_index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}

/// Magic and version; the two versions read here differ only in that 3 allows
/// big-endian files, which are refused (they would need every value swapped).
fn read_header(cursor: &mut Cursor) -> Parse<u32> {
    let fail = |e: String| format!("header: {e}");
    let magic = cursor.take(4).map_err(fail)?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file (starts with {magic:02x?}, not \"GGUF\")"
        ));
    }
    let version = cursor.u32().map_err(fail)?;
    match version {
        2 | 3 => Ok(version),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            Err("big-endian GGUF files are not supported".into())
        }
        v => Err(format!("GGUF version {v} is not supported (2 and 3 are)")),
    }
}

/// `values_left`: how many more array elements the metadata may hold.
fn read_kv(cursor: &mut Cursor, index: usize, values_left: &mut usize) -> Parse<(String, Value)> {
    let key = cursor
        .string()
        .map_err(|e| format!("metadata key #{index}: {e}"))?;
    if key.is_empty() {
        return Err(format!("metadata key #{index} is empty"));
    }
    let value = read_value_type(cursor)
        .and_then(|ty| read_value(cursor, ty, 0, values_left))
        .map_err(|e| format!("metadata key {key}: {e}"))?;
    Ok((key, value))
}

fn read_value_type(cursor: &mut Cursor) -> Parse<ValueType> {
    let id = cursor.u32()?;
    ValueType::from_id(id).ok_or_else(|| format!("unknown value type id {id}"))
}

fn read_value(
    cursor: &mut Cursor,
    ty: ValueType,
    depth: u32,
    values_left: &mut usize,
) -> Parse<Value> {
    Ok(match ty {
        ValueType::U8 => Value::U8(cursor.u8()?),
        ValueType::I8 => Value::I8(cursor.i8()?),
        ValueType::U16 => Value::U16(cursor.u16()?),
        ValueType::I16 => Value::I16(cursor.i16()?),
        ValueType::U32 => Value::U32(cursor.u32()?),
        ValueType::I32 => Value::I32(cursor.i32()?),
        ValueType::F32 => Value::F32(cursor.f32()?),
        // As ggml reads it: any non-zero byte is true.
        ValueType::Bool => Value::Bool(cursor.u8()? != 0),
        ValueType::String => Value::String(cursor.string()?),
        ValueType::U64 => Value::U64(cursor.u64()?),
        ValueType::I64 => Value::I64(cursor.i64()?),
        ValueType::F64 => Value::F64(cursor.f64()?),
        ValueType::Array => {
            if depth == MAX_ARRAY_DEPTH {
                return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
            }
            let item_type = read_value_type(cursor)?;
            let n = cursor.count("array length", item_type.min_encoded_size())?;
            *values_left = values_left.checked_sub(n).ok_or_else(|| {
                format!("array length {n} takes the metadata past {MAX_ARRAY_VALUES} values")
            })?;
            let mut items = Vec::with_capacity(n);
            for i in 0..n {
                let item = read_value(cursor, item_type, depth + 1, values_left)
                    .map_err(|e| format!("element {i}: {e}"))?;
                items.push(item);
            }
            Value::Array(item_type, items)
        }
    })
}

/// `general.alignment`: a u32 power of two, 32 when absent.
fn alignment(metadata: &[(String, Value)], key_index: &HashMap<String, usize>) -> Parse<u64> {
    let Some(&index) = key_index.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT.into());
    };
    match metadata[index].1 {
        Value::U32(a) if a.is_power_of_two() => Ok(a.into()),
        ref other => Err(format!(
            "metadata key {ALIGNMENT_KEY}: {}, expected a u32 power of two",
            other.describe()
        )),
    }
}
