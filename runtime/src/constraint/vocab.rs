//! The bytes each token stands for, as llguidance's token trie needs them, read from the
//! model's HF tokenizer (tokenizer.json or rebuilt from GGUF metadata alike). Built once
//! per tokenizer and shared by every constrained generation.

use std::collections::HashMap;
use std::sync::Arc;

use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::ParserFactory;
use tokenizers::DecoderWrapper;

use crate::error::{Error, Result};

/// The token trie and the grammar compiler over it.
pub struct Vocabulary {
    pub(crate) factory: ParserFactory,
    /// Special tokens by their text (`<|im_end|>`): a grammar names them, never spells
    /// them out byte by byte.
    special: HashMap<String, u32>,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("tokens", &self.trie().vocab_size())
            .finish()
    }
}

/// How the tokenizer's pieces spell bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// GPT-2's byte-level alphabet: every byte a printable character.
    ByteLevel,
    /// SentencePiece: `▁` for a space, `<0xNN>` for a byte without a piece.
    ByteFallback,
}

impl Vocabulary {
    pub fn new(hf: &tokenizers::Tokenizer, eos: Option<u32>) -> Result<Vocabulary> {
        let fail = |message: String| Error::Input(format!("constrained decoding: {message}"));
        let spelling = hf.get_decoder().and_then(spelling).ok_or_else(|| {
            fail("the tokenizer's decoder is neither byte-level nor byte-fallback, so its tokens' bytes are unknown".into())
        })?;
        let added = hf.get_added_tokens_decoder();
        let size = (added.keys().map(|&id| id as usize + 1))
            .chain([hf.get_vocab_size(true)])
            .max()
            .unwrap_or(0);
        let byte_of = byte_alphabet();
        let mut special = HashMap::new();
        let mut words = vec![Vec::new(); size];
        for (id, word) in words.iter_mut().enumerate() {
            let id = id as u32;
            if let Some(token) = added.get(&id) {
                // Like llguidance's own HF reader: every added `<…>` counts as special.
                let bracketed = token.content.starts_with('<') && token.content.ends_with('>');
                if token.special || bracketed {
                    special.insert(token.content.clone(), id);
                    word.push(TokTrie::SPECIAL_TOKEN_MARKER);
                }
                word.extend_from_slice(token.content.as_bytes());
                continue;
            }
            let Some(piece) = hf.id_to_token(id) else {
                continue;
            };
            *word = match spelling {
                Spelling::ByteLevel => {
                    match piece.chars().map(|c| byte_of.get(&c).copied()).collect() {
                        Some(bytes) => bytes,
                        // A piece outside the alphabet cannot be produced: left out.
                        None => continue,
                    }
                }
                Spelling::ByteFallback => match byte_fallback(&piece) {
                    Some(byte) => vec![byte],
                    None => piece.replace('\u{2581}', " ").into_bytes(),
                },
            };
        }
        let eos = eos.filter(|&id| (id as usize) < size).unwrap_or(0);
        let info = TokRxInfo::new(size as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| fail(e.to_string()))?;
        // Errors come back as values; nothing is written to stderr behind our back.
        factory.quiet();
        Ok(Vocabulary { factory, special })
    }

    pub fn trie(&self) -> &TokTrie {
        self.factory.tok_env().tok_trie()
    }

    /// The id of a special token, by its text.
    pub fn special_token(&self, text: &str) -> Option<u32> {
        self.special.get(text).copied()
    }
}

fn spelling(decoder: &DecoderWrapper) -> Option<Spelling> {
    match decoder {
        DecoderWrapper::ByteLevel(_) => Some(Spelling::ByteLevel),
        DecoderWrapper::ByteFallback(_) => Some(Spelling::ByteFallback),
        DecoderWrapper::Sequence(sequence) => sequence.get_decoders().iter().find_map(spelling),
        _ => None,
    }
}

/// `<0x0A>` → 0x0A.
fn byte_fallback(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// GPT-2's byte-level alphabet, reversed: printable bytes stand for themselves, the others
/// for the characters from U+0100 on, in byte order.
fn byte_alphabet() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                b as char
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap_or_default()
            };
            (c, b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let a = byte_alphabet();
        assert_eq!(a.len(), 256);
        assert_eq!(a[&'Ġ'], b' ');
        assert_eq!(a[&'Ċ'], b'\n');
        assert_eq!(a[&'a'], b'a');
        assert_eq!(byte_fallback("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_fallback("<0x0>"), None);
    }
}
