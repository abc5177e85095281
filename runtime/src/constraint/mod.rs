//! Constrained decoding: output that a JSON schema, a regex or a Lark grammar allows, and
//! nothing else, whatever the model would rather say.
//!
//! [llguidance](https://github.com/guidance-ai/llguidance) compiles the grammar and,
//! before each token, computes the set of tokens that keep the output a prefix of a
//! sentence of it, from the bytes every token stands for ([`vocab`], built once per
//! tokenizer). The generation loop hands that set ([`NextTokens`]) to the GPU's pick,
//! which treats the other tokens as −∞ (a greedy argmax, a sampled chain's candidates),
//! and sets their logits to −∞ in a row read back, before the sampling chain, so
//! penalties, temperature, top-k/p and min-p all still apply; the end-of-sequence
//! tokens are allowed only where the grammar may end.
//!
//! ```no_run
//! # fn demo(session: &mut lfm_edge::Session, prompt: &[u32]) -> lfm_edge::Result<()> {
//! use lfm_edge::{constraint::Constraint, generate::{generate, Flow, GenerateOptions}};
//! let schema = r#"{"type": "object", "properties": {"n": {"type": "integer"}}}"#;
//! let options = GenerateOptions {
//!     constraint: Some(Constraint::json_schema(schema)?),
//!     ..GenerateOptions::default()
//! };
//! let logits = session.prefill(prompt)?;
//! let done = generate(session, logits, &options, |_| Flow::Continue)?;
//! assert!(serde_json::from_str::<serde_json::Value>(&done.text).is_ok()
//!     || done.grammar_complete == Some(false));
//! # Ok(()) }
//! ```

mod ends;
mod schema;
pub mod vocab;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::Matcher;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
pub use vocab::Vocabulary;

/// What the output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Grammar {
    /// A JSON value valid against this schema (llguidance's subset of JSON Schema).
    JsonSchema(Value),
    /// Text that this regex matches whole (Rust `regex` syntax).
    Regex(String),
    /// A sentence of this grammar (llguidance's Lark dialect: `%json {…}` embeds a
    /// schema, `<|name|>` names a special token).
    Lark(String),
}

/// The kinds of constraint, as the C ABI and the command line name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintKind {
    JsonSchema,
    Regex,
    Lark,
}

/// A grammar, and when it starts to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    pub grammar: Grammar,
    /// `None`: from the first token to the end. `Some(text)`: the output is free until
    /// `text` appears (a special token's text names that token), then follows the
    /// grammar until the grammar is complete, then is free again (tool calls that
    /// the model opens by itself).
    pub trigger: Option<String>,
}

/// JSON written on one line with the separators of Python's `json.dumps`, unless the
/// schema says otherwise in its `x-guidance`: flexible whitespace lets a small model
/// wander off into newlines and never close the value.
fn compact_json_options() -> Value {
    serde_json::json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
    })
}

impl Constraint {
    /// A JSON schema, from its text; a syntax error names its line and column.
    pub fn json_schema(text: &str) -> Result<Constraint> {
        let schema: Value = serde_json::from_str(text)
            .map_err(|e| Error::Input(format!("JSON schema: invalid JSON: {e}")))?;
        Ok(Self::new(Grammar::JsonSchema(schema)))
    }

    pub fn regex(regex: &str) -> Constraint {
        Self::new(Grammar::Regex(regex.to_owned()))
    }

    pub fn lark(grammar: &str) -> Constraint {
        Self::new(Grammar::Lark(grammar.to_owned()))
    }

    pub fn of_kind(kind: ConstraintKind, text: &str) -> Result<Constraint> {
        match kind {
            ConstraintKind::JsonSchema => Self::json_schema(text),
            ConstraintKind::Regex => Ok(Self::regex(text)),
            ConstraintKind::Lark => Ok(Self::lark(text)),
        }
    }

    pub fn new(grammar: Grammar) -> Constraint {
        Constraint {
            grammar,
            trigger: None,
        }
    }

    /// Applies from after `trigger` on, each time it appears (see [`Constraint::trigger`]).
    pub fn after(mut self, trigger: impl Into<String>) -> Constraint {
        self.trigger = Some(trigger.into());
        self
    }

    fn top_level(&self) -> TopLevelGrammar {
        match &self.grammar {
            Grammar::JsonSchema(schema) => {
                let mut schema = schema.clone();
                if let Some(object) = schema.as_object_mut() {
                    object
                        .entry("x-guidance")
                        .or_insert_with(compact_json_options);
                }
                TopLevelGrammar::from_json_schema(schema)
            }
            Grammar::Regex(regex) => TopLevelGrammar::from_regex(regex),
            Grammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        }
    }

