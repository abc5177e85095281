//! A session's state as bytes, to restore in a later process: a small versioned binary
//! format, little-endian throughout.
//!
//! ```text
//! magic "LFMSESS\0", version u32, length u64 (of the whole state),
//! model fingerprint u64, kv dtype u32 (0 f32, 1 f16), snapshot interval u32,
//! position u32, rewind floor u32,
//! tokens            position × u32
//! per attention layer: K rows then V rows [0, position), as the cache stores them
//! per conv layer:      conv state, (L−1) × hidden f32
//! per conv layer:      snapshot slots 0 ..= position / interval
//! checksum u64:     FNV-1a of every byte before it
//! ```
//!
//! The fingerprint hashes the config's shapes, the parameter count, the weight bytes
//! (their precision) and the final norm's weights, so a file made for another model,
//! or another precision of the same one, is refused with a clear error. The length
//! bounds what a load reads before it trusts anything else; the checksum refuses a
//! damaged state, which would otherwise load as a different conversation.

use std::path::Path;

use super::{KvDtype, Session};
use crate::config::LayerKind;
use crate::error::{Error, Result};
use crate::files::{self, checksum, Fnv64};
use crate::gpu::Gpu;
use crate::model::Model;

const MAGIC: &[u8; 8] = b"LFMSESS\0";
/// 2 added the length and the checksum.
const VERSION: u32 = 2;
/// Magic, version, length: what a load reads before the rest.
const PREFIX_BYTES: usize = 8 + 4 + 8;
/// The prefix, then fingerprint, kv dtype, interval, position, floor.
const HEADER_BYTES: usize = PREFIX_BYTES + 8 + 4 * 4;
const CHECKSUM_BYTES: usize = 8;

/// Identifies the model a session state belongs to.
pub fn fingerprint(model: &Model) -> Result<u64> {
    let c = &model.config;
    let mut h = Fnv64::new();
    for v in [
        c.vocab_size,
        c.hidden_size,
        c.ff_size,
        c.n_heads,
        c.n_kv_heads,
        c.head_dim,
        c.conv_l_cache,
    ] {
        h.u64(v as u64);
    }
    for kind in &c.layers {
        h.u64(matches!(kind, LayerKind::Attention) as u64);
    }
    h.bytes(c.architecture.name().as_bytes());
    // The rotation the cached keys carry.
    h.u64(c.rope.theta.to_bits() as u64);
    for &f in &c.rope.inv_freq(c.head_dim) {
        h.u64(f.to_bits() as u64);
    }
    h.u64(c.rope.attention_factor().to_bits() as u64);
    h.u64(c.norm_eps.to_bits() as u64);
    if let Some(m) = &c.moe {
        for v in [m.n_experts, m.top_k, m.expert_ff, m.n_dense_layers] {
            h.u64(v as u64);
        }
    }
    h.u64(model.parameter_count());
    h.u64(model.weight_bytes());
    let norm = model.final_norm();
    let buffer = norm.buffer()?;
    let norm_bytes: Vec<u8> = model.gpu.read(buffer, 0, buffer.size())?;
    h.bytes(&norm_bytes);
    Ok(h.finish())
}

/// The byte ranges `runs` of `buffer`, one after the other, in one readback.
fn read_runs(gpu: &Gpu, buffer: &wgpu::Buffer, runs: &[(u64, u64)]) -> Result<Vec<u8>> {
    let total: u64 = runs.iter().map(|&(_, size)| size).sum();
    if total == 0 {
        return Ok(Vec::new());
    }
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("session state readback"),
        size: total,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let mut at = 0;
    for &(offset, size) in runs {
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, at, size);
        at += size;
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.map_and_read(&staging, total)
}

fn kv_code(dtype: KvDtype) -> u32 {
    match dtype {
        KvDtype::F32 => 0,
        KvDtype::F16 => 1,
    }
}

