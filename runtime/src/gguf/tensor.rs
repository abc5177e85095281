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

/// A block layout that files have stored under ggml id 42, which ggml now gives to
/// Q2_0 (64 weights per 18-byte block).
struct Id42Layout {
    block_size: u64,
    block_bytes: u64,
    what: &'static str,
}

const ID_42_LAYOUTS: [Id42Layout; 3] = [
    Id42Layout {
        block_size: 64,
        block_bytes: 18,
        what: "ggml's Q2_0 (64 weights per 18-byte block)",
    },
    // PrismML's prism-v5 fork (the first Ternary Bonsai `*-Q2_0.gguf` files); the
    // fork now calls it PQ2_0, id 142.
    Id42Layout {
        block_size: 128,
        block_bytes: 34,
        what: "the group-128 Q2_0 of PrismML's older llama.cpp fork (128 weights per \
               34-byte block, now PQ2_0, id 142)",
    },
    Id42Layout {
        block_size: 128,
        block_bytes: 18,
        what: "an older fork's Q1_0_g128 (128 weights per 18-byte block, now Q1_0, id 41)",
    },
];

/// Which layout the file's id-42 tensors are in, told by the room each has in the data
/// section (the distance to the next tensor's data, or to the end of the file): ggml
/// and gguf-py place every tensor right after the previous one, padded to the
/// alignment. Nothing else in a file says it (`general.file_type` names a mixture, not
/// a block size), so only ggml's Q2_0 is read, and a file whose tensors fit another
/// layout, or fit several, is refused with the reason.
pub(crate) fn check_id_42(raw: &[RawTensorInfo], alignment: u64, data_len: u64) -> Parse<()> {
    let ours: Vec<&RawTensorInfo> = raw
        .iter()
        .filter(|t| t.ggml_type == GgmlType::Q2_0)
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    let mut starts: Vec<u64> = raw.iter().map(|t| t.offset).collect();
    starts.sort_unstable();
    starts.dedup();
    let mut possible = [true; ID_42_LAYOUTS.len()];
    // The first tensor that rules ggml's Q2_0 out, for the message.
    let mut witness = None;
    for t in &ours {
        let next = starts.iter().find(|&&s| s > t.offset).copied();
        let room = next.unwrap_or(data_len).saturating_sub(t.offset);
        // read_tensor_info checked the element count.
        let elements = t.dims.iter().product::<u64>();
        let row = t.dims.first().copied().unwrap_or(1);
        for (layout, ok) in ID_42_LAYOUTS.iter().zip(&mut possible) {
            let bytes = elements / layout.block_size * layout.block_bytes;
            // No larger than Q2_0's size, which read_tensor_info checked; padded, it
            // may still pass u64::MAX in a corrupt file.
            let fits = bytes
                .checked_next_multiple_of(alignment)
                .is_some_and(|padded| {
                    match next {
                        Some(_) => room == padded,
                        // The last tensor: with or without the padding after it.
                        None => (bytes..=padded).contains(&room),
                    }
                });
            *ok &= row % layout.block_size == 0 && fits;
        }
        if !possible[0] && witness.is_none() {
            witness = Some((t.name.as_str(), room, t.n_bytes));
        }
    }
    let others: Vec<&str> = ID_42_LAYOUTS[1..]
        .iter()
        .zip(&possible[1..])
        .filter(|(_, &ok)| ok)
        .map(|(layout, _)| layout.what)
        .collect();
    let q2_0 = ID_42_LAYOUTS[0].what;
    match (possible[0], &others[..]) {
        (true, []) => Ok(()),
        (true, _) => Err(format!(
            "type id 42 is {q2_0}, but files have also stored {} under it, and the sizes \
             of this file's id-42 tensors fit either: refused rather than guessed",
            others.join(", and ")
        )),
        (false, found) => {
            let (name, room, need) = witness.unwrap_or_default();
            let verdict = match found {
                [one] => format!("they are laid out as {one}"),
                [] => "no one layout fits them all".to_string(),
                _ => format!("several layouts fit them: {}", found.join("; ")),
            };
            Err(format!(
                "tensor {name}: type id 42 is {q2_0}, {need} bytes here, but the tensor \
                 has {room} bytes up to the next tensor or the end of the data; over the \
                 file's id-42 tensors, {verdict}: refused rather than read as Q2_0"
            ))
        }
    }
}

/// A tensor borrowed from the file: its bytes are a slice of the map, never a copy.
#[derive(Clone, Copy, Debug)]
pub struct GgufTensor<'a> {
    pub info: &'a TensorInfo,
    /// `info.n_bytes` bytes, in the layout of `info.ggml_type`.
    pub bytes: &'a [u8],
}
