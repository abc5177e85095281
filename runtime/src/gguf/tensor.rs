//! Tensor infos and the tensors handed out from the file's bytes.

use super::cursor::{Cursor, Parse};
use super::ggml_type::GgmlType;

/// ggml's GGML_MAX_DIMS: a GGUF tensor has at most four dimensions.
const MAX_DIMS: u32 = 4;

/// Bytes of the smallest tensor info (empty name, no dimensions): name length, n_dims,
/// type, offset. Bounds the tensor count before anything is allocated for it.
pub(crate) const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

/// One entry of the file's tensor table, checked against the file's size.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// GGUF order: innermost (contiguous) dimension first, the reverse of PyTorch.
    pub dims: Vec<usize>,
    /// Offset inside the data section, as the file states it (a multiple of the alignment).
    pub offset: u64,
    pub n_bytes: usize,
    /// Absolute byte offset of the data in the file.
    pub(crate) start: usize,
}

impl TensorInfo {
    /// PyTorch order: outermost first (`[vocab, hidden]` for `token_embd`).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A tensor's info as the tensor table states it, before its data is placed in the file.
pub(crate) struct RawTensorInfo {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    offset: u64,
    n_bytes: u64,
}

impl RawTensorInfo {
    /// The info with its data placed in the file: the offset aligned, every byte inside.
    pub fn locate(self, data_offset: u64, alignment: u64, file_len: usize) -> Parse<TensorInfo> {
        let fail = |message: String| format!("tensor {}: {message}", self.name);
        if self.offset % alignment != 0 {
            return Err(fail(format!(
                "data offset {} is not a multiple of the alignment {alignment}",
                self.offset
            )));
        }
        let end = data_offset
            .checked_add(self.offset)
            .and_then(|start| start.checked_add(self.n_bytes))
            .filter(|&end| end <= file_len as u64)
            .ok_or_else(|| {
                fail(format!(
                    "{} bytes at offset {} of the data section (which starts at byte \
                     {data_offset}) run past the end of the file ({file_len} bytes)",
                    self.n_bytes, self.offset
                ))
            })?;
        let dims = self
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                fail(format!(
                    "dimensions {:?} exceed the address space",
                    self.dims
                ))
            })?;
        // end <= file_len, so both ends fit in usize.
        let (start, n_bytes) = ((end - self.n_bytes) as usize, self.n_bytes as usize);
        Ok(TensorInfo {
            name: self.name,
            ggml_type: self.ggml_type,
            dims,
            offset: self.offset,
            n_bytes,
            start,
        })
    }
}

/// Reads one tensor info (`index` is its position, for messages about unreadable names).
pub(crate) fn read_tensor_info(cursor: &mut Cursor, index: usize) -> Parse<RawTensorInfo> {
    let name = cursor
        .string()
        .map_err(|e| format!("tensor #{index}: name: {e}"))?;
    let fail = |message: String| format!("tensor {name}: {message}");
    let n_dims = cursor.u32().map_err(fail)?;
    if n_dims > MAX_DIMS {
        return Err(fail(format!(
            "{n_dims} dimensions, GGUF allows at most {MAX_DIMS}"
        )));
    }
    let dims = (0..n_dims)
        .map(|_| cursor.u64())
        .collect::<Parse<Vec<u64>>>()
        .map_err(fail)?;
    let type_id = cursor.u32().map_err(fail)?;
    let ggml_type = GgmlType::from_id(type_id)
        .ok_or_else(|| fail(format!("unknown ggml type id {type_id}")))?;
    let n_bytes = byte_size(ggml_type, &dims).map_err(fail)?;
    let offset = cursor.u64().map_err(fail)?;
    Ok(RawTensorInfo {
        name,
        ggml_type,
        dims,
        offset,
        n_bytes,
    })
}

/// (elements / block size) · bytes per block, in checked arithmetic: a corrupt shape
/// must fail here, not wrap around into a small size that passes the bounds check.
fn byte_size(ggml_type: GgmlType, dims: &[u64]) -> Parse<u64> {
    // ggml keeps dimensions in int64_t.
    if dims.iter().any(|&d| d > i64::MAX as u64) {
        return Err(format!("dimension out of range in {dims:?}"));
    }
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow the element count"))?;
    let row = dims.first().copied().unwrap_or(1);
    let block_size = ggml_type.block_size();
    if row % block_size != 0 {
        return Err(format!(
            "type {ggml_type} needs rows that are a multiple of {block_size} elements, \
             dimensions are {dims:?}"
        ));
    }
    (elements / block_size)
        .checked_mul(ggml_type.block_bytes())
        .ok_or_else(|| format!("dimensions {dims:?} of type {ggml_type} overflow the byte size"))
}

/// A tensor borrowed from the file: its bytes are a slice of the map, never a copy.
#[derive(Clone, Copy, Debug)]
pub struct GgufTensor<'a> {
    pub info: &'a TensorInfo,
    /// `info.n_bytes` bytes, in the layout of `info.ggml_type`.
    pub bytes: &'a [u8],
}
