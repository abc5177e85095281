//! The tokenizer rebuilt from a GGUF file's metadata for Qwen's ("qwen2") and Mistral's
//! ("tekken") pre-tokenizers, against HF `tokenizers` on the same vocabulary:
//! fixtures/tokenizers/<pre> holds a tiny tokenizer.json, the GGUF file llama.cpp's
//! converter makes of it and the ids HF gives for tricky texts (all by
//! scripts/make_tokenizer_fixtures.py). Also bos by the file's key or the name's
//! default, and the names refused. No GPU needed.

use std::path::PathBuf;

use lfm_edge::gguf::{tokenizer_from_gguf, GgufFile, Value, ValueType};
use lfm_edge::Tokenizer;
use serde_json::Value as Json;

fn dir(pre: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/tokenizers")
        .join(pre)
}

fn open(pre: &str) -> GgufFile {
    GgufFile::open(&dir(pre).join(format!("{pre}.gguf"))).unwrap()
}

fn reference(pre: &str) -> Json {
    let text = std::fs::read_to_string(dir(pre).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Json) -> Vec<u32> {
    serde_json::from_value(value.clone()).unwrap()
}

/// Non-special added tokens that look like control tokens (`<|...|>`), which llama.cpp's
/// converter stores as CONTROL: the GGUF tokenizer skips them when asked to skip special
/// tokens, tokenizer.json does not (Qwen's fim markers are such tokens).
const CONTROL_IN_GGUF_ONLY: &str = "<|fim_prefix|>";

#[test]
fn gguf_tokenizers_encode_and_decode_as_tokenizer_json() {
    for pre in ["qwen2", "tekken"] {
        let built = tokenizer_from_gguf(&open(pre)).unwrap();
        let built = &built.tokenizer;
        let hf = tokenizers::Tokenizer::from_file(dir(pre).join("tokenizer.json")).unwrap();
        let reference = reference(pre);
        for case in reference["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            let got = built.encode(text, true).unwrap();
            assert_eq!(got.get_ids(), want, "{pre}: {text:?}");
            let tokens: Vec<String> = serde_json::from_value(case["tokens"].clone()).unwrap();
            assert_eq!(got.get_tokens(), tokens, "{pre}: {text:?}");
            assert_eq!(
                hf.encode(text, true).unwrap().get_ids(),
                want,
                "{pre}: {text:?}"
            );

            let decoded = built.decode(&want, false).unwrap();
            assert_eq!(
                decoded,
                case["decoded"].as_str().unwrap(),
                "{pre}: {text:?}"
            );
            let skipped = built.decode(&want, true).unwrap();
            let hf_skipped = case["decoded_skip_special"].as_str().unwrap();
            match text.contains(CONTROL_IN_GGUF_ONLY) {
                false => assert_eq!(skipped, hf_skipped, "{pre}: {text:?}"),
                true => assert_eq!(skipped, hf_skipped.replace(CONTROL_IN_GGUF_ONLY, "")),
            }
        }
        let pair = &reference["pair"]["texts"];
        let pair = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        let got = built.encode(pair, true).unwrap();
        assert_eq!(got.get_ids(), ids(&reference["pair"]["ids"]), "{pre}");
        // The converter's [PAD{i}] fillers are not tokens.
        assert_eq!(built.get_vocab_size(true), hf.get_vocab_size(true), "{pre}");
    }
}

/// The word the merges cannot make but the vocabulary holds: whole with tekken (its
/// tokenizer.json ignores merges for such words, as tiktoken does), in pieces with qwen2.
/// Decomposed accents: composed by qwen2's NFC, kept by tekken.
#[test]
fn merges_and_normalization_follow_the_pre_tokenizer() {
    for (pre, text, pieces) in [
        ("qwen2", " xyzzy", vec!["Ġ", "x", "y", "z", "zy"]),
        ("tekken", " xyzzy", vec!["<s>", "Ġxyzzy"]),
        ("qwen2", "e\u{301}", vec!["Ã©"]),
        ("tekken", "e\u{301}", vec!["<s>", "e", "Ì", "ģ"]),
    ] {
        let built = tokenizer_from_gguf(&open(pre)).unwrap().tokenizer;
        let got = built.encode(text, true).unwrap();
        assert_eq!(got.get_tokens(), pieces, "{pre}: {text:?}");
    }
}

/// Through the crate's `Tokenizer`: the GGUF file and the tokenizer.json directory give
/// the same ids, and the same end-of-sequence ids.
#[test]
fn crate_tokenizer_reads_both_forms_alike() {
    for pre in ["qwen2", "tekken"] {
        let from_gguf = Tokenizer::load(&dir(pre).join(format!("{pre}.gguf"))).unwrap();
        let from_json = Tokenizer::load(&dir(pre)).unwrap();
        for case in reference(pre)["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                from_gguf.encode(text).unwrap(),
                ids(&case["ids"]),
                "{pre}: {text:?}"
            );
            assert_eq!(
                from_json.encode(text).unwrap(),
                ids(&case["ids"]),
                "{pre}: {text:?}"
            );
        }
        assert_eq!(from_gguf.eos_token_ids, from_json.eos_token_ids, "{pre}");
    }
}

