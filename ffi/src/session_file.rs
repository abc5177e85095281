//! An app's session saved to a file, to pick a conversation up again after the process
//! is gone (a phone kills background apps): the runtime's session state (tokens, KV
//! rows, conv state: no prompt is fed again) and what the C and JNI layers keep beside
//! it (the conversation, the generated token not fed yet).
//!
//! ```text
//! magic "LFMAPP\0\0", version u32, json length u32, json, runtime session state
//! ```
//!
//! The JSON: `{"messages": [{"role", "content"}], "pending": u32|null}`.

use std::path::Path;

use lfm_edge::{Error, Message};
use serde::{Deserialize, Serialize};

use crate::error::{FfiError, FfiResult};

const MAGIC: &[u8; 8] = b"LFMAPP\0\0";
const VERSION: u32 = 1;

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
    let mut bytes = Vec::with_capacity(16 + json.len() + session_state.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(session_state);
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e).into())
}

/// The app state and the runtime session state of a file `write` made.
pub fn read(path: &Path) -> FfiResult<(AppState, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |why: &str| FfiError::InvalidArgument(format!("{}: {why}", path.display()));
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err(bad("not an lfm-edge app session"));
    }
    let header = bytes.get(..16).ok_or_else(|| bad("truncated"))?;
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if word(8) != VERSION {
        return Err(bad(&format!(
            "version {}, this library reads {VERSION}",
            word(8)
        )));
    }
    let json_end = 16 + word(12) as usize;
    let json = bytes.get(16..json_end).ok_or_else(|| bad("truncated"))?;
    let app = serde_json::from_slice(json).map_err(|e| bad(&format!("bad JSON: {e}")))?;
    Ok((app, bytes[json_end..].to_vec()))
}