/// Reads the file's fields in order, failing with `origin` named on a short file.
struct Reader<'a> {
    bytes: &'a [u8],
    origin: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(error(self.origin, "truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(self.u32()? as u64 | (self.u32()? as u64) << 32)
    }
}

fn error(origin: &str, message: impl Into<String>) -> Error {
    Error::SessionFile {
        origin: origin.to_string(),
        message: message.into(),
    }
}

/// The length `prefix` gives for the whole state, once its magic and version are
/// checked.
fn state_length(prefix: &[u8], origin: &str) -> Result<u64> {
    let mut r = Reader {
        bytes: prefix,
        origin,
    };
    if r.take(8).ok() != Some(&MAGIC[..]) {
        return Err(error(origin, "not an lfm-edge session state"));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(error(
            origin,
            format!("format version {version}; this library reads version {VERSION}"),
        ));
    }
    r.u64()
}

impl Session {
    /// Everything needed to continue this session in another process.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        let (model, state) = (&**self.model(), self.state());
        let gpu = &model.gpu;
        let pos = self.position();
        let interval = self.options().snapshot_interval;
        let length = self.state_len(pos);
        let mut out = Vec::with_capacity(length as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&fingerprint(model)?.to_le_bytes());
        for v in [
            kv_code(self.options().kv_dtype),
            interval as u32,
            pos as u32,
            self.rewind_floor() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend(self.tokens().iter().flat_map(|t| t.to_le_bytes()));
        let runs = self.page_table().row_ranges(pos);
        for (k, v) in self.kv_pool().layers() {
            out.extend(read_runs(gpu, k, &runs)?);
            out.extend(read_runs(gpu, v, &runs)?);
        }
        let size = state.conv_state_bytes(&model.config);
        let slots = (pos / interval + 1) as u64;
        for conv_state in self.conv_states() {
            out.extend(gpu.read::<u8>(conv_state, 0, size)?);
        }
        for conv in state.conv_layers() {
            out.extend(gpu.read::<u8>(conv.snapshots, 0, slots * size)?);
        }
        out.extend_from_slice(&checksum(&out).to_le_bytes());
        Ok(out)
    }

    /// The bytes [`Session::save_state`] makes with `pos` tokens held.
    fn state_len(&self, pos: usize) -> u64 {
        let (config, state) = (&self.model().config, self.state());
        let kv_row = (config.kv_dim() * self.options().kv_dtype.bytes()) as u64;
        let kv_layers = self.kv_pool().layers().len() as u64;
        let conv = state.conv_state_bytes(config) * state.conv_layers().count() as u64;
        let slots = (pos / self.options().snapshot_interval + 1) as u64;
        let pos = pos as u64;
        (HEADER_BYTES + CHECKSUM_BYTES) as u64
            + 4 * pos
            + 2 * kv_layers * pos * kv_row
            + conv * (1 + slots)
    }

    /// The most bytes [`Session::save_state`] makes for this session: with its whole
    /// context held. A load refuses a longer state before reading it.
    pub fn max_state_bytes(&self) -> u64 {
        self.state_len(self.max_context())
    }