// ---------------------------------------------------------------- bos and names

/// A metadata-only GGUF image of `metadata`.
fn gguf_bytes(metadata: &[(String, Value)]) -> Vec<u8> {
    fn string(s: &str) -> Vec<u8> {
        [&(s.len() as u64).to_le_bytes()[..], s.as_bytes()].concat()
    }
    fn type_id(ty: ValueType) -> u32 {
        (0..13)
            .find(|&id| ValueType::from_id(id) == Some(ty))
            .unwrap()
    }
    fn payload(value: &Value) -> Vec<u8> {
        match value {
            Value::U32(v) => v.to_le_bytes().to_vec(),
            Value::I32(v) => v.to_le_bytes().to_vec(),
            Value::Bool(v) => vec![u8::from(*v)],
            Value::String(s) => string(s),
            Value::Array(ty, items) => {
                let head = [type_id(*ty).to_le_bytes(), [0; 4]].concat();
                let count = (items.len() as u64).to_le_bytes();
                let body = items.iter().flat_map(payload);
                head[..4].iter().copied().chain(count).chain(body).collect()
            }
            other => panic!("not written by the fixture script: {other:?}"),
        }
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        out.extend(string(key));
        out.extend(type_id(value.value_type()).to_le_bytes());
        out.extend(payload(value));
    }
    out.resize(out.len().next_multiple_of(32), 0);
    out
}

/// The fixture of `pre` with `key` set to `value`, or dropped for `None`.
fn with(pre: &str, key: &str, value: Option<Value>) -> GgufFile {
    let file = open(pre);
    let mut metadata: Vec<(String, Value)> = file
        .metadata()
        .filter(|(k, _)| *k != key)
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    metadata.extend(value.map(|v| (key.to_owned(), v)));
    GgufFile::from_bytes(gguf_bytes(&metadata), format!("{pre}-edited.gguf")).unwrap()
}

fn first_id(file: &GgufFile) -> Option<u32> {
    let built = tokenizer_from_gguf(file).unwrap().tokenizer;
    built.encode("Hi", true).unwrap().get_ids().first().copied()
}

#[test]
fn bos_follows_the_file_then_llama_cpp_defaults() {
    const KEY: &str = "tokenizer.ggml.add_bos_token";
    for (pre, default_adds) in [("qwen2", false), ("tekken", true)] {
        let bos = open(pre).get_u32("tokenizer.ggml.bos_token_id").unwrap();
        let plain = tokenizer_from_gguf(&open(pre)).unwrap().tokenizer;
        let plain = plain.encode("Hi", false).unwrap().get_ids()[0];
        for (value, adds) in [
            (None, default_adds),
            (Some(true), true),
            (Some(false), false),
        ] {
            let file = with(pre, KEY, value.map(Value::Bool));
            let want = if adds { bos } else { plain };
            assert_eq!(first_id(&file), Some(want), "{pre}, {KEY} = {value:?}");
        }
    }
}

/// Every name of llama.cpp's Qwen2 pre type reads as "qwen2"; the pre types that share
/// only the split run it without NFC, as llama.cpp does.
#[test]
fn names_of_one_split_tokenize_alike() {
    let encode = |name: &str, text: &str| {
        let file = with(
            "qwen2",
            "tokenizer.ggml.pre",
            Some(Value::String(name.into())),
        );
        let built = tokenizer_from_gguf(&file).unwrap().tokenizer;
        built.encode(text, true).unwrap().get_ids().to_vec()
    };
    let (composed, decomposed) = ("I'VE 12345 café", "cafe\u{301}");
    for name in ["deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] {
        for text in [composed, decomposed] {
            assert_eq!(
                encode(name, text),
                encode("qwen2", text),
                "{name}: {text:?}"
            );
        }
    }
    for name in ["stablelm2", "hunyuan", "solar-open"] {
        assert_eq!(encode(name, composed), encode("qwen2", composed), "{name}");
        assert_ne!(
            encode(name, decomposed),
            encode("qwen2", decomposed),
            "{name}"
        );
    }
}

#[test]
fn unknown_pre_tokenizers_are_refused_with_the_supported_ones() {
    for name in ["qwen35", "gpt-2", "llama4", ""] {
        let file = with(
            "qwen2",
            "tokenizer.ggml.pre",
            Some(Value::String(name.into())),
        );
        let err = tokenizer_from_gguf(&file).err().unwrap().to_string();
        assert!(
            err.starts_with("qwen2-edited.gguf: ")
                && err.contains(&format!("tokenizer.ggml.pre is {name:?}; supported: "))
                && ["lfm2", "qwen2", "tekken", "llama-bpe"]
                    .iter()
                    .all(|n| err.contains(n)),
            "{err}"
        );
    }
}
