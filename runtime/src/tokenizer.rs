//! The model's `tokenizer.json` through HF's `tokenizers` crate (so encodings are
//! byte-for-byte those of `Tokenizer.encode`), plus `tokenizer_config.json` for the
//! special tokens and the chat template; or the same rebuilt from a GGUF file's metadata.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::weights::read_text;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// Ids of the end-of-sequence tokens named in tokenizer_config.json.
    pub eos_token_ids: Vec<u32>,
    /// The Jinja chat template, when the model ships one.
    pub chat_template: Option<String>,
    /// The file that holds (or would hold) the chat template, for messages:
    /// tokenizer_config.json, or the GGUF file.
    template_path: PathBuf,
    /// The bytes of every token as a trie, for constrained decoding; built on first use.
    constraint_vocabulary: OnceLock<Arc<crate::constraint::vocab::Vocabulary>>,
}

/// `"<|im_end|>"` or `{"content": "<|im_end|>", ...}` as tokenizer_config.json spells tokens.
fn token_text(value: Option<&Value>) -> Option<&str> {
    match value? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
}

/// Refuses a post-processor template (at any depth, in a `Sequence` too) that names a
/// special token its `special_tokens` lacks: tokenizers 0.23 loads one and panics on
/// the first encoding. Any object holding a template is read as one, whatever its
/// "type" says, so every object is looked at. (tokenizers also panics on a syntax
/// error inside "decoder", which parsing the file as JSON first refuses.)
fn check_templates(value: &Value) -> std::result::Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(check_templates),
        Value::Object(object) => {
            let templates = ["single", "pair"].into_iter();
            let pieces = templates
                .filter_map(|k| object.get(k)?.as_array())
                .flatten();
            for piece in pieces {
                let Some(id) = piece["SpecialToken"]["id"].as_str() else {
                    continue;
                };
                if value["special_tokens"].get(id).is_none() {
                    return Err(format!(
                        "post_processor: the template names the special token {id:?}, which its special_tokens lacks"
                    ));
                }
            }
            object.values().try_for_each(check_templates)
        }
        _ => Ok(()),
    }
}

impl Tokenizer {
    /// `tokenizer.json` and, when there is one, `tokenizer_config.json` in `dir`.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let json = read_text(&path)?;
        let config_path = dir.join("tokenizer_config.json");
        let config = match config_path.exists() {
            true => Some(read_text(&config_path)?),
            false => None,
        };
        Self::from_json(&json, config.as_deref(), dir)
    }

    /// The texts of `tokenizer.json` and `tokenizer_config.json`; `dir` names them in
    /// messages.
    pub fn from_json(json: &str, config: Option<&str>, dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let fail = |e: tokenizers::Error| Error::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        };
        // Checked first for what tokenizers 0.23 panics on instead of refusing.
        let value: Value = serde_json::from_str(json).map_err(|e| fail(Box::new(e)))?;
        check_templates(&value["post_processor"]).map_err(|e| fail(e.into()))?;
        let mut inner: tokenizers::Tokenizer = json.parse().map_err(fail)?;
        // transformers encodes without the file's padding and truncation unless asked;
        // a fixed padding length would otherwise size every encoding.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(fail)?;
        let mut tokenizer = Tokenizer {
            inner,
            path,
            eos_token_ids: Vec::new(),
            chat_template: None,
            template_path: dir.join("tokenizer_config.json"),
            constraint_vocabulary: OnceLock::new(),
        };
        if let Some(text) = config {
            let config: Value = serde_json::from_str(text).map_err(|e| {
                Error::config(&tokenizer.template_path, format!("invalid JSON: {e}"))
            })?;
            if let Some(eos) =
                token_text(config.get("eos_token")).and_then(|t| tokenizer.token_id(t))
            {
                tokenizer.eos_token_ids.push(eos);
            }
            tokenizer.chat_template = config
                .get("chat_template")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Ok(tokenizer)
    }

    /// The tokenizer of a model: a GGUF file's metadata, or a directory's tokenizer.json.
    pub fn load(path: &Path) -> Result<Tokenizer> {
        if path.is_file() {
            return Self::from_gguf(&crate::gguf::GgufFile::open(path)?);
        }
        Self::from_dir(path)
    }

    /// The tokenizer a GGUF file describes in its `tokenizer.*` metadata.
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Tokenizer> {
        let parts = crate::gguf::tokenizer_from_gguf(file)?;
        Ok(Tokenizer {
            inner: parts.tokenizer,
            path: file.path().to_path_buf(),
            eos_token_ids: parts.eos_token_ids,
            chat_template: parts.chat_template,
            template_path: file.path().to_path_buf(),
            constraint_vocabulary: OnceLock::new(),
        })
    }

    /// The file that holds the chat template, or would: tokenizer_config.json, or the
    /// GGUF file.
    pub fn template_path(&self) -> &Path {
        &self.template_path
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Ids as `Tokenizer.encode(text)` gives them, special tokens (bos) included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true)
    }

    /// Ids with or without the special tokens the post-processor adds (bos): a rendered
    /// chat template, or text that continues a conversation, already has its own.
    pub fn encode_with(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.error(e))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// What constrained decoding needs of the vocabulary: every token's bytes in a trie
    /// and the grammar compiler over it, built once (some milliseconds for 64k tokens).
    pub fn constraint_vocabulary(&self) -> Result<Arc<crate::constraint::vocab::Vocabulary>> {
        if let Some(vocabulary) = self.constraint_vocabulary.get() {
            return Ok(vocabulary.clone());
        }
        let eos = self.eos_token_ids.first().copied();
        let built = Arc::new(crate::constraint::vocab::Vocabulary::new(&self.inner, eos)?);
        Ok(self.constraint_vocabulary.get_or_init(|| built).clone())
    }
}

/// Turns generated ids into text chunks without ever splitting a UTF-8 character:
/// byte-level BPE tokens can end in the middle of one, so text is held back until the
/// character is complete. Each step decodes only the ids since the last chunk and the
/// few before it (text-generation-inference's incremental detokenizer): the context
/// keeps what a decoder does at a sequence's start (a stripped leading space) equal on
/// both sides of the difference, and a long generation costs linear time, not
/// quadratic.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the decoded window: the ids of the chunk before the last.
    prefix: usize,
    /// Ids up to here have been streamed.
    read: usize,
}

impl TextStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// The new text that `id` completes (possibly empty), decoded with `tokenizer`
    /// (the same one for every call).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read], true)?;
        let text = tokenizer.decode(&self.ids[self.prefix..], true)?;
        if text.len() <= before.len() || text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = text.get(before.len()..).unwrap_or_default().to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(new)
    }

    /// The text not streamed yet, at the end: a character whose bytes never all came
    /// shows as U+FFFD, as in a full decode (HF's `TextStreamer` ends the same way).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let before = tokenizer.decode(&self.ids[self.prefix..self.read], true)?;
        let text = tokenizer.decode(&self.ids[self.prefix..], true)?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(text.get(before.len()..).unwrap_or_default().to_string())
    }
}