    fn what(&self) -> &'static str {
        match self.grammar {
            Grammar::JsonSchema(_) => "JSON schema",
            Grammar::Regex(_) => "regex",
            Grammar::Lark(_) => "grammar",
        }
    }

    fn matcher(&self, vocab: &Vocabulary) -> Result<Matcher> {
        let parser = vocab.factory.create_parser(self.top_level());
        if let Some(rule) =
            (parser.as_ref().ok()).and_then(|p| ends::never_ends(p.parser.grammar()))
        {
            // Tokens would be allowed one after another up to max_tokens, never a
            // whole sentence: refuse it now.
            let why = match self.grammar {
                Grammar::JsonSchema(_) => {
                    "a value never ends (it requires a value of its own kind inside it)".into()
                }
                _ => format!("rule `{rule}` never ends"),
            };
            return Err(Error::Input(format!(
                "{}: it allows no complete output: {why}",
                self.what()
            )));
        }
        let matcher = Matcher::new(parser);
        let Some(e) = matcher.get_error() else {
            return Ok(matcher);
        };
        let at = match &self.grammar {
            Grammar::JsonSchema(schema) => schema::locate_error(vocab, schema),
            _ => None,
        };
        let at = at
            .map(|pointer| format!(" at {pointer}"))
            .unwrap_or_default();
        Err(Error::Input(format!(
            "{}{at}: {}",
            self.what(),
            one_line(&e)
        )))
    }

    /// Compiles the grammar against `tokenizer`'s vocabulary and checks that it allows
    /// some first token: the errors [`Guide::new`] would give, before a prompt is fed.
    pub fn check(&self, tokenizer: &Tokenizer) -> Result<()> {
        let mut guide = Guide::new(self, tokenizer, &[])?;
        if self.trigger.is_none() {
            let mut logits = vec![0.0; guide.vocab.trie().vocab_size()];
            guide.mask(&mut logits)?;
        }
        Ok(())
    }
}

/// llguidance's messages can span lines and carry a dump of the parser's state; ours
/// are one line, and say what it means.
fn one_line(message: &str) -> String {
    let message = message.split("<state>").next().unwrap_or_default().trim();
    let message = match message {
        "NoExtensionBias" | "NoExtension" => "it allows no text here",
        _ => message,
    };
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a step may sample, after [`Guide::mask`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// The logits are left as they are (waiting for a trigger).
    Any,
    /// The tokens the grammar forbids are at −∞.
    Masked,
    /// The grammar is complete and no end-of-sequence token may be sampled
    /// (`ignore_eos`): the generation ends here.
    Nothing,
}

/// The tokens a step may sample, as [`Guide::next_tokens`] finds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextTokens {
    /// Any token (waiting for a trigger).
    Any,
    /// Those whose bit is set: bit `i % 32` of word `i / 32`, over the vocabulary.
    Only(Vec<u32>),
    /// None: the grammar is complete and no end-of-sequence token may be sampled
    /// (`ignore_eos`): the generation ends here.
    Nothing,
}

impl NextTokens {
    pub fn allows(&self, id: u32) -> bool {
        match self {
            NextTokens::Any => true,
            NextTokens::Only(bits) => {
                (bits.get(id as usize / 32)).is_some_and(|w| w >> (id % 32) & 1 == 1)
            }
            NextTokens::Nothing => false,
        }
    }

