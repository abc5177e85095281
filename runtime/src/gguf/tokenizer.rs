//! The tokenizer of a GGUF file rebuilt from its metadata alone, as HF `tokenizers`
//! objects, so that it encodes as the model's tokenizer.json does.
//!
//! llama.cpp's converter writes a byte-level BPE (`tokenizer.ggml.model` = "gpt2") as the
//! vocabulary, a type per token, the merges and a pre-tokenizer name; the name stands for
//! the split regex that llama.cpp's llama-vocab.cpp hard-codes for it, and for a few
//! defaults. `PRE_TOKENIZERS` lists the names we know with what tokenizer.json does for
//! them: LFM2's "lfm2" (llama-3's split), Qwen's "qwen2" and Mistral's "tekken".

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::file::GgufFile;
use crate::error::{Error, Result};

/// What a family of `tokenizer.ggml.pre` names means: llama.cpp's split (as tokenizer.json
/// spells it; llama.cpp runs an equivalent rewrite without `(?i:…)`) and what the
/// family's tokenizer.json does beside it.
struct PreTokenizer {
    /// The names llama-vocab.cpp gives this split.
    names: &'static [&'static str],
    split: &'static str,
    /// tokenizer.json normalizes the text to NFC before the split (llama.cpp never does).
    nfc: bool,
    /// A piece that is one token in the vocabulary is that token, whatever the merges
    /// would make of it (tiktoken's rule; tokenizer.json's `ignore_merges`).
    ignore_merges: bool,
    /// llama.cpp's default for adding bos, when the file has no
    /// `tokenizer.ggml.add_bos_token`.
    add_bos: bool,
}

/// Numbers in runs of up to three digits.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama-3's, with digits one at a time.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Words split at case changes (camelCase in two), no contractions, digits one at a time,
/// '/' kept with the punctuation before it.
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The names llama.cpp (llama-vocab.cpp, `llama_vocab::impl::load`) maps to these splits.
const PRE_TOKENIZERS: [PreTokenizer; 4] = [
    // LLAMA_VOCAB_PRE_TYPE_LLAMA3. llama.cpp ignores merges for these, but LFM2's
    // tokenizer.json does not, and that is the one we match.
    PreTokenizer {
        names: &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        split: LLAMA3_SPLIT,
        nfc: false,
        ignore_merges: false,
        add_bos: true,
    },
    // LLAMA_VOCAB_PRE_TYPE_QWEN2: Qwen's tokenizers and those derived from them, whose
    // tokenizer.json (transformers' Qwen2Tokenizer) normalizes to NFC.
    PreTokenizer {
        names: &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"],
        split: QWEN2_SPLIT,
        nfc: true,
        ignore_merges: false,
        add_bos: false,
    },
    // Other pre types with Qwen2's split (STABLELM2, HUNYUAN, SOLAR_OPEN), as llama.cpp
    // runs them: without normalization.
    PreTokenizer {
        names: &["stablelm2", "hunyuan", "solar-open"],
        split: QWEN2_SPLIT,
        nfc: false,
        ignore_merges: false,
        add_bos: false,
    },
    // LLAMA_VOCAB_PRE_TYPE_TEKKEN: tiktoken ranks turned into merges, so whole tokens
    // win (transformers' tekken converter sets ignore_merges, as llama.cpp does).
    PreTokenizer {
        names: &["tekken"],
        split: TEKKEN_SPLIT,
        nfc: false,
        ignore_merges: true,
        add_bos: true,
    },
];

/// `tokenizer.ggml.token_type` values (llama.h's llama_token_type).
const TOKEN_TYPE_NORMAL: i32 = 1;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;
const TOKEN_TYPE_UNUSED: i32 = 5;

/// What `crate::Tokenizer` holds, from a GGUF file instead of tokenizer.json and
/// tokenizer_config.json.
pub struct GgufTokenizer {
    pub tokenizer: tokenizers::Tokenizer,
    /// `eos_token_id`, then `eot_token_id` and `eom_token_id` where the file has them.
    pub eos_token_ids: Vec<u32>,
    /// `tokenizer.chat_template`, when the file has one.
    pub chat_template: Option<String>,
}

pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<GgufTokenizer> {
    let pre = pre_tokenizer_of(file)?;
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let types = match file.optional("tokenizer.ggml.token_type", GgufFile::get_i32_array)? {
        Some(types) if types.len() != tokens.len() => {
            return Err(Error::gguf(
                file.path(),
                format!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens",
                    types.len(),
                    tokens.len()
                ),
            ))
        }
        Some(types) => types,
        None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
    };
    let token_id = |key: &str| token_id(file, key, tokens.len());
    let fail = |message: String| Error::gguf(file.path(), message);

    let mut tokenizer = tokenizers::Tokenizer::new(bpe(file, &tokens, &types, pre)?);
    if pre.nfc {
        tokenizer
            .with_normalizer(Some(NFC))
            .map_err(|e| fail(format!("normalizer: {e}")))?;
    }
    tokenizer.with_pre_tokenizer(Some(split_then_bytes(pre.split)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Added tokens are matched whole in the input, before the split. USER_DEFINED is the
    // converter's name for tokenizer.json's non-special added tokens.
    let added = |wanted: i32, special: bool| {
        let with_type = tokens
            .iter()
            .zip(&types)
            .filter(move |(_, &ty)| ty == wanted);
        with_type.map(move |(token, _)| AddedToken::from(*token, special))
    };
    tokenizer
        .add_special_tokens(added(TOKEN_TYPE_CONTROL, true))
        .map_err(|e| fail(format!("special tokens: {e}")))?;
    tokenizer
        .add_tokens(added(TOKEN_TYPE_USER_DEFINED, false))
        .map_err(|e| fail(format!("user-defined tokens: {e}")))?;

    // The file's choice, else llama.cpp's default for the pre-tokenizer name.
    let add = |key: &str, default: bool| -> Result<bool> {
        Ok(file.optional(key, GgufFile::get_bool)?.unwrap_or(default))
    };
    let add_bos = add("tokenizer.ggml.add_bos_token", pre.add_bos)?;
    let add_eos = add("tokenizer.ggml.add_eos_token", false)?;
    let bos = token_id("tokenizer.ggml.bos_token_id")?.filter(|_| add_bos);
    let eos = token_id("tokenizer.ggml.eos_token_id")?.filter(|_| add_eos);
    let affixes = [bos, eos].map(|id| id.map(|id| (tokens[id as usize], id)));
    if affixes.iter().any(Option::is_some) {
        tokenizer.with_post_processor(Some(template(affixes).map_err(fail)?));
    }

    // llama.cpp stops generating at each of these.
    let mut eos_token_ids = Vec::new();
    for kind in ["eos", "eot", "eom"] {
        let id = token_id(&format!("tokenizer.ggml.{kind}_token_id"))?;
        if let Some(id) = id.filter(|id| !eos_token_ids.contains(id)) {
            eos_token_ids.push(id);
        }
    }
    let chat_template = file.optional("tokenizer.chat_template", GgufFile::get_str)?;
    Ok(GgufTokenizer {
        tokenizer,
        eos_token_ids,
        chat_template: chat_template.map(str::to_owned),
    })
}

/// The pre-tokenizer of a byte-level BPE, if its name is one we know.
fn pre_tokenizer_of(file: &GgufFile) -> Result<&'static PreTokenizer> {
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::gguf(
            file.path(),
            format!(
                "tokenizer.ggml.model is {model:?}; only \"gpt2\" (byte-level BPE) is supported"
            ),
        ));
    }
    let name = file.get_str("tokenizer.ggml.pre")?;
    let known = PRE_TOKENIZERS.iter().find(|pre| pre.names.contains(&name));
    known.ok_or_else(|| {
        let supported: Vec<&str> = PRE_TOKENIZERS
            .iter()
            .flat_map(|pre| pre.names)
            .copied()
            .collect();
        Error::gguf(
            file.path(),
            format!(
                "tokenizer.ggml.pre is {name:?}; supported: {}",
                supported.join(", ")
            ),
        )
    })
}

/// The token id stored under `key`, if any, checked to be one of the `n_tokens`.
fn token_id(file: &GgufFile, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(id) = file.optional(key, GgufFile::get_u32)? else {
        return Ok(None);
    };
    if usize::try_from(id).map_or(true, |i| i >= n_tokens) {
        return Err(Error::gguf(
            file.path(),
            format!("{key} is {id}, past the {n_tokens} tokens"),
        ));
    }
    Ok(Some(id))
}

/// The BPE model: every token but the converter's `[PAD{i}]` fillers (UNUSED) at its id,
/// the merges as "left right".
fn bpe(file: &GgufFile, tokens: &[&str], types: &[i32], pre: &PreTokenizer) -> Result<BPE> {
    let fail = |message: String| Error::gguf(file.path(), message);
    let mut vocab = Vocab::default();
    for (id, (token, &ty)) in tokens.iter().zip(types).enumerate() {
        if ty == TOKEN_TYPE_UNUSED {
            continue;
        }
        // id < tokens.len(), which came from a u64 count of strings in the file.
        if let Some(previous) = vocab.insert((*token).to_owned(), id as u32) {
            return Err(fail(format!(
                "tokenizer.ggml.tokens has {token:?} twice (ids {previous} and {id})"
            )));
        }
    }
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, merge)| match merge.split_once(' ') {
            Some((left, right)) => Ok((left.to_owned(), right.to_owned())),
            None => Err(fail(format!(
                "tokenizer.ggml.merges[{i}] is {merge:?}, not \"left right\""
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| fail(format!("tokenizer.ggml.merges: {e}")))
}

/// The regex split, then bytes mapped to printable characters (GPT-2's byte level).
fn split_then_bytes(regex: &str) -> Result<Sequence> {
    let split = Split::new(
        SplitPattern::Regex(regex.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Input(format!("the split regex {regex:?}: {e}")))?;
    let byte_level = ByteLevel::new(false, true, false);
    Ok(Sequence::new(vec![split.into(), byte_level.into()]))
}

/// `bos $A eos` for one sequence and `bos $A eos bos $B eos` (second half type id 1) for a
/// pair, as transformers writes tokenizer.json, with whichever of bos and eos are given.
fn template(affixes: [Option<(&str, u32)>; 2]) -> std::result::Result<TemplateProcessing, String> {
    let [bos, eos] = affixes;
    let sequence = |name: &str, type_id: u32| -> Vec<String> {
        let bos = bos.map(|(token, _)| format!("{token}:{type_id}"));
        let eos = eos.map(|(token, _)| format!("{token}:{type_id}"));
        bos.into_iter()
            .chain([format!("${name}:{type_id}")])
            .chain(eos)
            .collect()
    };
    let special: Vec<(&str, u32)> = affixes.into_iter().flatten().collect();
    TemplateProcessing::builder()
        .try_single(sequence("A", 0))?
        .try_pair([sequence("A", 0), sequence("B", 1)].concat())?
        .special_tokens(special)
        .build()
        .map_err(|e| format!("bos/eos template: {e}"))
}
