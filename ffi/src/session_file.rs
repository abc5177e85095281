//! An app's session saved to a file, to pick a conversation up again after the process
//! is gone (a phone kills background apps): the runtime's session state (tokens, KV
//! rows, conv state: no prompt is fed again) and what the C and JNI layers keep beside
//! it (the conversation, the generated token not fed yet).
//!
//! ```text
//! magic "LFMAPP\0\0", version u32, json length u32, state length u64,
//! checksum u64 (FNV-1a of the header before it and the JSON),
//! json, runtime session state (which checks itself)
//! ```
//!
//! The JSON: `{"messages": [{"role", "content"}], "pending": u32|null}`. A file is
//! replaced atomically, and read only as far as its header says.

use std::path::Path;

use lfm_edge::files::{self, Fnv64};
use lfm_edge::Message;
use serde::{Deserialize, Serialize};

use crate::error::{FfiError, FfiResult};

const MAGIC: &[u8; 8] = b"LFMAPP\0\0";
/// 2 added the state length and the checksum.
const VERSION: u32 = 2;
/// Magic, version, JSON length, state length: what the checksum follows.
const FIELDS: usize = 8 + 4 + 4 + 8;
const HEADER: usize = FIELDS + 8;

/// What the bindings keep beside the runtime's session.
#[derive(Serialize, Deserialize)]
pub struct AppState {
    pub messages: Vec<SavedMessage>,
    pub pending: Option<u32>,
}

#[derive(Serialize, Deserialize)]
pub struct SavedMessage {
    pub role: String,
    pub content: String,
}

impl From<&Message> for SavedMessage {
    fn from(m: &Message) -> Self {
        SavedMessage {
            role: m.role.clone(),
            content: m.content.clone(),
        }
    }
}

impl From<SavedMessage> for Message {
    fn from(m: SavedMessage) -> Self {
        Message::new(m.role, m.content)
    }
}

pub fn write(path: &Path, app: &AppState, session_state: &[u8]) -> FfiResult<()> {
    let json = serde_json::to_vec(app)
        .map_err(|e| FfiError::Internal(format!("encoding the session: {e}")))?;
    let json_len = u32::try_from(json.len()).map_err(|_| {
        FfiError::InvalidArgument(format!(
            "the conversation is too long to save: {} bytes of JSON",
            json.len()
        ))
    })?;
    let mut bytes = Vec::with_capacity(HEADER + json.len() + session_state.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&json_len.to_le_bytes());
    bytes.extend_from_slice(&(session_state.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&checksum(&bytes, &json).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(session_state);
    Ok(files::write_atomically(path, &bytes)?)
}

/// What the header's checksum covers: its fields and the JSON.
fn checksum(fields: &[u8], json: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.bytes(fields);
    h.bytes(json);
    h.finish()
}

/// The app state and the runtime session state of a file `write` made, reading only a
/// regular file, no more than its header gives, and at most `max_state` bytes of
/// session state (what the session that loads it can hold).
pub fn read(path: &Path, max_state: u64) -> FfiResult<(AppState, Vec<u8>)> {
    let (mut file, file_len) = files::open_regular(path)?;
    let mut bytes = Vec::new();
    let header = file_len.min(HEADER as u64);
    files::read_exactly(&mut file, path, header, &mut bytes)?;
    let bad = |why: &str| FfiError::InvalidArgument(format!("{}: {why}", path.display()));
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err(bad("not an lfm-edge app session"));
    }
    let word = |at: usize| {
        let b = bytes.get(at..at + 4).ok_or_else(|| bad("truncated"))?;
        Ok::<u64, FfiError>(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let version = word(8)?;
    if version != VERSION as u64 {
        return Err(bad(&format!(
            "version {version}, this library reads {VERSION}"
        )));
    }
    let (json_len, state_len) = (word(12)?, word(16)? | word(20)? << 32);
    let sum = word(24)? | word(28)? << 32;
    if state_len > max_state {
        return Err(bad(&format!(
            "holds {state_len} bytes of session state, more than this session can hold ({max_state})"
        )));
    }
    let length = HEADER as u64 + json_len + state_len;
    if file_len != length {
        return Err(bad(&format!(
            "is {file_len} bytes, its header gives {length}: truncated or damaged"
        )));
    }
    files::read_exactly(&mut file, path, length - header, &mut bytes)?;
    let state = bytes.split_off(HEADER + json_len as usize);
    let json = &bytes[HEADER..];
    if checksum(&bytes[..FIELDS], json) != sum {
        return Err(bad("is damaged: its checksum does not match"));
    }
    let app = serde_json::from_slice(json).map_err(|e| bad(&format!("bad JSON: {e}")))?;
    Ok((app, state))
}
