//! Baseline log-probabilities in llama.cpp's `--kl-divergence-base` format, so that a
//! file written by either program is read by the other. Little-endian throughout:
//!
//! ```text
//! "_logits_"                      8 bytes
//! n_ctx, n_vocab, n_chunk         i32 each
//! tokens                          n_chunk · n_ctx i32, as in the text (no bos swap)
//! per chunk, per scored position  (n_ctx − 1 − n_ctx/2 rows a chunk)
//!   scale, min_log_prob           f32 each
//!   q[n_vocab]                    u16, padded with a zero to an even count
//! ```
//!
//! A row's log-probability of token i is `scale · q[i] + min_log_prob`: the logits
//! above `max − 16` are quantized over that range, those below it stored as 0.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::{open_regular, read_exactly};

const MAGIC: &[u8; 8] = b"_logits_";
/// Magic and the three counts.
const HEADER_BYTES: u64 = 8 + 3 * 4;

/// What a baseline file describes, before its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineHeader {
    /// Tokens per chunk.
    pub context: usize,
    pub vocab: usize,
    pub chunks: usize,
    /// The text's tokens the chunks cover (chunks · context).
    pub tokens: Vec<u32>,
}

impl BaselineHeader {
    /// Rows a chunk stores: positions `context/2 … context−2`.
    pub fn rows_per_chunk(&self) -> usize {
        rows_per_chunk(self.context)
    }

    /// Bytes of one row: scale and min, then the vocabulary padded to even.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.vocab)
    }
}

fn rows_per_chunk(context: usize) -> usize {
    context.saturating_sub(1 + context / 2)
}

fn row_bytes(vocab: usize) -> usize {
    2 * (2 * vocab.div_ceil(2) + 4)
}

/// Appends one row of `logits` to `out`, quantized exactly as llama.cpp's
/// `log_softmax(n_vocab, logits, log_prob, tok)` does it, in f32 (its sum of
/// exponentials in f64), so that the same logits give the same bytes.
pub fn quantize_row(logits: &[f32], out: &mut Vec<u8>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = logits
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min)
        .max(max - 16.0);
    let sum_exp: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / 65535.0;
    out.extend(scale.to_le_bytes());
    out.extend(min_log_prob.to_le_bytes());
    let inv_scale = 1.0 / scale;
    for &l in logits {
        let q = if scale != 0.0 && l > min {
            // llama.cpp's nearest_int: round half to even, kept to 16 bits.
            (inv_scale * (l - min)).round_ties_even() as i32 as u16
        } else {
            0
        };
        out.extend(q.to_le_bytes());
    }
    if logits.len() % 2 == 1 {
        out.extend([0, 0]);
    }
}

/// One stored row: the base model's log-probabilities at a scored position.
#[derive(Clone, Copy)]
pub struct BaseRow<'a> {
    scale: f32,
    min_log_prob: f32,
    /// The u16 values, little-endian (the padding included).
    values: &'a [u8],
}

impl<'a> BaseRow<'a> {
    /// A row as stored (`row_bytes(vocab)` bytes).
    fn parse(bytes: &'a [u8]) -> BaseRow<'a> {
        let f32_at =
            |i: usize| f32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        BaseRow {
            scale: f32_at(0),
            min_log_prob: f32_at(4),
            values: &bytes[8..],
        }
    }

    pub fn scale(&self) -> f32 {
        self.scale
    }

    pub fn min_log_prob(&self) -> f32 {
        self.min_log_prob
    }

    /// The stored value of token `i`.
    pub fn quantized(&self, i: usize) -> u16 {
        u16::from_le_bytes([self.values[2 * i], self.values[2 * i + 1]])
    }

    /// The log-probability of token `i`, in f32 as llama.cpp computes it.
    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * self.quantized(i) as f32 + self.min_log_prob
    }
}

/// Writes a baseline file as the chunks are evaluated: into `<path>.partial`, renamed
/// to `path` by [`BaselineWriter::finish`] and removed if dropped before, so that a run
/// that stops early leaves no baseline behind.
pub struct BaselineWriter {
    file: BufWriter<File>,
    path: PathBuf,
    partial: PathBuf,
    row: Vec<u8>,
    finished: bool,
}

