//! Arbitrary text as tokenizer_config.json, with a tiny tokenizer.json (of the
//! tokenizer_json corpus, so that an execution is quick) and the fixture's config: its
//! special tokens and chat template, compiled and rendered under the template's fuel
//! and output limits. A render ends in a text or an error, within those limits;
//! nothing panics, hangs or takes memory beyond them.
//!
//! `cargo +nightly fuzz run chat_template corpus/chat_template` from runtime/.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use lfm_edge::{ChatTemplate, Message, ModelConfig, Tokenizer};
use libfuzzer_sys::fuzz_target;

const TOKENIZER_JSON: &str = include_str!("../corpus/tokenizer_json/tiny-bpe.json");
const CONFIG_JSON: &str = include_str!("../../../fixtures/lfm2-tiny-conv-first/config.json");

fuzz_target!(|config_json: &str| {
    static CONFIG: OnceLock<ModelConfig> = OnceLock::new();
    let config = CONFIG.get_or_init(|| ModelConfig::from_json(CONFIG_JSON).expect("config"));
    let dir = Path::new("fuzz");
    let Ok(tokenizer) = Tokenizer::from_json(TOKENIZER_JSON, Some(config_json), dir) else {
        return;
    };
    let Ok(template) = ChatTemplate::for_tokenizer(&tokenizer, config) else {
        return;
    };
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi"),
        Message::new("assistant", "Hello!"),
        Message::new("user", "Again"),
    ];
    for add_generation_prompt in [false, true] {
        if let Ok(text) = template.render(&messages, add_generation_prompt) {
            assert!(text.len() <= 8 << 20);
        }
    }
});