    /// Replaces this session's state with one [`Session::save_state`] made, for the
    /// same model, KV type and snapshot interval.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        self.settle()?;
        self.restore_from(bytes, "bytes")
    }

    /// Writes the state to `path` atomically: a failed save leaves the old file.
    pub fn save_file(&self, path: &Path) -> Result<()> {
        files::write_atomically(path, &self.save_state()?)
    }

    /// Restores a state [`Session::save_file`] wrote, reading no more than its header
    /// gives (and only from a regular file).
    pub fn restore_file(&mut self, path: &Path) -> Result<()> {
        let origin = path.display().to_string();
        let (mut file, file_len) = files::open_regular(path)?;
        let mut bytes = Vec::new();
        let prefix = file_len.min(PREFIX_BYTES as u64);
        files::read_exactly(&mut file, path, prefix, &mut bytes)?;
        let length = state_length(&bytes, &origin)?;
        let most = self.max_state_bytes();
        if length > most {
            return Err(error(
                &origin,
                format!("its header gives {length} bytes, more than this session holds ({most})"),
            ));
        }
        if file_len != length {
            return Err(error(
                &origin,
                format!("is {file_len} bytes, its header gives {length}: truncated or damaged"),
            ));
        }
        let rest = length.saturating_sub(prefix);
        files::read_exactly(&mut file, path, rest, &mut bytes)?;
        self.restore_from(&bytes, &origin)
    }

    fn restore_from(&mut self, bytes: &[u8], origin: &str) -> Result<()> {
        let length = state_length(bytes, origin)?;
        let (have, shortest) = (bytes.len() as u64, (HEADER_BYTES + CHECKSUM_BYTES) as u64);
        if have < length || length < shortest {
            return Err(error(
                origin,
                format!("truncated or damaged: {have} bytes, its header gives {length}"),
            ));
        }
        if have > length {
            return Err(error(
                origin,
                format!("has trailing bytes: {have} bytes, its header gives {length}"),
            ));
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if sum != checksum(body).to_le_bytes() {
            return Err(error(origin, "is damaged: its checksum does not match"));
        }
        let mut r = Reader {
            bytes: &body[PREFIX_BYTES..],
            origin,
        };
        let model = self.model().clone();
        if r.u64()? != fingerprint(&model)? {
            return Err(error(
                origin,
                format!(
                    "was saved for another model (or another precision of it), not {}",
                    model.path.display()
                ),
            ));
        }
        let kv = r.u32()?;
        let want = self.options().kv_dtype;
        if kv != kv_code(want) {
            return Err(error(
                origin,
                format!("holds a KV cache of another type; this session's is {want}"),
            ));
        }
        let interval = r.u32()? as usize;
        if interval != self.options().snapshot_interval {
            return Err(error(
                origin,
                format!(
                    "has conv snapshots every {interval} tokens; this session takes them every {}",
                    self.options().snapshot_interval
                ),
            ));
        }
        let (pos, floor) = (r.u32()? as usize, r.u32()? as usize);
        if pos > self.max_context() {
            return Err(error(
                origin,
                format!(
                    "holds {pos} tokens; this session's context is {}",
                    self.max_context()
                ),
            ));
        }
        if floor > pos {
            return Err(error(
                origin,
                format!("its rewind floor {floor} is past the {pos} tokens it holds"),
            ));
        }
        let expected = self.state_len(pos);
        if length != expected {
            return Err(error(
                origin,
                format!("holds {length} bytes for {pos} tokens; this session lays them out in {expected}"),
            ));
        }
        let tokens: Vec<u32> = r
            .take(pos * 4)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if !tokens.is_empty() {
            self.check_tokens(&tokens)
                .map_err(|e| error(origin, e.to_string()))?;
        }
        let size = self.state().conv_state_bytes(&model.config) as usize;
        self.reserve(pos)?;
        let state = self.state();
        let gpu = &model.gpu;
        let runs = self.page_table().row_ranges(pos);
        let mut writes = Vec::new();
        for (k, v) in self.kv_pool().layers() {
            for cache in [k, v] {
                for &(offset, size) in &runs {
                    writes.push((cache, offset, r.take(size as usize)?));
                }
            }
        }
        for conv in state.conv_layers() {
            writes.push((conv.state, 0, r.take(size)?));
        }
        for conv in state.conv_layers() {
            writes.push((conv.snapshots, 0, r.take((pos / interval + 1) * size)?));
        }
        for (buffer, offset, data) in writes.into_iter().filter(|(_, _, d)| !d.is_empty()) {
            gpu.queue.write_buffer(buffer, offset, data);
        }
        gpu.check()?;
        self.set_restored(tokens, floor);
        Ok(())
    }
}