impl BaselineWriter {
    pub fn create(path: &Path, header: &BaselineHeader) -> Result<BaselineWriter> {
        let counts = [header.context, header.vocab, header.chunks].map(i32::try_from);
        let [Ok(context), Ok(vocab), Ok(chunks)] = counts else {
            return Err(invalid(path, "a count above 2^31".into()));
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut writer = BaselineWriter {
            file: BufWriter::new(file),
            path: path.to_path_buf(),
            partial,
            row: Vec::with_capacity(header.row_bytes()),
            finished: false,
        };
        let mut bytes = MAGIC.to_vec();
        for n in [context, vocab, chunks] {
            bytes.extend(n.to_le_bytes());
        }
        for &t in &header.tokens {
            bytes.extend(t.to_le_bytes());
        }
        writer.write(&bytes)?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.partial, e))
    }

    /// Appends the row of one scored position's logits.
    pub fn write_row(&mut self, logits: &[f32]) -> Result<()> {
        let mut row = std::mem::take(&mut self.row);
        row.clear();
        quantize_row(logits, &mut row);
        let written = self.write(&row);
        self.row = row;
        written
    }

    /// Flushes the file to the disk and gives it its name.
    pub fn finish(mut self) -> Result<()> {
        let partial = &self.partial;
        self.file.flush().map_err(|e| Error::io(partial, e))?;
        let file = self.file.get_ref();
        file.sync_all().map_err(|e| Error::io(partial, e))?;
        std::fs::rename(partial, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for BaselineWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Reads a baseline file chunk by chunk; its header and length are checked on open, so
/// a truncated or foreign file fails before any model runs.
pub struct BaselineReader {
    file: File,
    path: PathBuf,
    pub header: BaselineHeader,
    /// The current chunk's rows.
    rows: Vec<u8>,
}

/// An error naming `path` for a file that is not a whole baseline.
fn invalid(path: &Path, message: String) -> Error {
    Error::io(path, std::io::Error::new(ErrorKind::InvalidData, message))
}

impl BaselineReader {
    pub fn open(path: &Path) -> Result<BaselineReader> {
        let (mut file, len) = open_regular(path)?;
        if len < HEADER_BYTES {
            let message = format!("{len} bytes, shorter than a baseline header");
            return Err(invalid(path, message));
        }
        let mut head = Vec::new();
        read_exactly(&mut file, path, HEADER_BYTES, &mut head)?;
        if &head[..8] != MAGIC {
            let message = "not a baseline of log-probabilities (no _logits_ magic)".to_string();
            return Err(invalid(path, message));
        }
        let count = |i: usize| i32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let [context, vocab, chunks] = [count(8), count(12), count(16)];
        if context < 4 || vocab < 1 || chunks < 1 {
            let message = format!("n_ctx {context}, n_vocab {vocab}, n_chunk {chunks}");
            return Err(invalid(path, format!("impossible counts: {message}")));
        }
        let (context, vocab, chunks) = (context as u64, vocab as u64, chunks as u64);
        let tokens_bytes = chunks * context * 4; // below 2^64: each count is below 2^31
        let rows_bytes = (chunks * rows_per_chunk(context as usize) as u64)
            .checked_mul(row_bytes(vocab as usize) as u64);
        let expected = rows_bytes.and_then(|r| r.checked_add(HEADER_BYTES + tokens_bytes));
        let Some(expected) = expected else {
            let message = format!("n_ctx {context}, n_vocab {vocab}, n_chunk {chunks}");
            return Err(invalid(path, format!("impossible counts: {message}")));
        };
        if len != expected {
            let what = if len < expected {
                "truncated"
            } else {
                "too long"
            };
            let message = format!(
                "{what}: {len} bytes, where n_ctx {context}, n_vocab {vocab} and n_chunk \
                 {chunks} make {expected}"
            );
            return Err(invalid(path, message));
        }
        let mut bytes = Vec::new();
        read_exactly(&mut file, path, tokens_bytes, &mut bytes)?;
        let tokens: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|t| u32::try_from(t).ok().filter(|&t| (t as u64) < vocab))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("a token id outside the vocabulary of {vocab}"),
                )
            })?;
        Ok(BaselineReader {
            file,
            path: path.to_path_buf(),
            header: BaselineHeader {
                context: context as usize,
                vocab: vocab as usize,
                chunks: chunks as usize,
                tokens,
            },
            rows: Vec::new(),
        })
    }

    /// Reads the next chunk's rows; [`BaselineReader::row`] then reads them.
    pub fn next_chunk(&mut self) -> Result<()> {
        let h = &self.header;
        let len = (h.rows_per_chunk() * h.row_bytes()) as u64;
        self.rows.clear();
        read_exactly(&mut self.file, &self.path, len, &mut self.rows)
    }

    /// Row `i` of the chunk last read (its position `context/2 + i`), if there is one.
    pub fn row(&self, i: usize) -> Option<BaseRow<'_>> {
        let n = self.header.row_bytes();
        self.rows.get(i * n..(i + 1) * n).map(BaseRow::parse)
    }
}