    /// Sets the logits of the tokens not allowed to −∞.
    pub fn apply(&self, logits: &mut [f32]) {
        match self {
            NextTokens::Any => {}
            NextTokens::Only(bits) => {
                for (chunk, &word) in logits
                    .chunks_mut(32)
                    .zip(bits.iter().chain(std::iter::repeat(&0)))
                {
                    if word == u32::MAX {
                        continue;
                    }
                    for (bit, logit) in chunk.iter_mut().enumerate() {
                        if word >> bit & 1 == 0 {
                            *logit = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            NextTokens::Nothing => logits.fill(f32::NEG_INFINITY),
        }
    }
}

fn set_bit(bits: &mut [u32], id: u32, on: bool) {
    if let Some(word) = bits.get_mut(id as usize / 32) {
        let bit = 1 << (id % 32);
        *word = if on { *word | bit } else { *word & !bit };
    }
}

/// One generation's state in a [`Constraint`]: the parser, fed each sampled token.
pub struct Guide {
    vocab: Arc<Vocabulary>,
    constraint: Constraint,
    /// `None` while waiting for the trigger.
    matcher: Option<Matcher>,
    /// The trigger's bytes, as the trie spells tokens (a special token's with its marker).
    trigger: Option<Vec<u8>>,
    /// Bytes sampled since the grammar last applied, searched for the trigger.
    recent: Vec<u8>,
    /// Tokens that end the generation; allowed only where the grammar may end.
    eos: Vec<u32>,
    /// The text the grammar has accepted so far, for messages.
    accepted: Vec<u8>,
}

impl Guide {
    /// `eos`: the tokens that end the generation (none with `ignore_eos`).
    pub fn new(constraint: &Constraint, tokenizer: &Tokenizer, eos: &[u32]) -> Result<Guide> {
        let vocab = tokenizer.constraint_vocabulary()?;
        // Compiled now, so that a bad grammar is an error before any token, trigger or not.
        let matcher = constraint.matcher(&vocab)?;
        let trigger = constraint
            .trigger
            .as_ref()
            .map(|text| match vocab.special_token(text) {
                Some(id) => vocab.trie().token(id).to_vec(),
                None => text.as_bytes().to_vec(),
            });
        Ok(Guide {
            matcher: trigger.is_none().then_some(matcher),
            vocab,
            constraint: constraint.clone(),
            trigger,
            recent: Vec::new(),
            eos: eos.to_vec(),
            accepted: Vec::new(),
        })
    }

    /// Whether what was sampled is a whole sentence of the grammar (or, with a trigger,
    /// not inside one).
    pub fn is_complete(&mut self) -> bool {
        match &mut self.matcher {
            Some(matcher) => matcher.is_accepting().unwrap_or(false),
            None => true,
        }
    }

    /// Sets the logits of the tokens the grammar forbids next to −∞.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<Allowed> {
        let next = self.next_tokens(logits.len())?;
        next.apply(logits);
        Ok(match next {
            NextTokens::Any => Allowed::Any,
            NextTokens::Only(_) => Allowed::Masked,
            NextTokens::Nothing => Allowed::Nothing,
        })
    }

    /// The tokens of a vocabulary of `vocab_size` that the grammar allows next; an
    /// error where it allows none and may not end here.
    pub fn next_tokens(&mut self, vocab_size: usize) -> Result<NextTokens> {
        let Some(matcher) = &mut self.matcher else {
            return Ok(NextTokens::Any);
        };
        let stopped = matcher.is_stopped();
        let mut bits = vec![0u32; vocab_size.div_ceil(32)];
        if !stopped {
            let allowed = match matcher.compute_mask() {
                Ok(allowed) => allowed,
                Err(e) => return Err(self.error(&e.to_string())),
            };
            let words = allowed.as_slice();
            let n = words.len().min(bits.len());
            bits[..n].copy_from_slice(&words[..n]);
            // The trie's end-of-sequence bit stands for none of ours.
            let trie_eos = self.vocab.trie().eos_token();
            if !self.eos.contains(&trie_eos) {
                set_bit(&mut bits, trie_eos, false);
            }
        }
        let accepting = stopped || self.is_complete();
        // Ending is allowed where the grammar may end, at the model's own odds.
        for &id in &self.eos {
            set_bit(&mut bits, id, accepting);
        }
        // Tokens past the vocabulary are none.
        if let Some(last) = bits.last_mut().filter(|_| vocab_size % 32 != 0) {
            *last &= (1 << (vocab_size % 32)) - 1;
        }
        let left = bits.iter().any(|&word| word != 0);
        match (left, accepting) {
            (true, _) => Ok(NextTokens::Only(bits)),
            (false, true) => Ok(NextTokens::Nothing),
            (false, false) => Err(self.error("it allows no token here")),
        }
    }

    /// Moves the parser past a sampled token (not an end-of-sequence one).
    pub fn accept(&mut self, id: u32) -> Result<()> {
        let bytes = self.vocab.trie().token(id).to_vec();
        let Some(matcher) = &mut self.matcher else {
            self.recent.extend_from_slice(&bytes);
            return self.look_for_trigger();
        };
        if let Err(e) = matcher.consume_token(id) {
            return Err(self.error(&e.to_string()));
        }
        self.accepted.extend_from_slice(&bytes);
        if self.trigger.is_some() && matcher.is_stopped() {
            // Complete: free text again until the next trigger.
            self.matcher = None;
            self.accepted.clear();
        }
        Ok(())
    }

    /// Starts the grammar once the trigger appears in the sampled bytes, feeding it
    /// what the token that completed the trigger holds after it.
    fn look_for_trigger(&mut self) -> Result<()> {
        let Some(trigger) = &self.trigger else {
            return Ok(());
        };
        let Some(at) = find(&self.recent, trigger) else {
            // Only a tail shorter than the trigger can still become one.
            let keep = self.recent.len().saturating_sub(trigger.len() - 1);
            self.recent.drain(..keep);
            return Ok(());
        };
        let after = self.recent.split_off(at + trigger.len());
        self.recent.clear();
        let mut matcher = self.constraint.matcher(&self.vocab)?;
        let tokens = self.vocab.trie().greedy_tokenize(&after);
        if matcher.consume_tokens(&tokens).is_err() {
            // The model went on in a way the grammar cannot follow: not ours to mend.
            log::warn!(
                "constrained decoding: the text after {:?} does not fit the grammar; left free",
                self.constraint.trigger.as_deref().unwrap_or_default()
            );
            return Ok(());
        }
        self.accepted = after;
        self.matcher = Some(matcher);
        Ok(())
    }

    fn error(&self, why: &str) -> Error {
        let text = String::from_utf8_lossy(&self.accepted);
        let tail: String = {
            let chars: Vec<char> = text.chars().collect();
            chars[chars.len().saturating_sub(60)..].iter().collect()
        };
        Error::Input(format!(
            "{}: {} (after {:?})",
            self.constraint.what(),
            one_line(why),
            tail
        ))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
