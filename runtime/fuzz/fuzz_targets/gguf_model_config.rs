//! Arbitrary bytes as a GGUF model: a file that parses must give a config that is
//! checked (counts within the limits, heads that split the width) or an error, and
//! its tokenizer and chat template likewise, never a panic or an unbounded allocation.
//!
//! `cargo +nightly fuzz run gguf_model_config corpus/gguf_model_config` from runtime/.

#![no_main]

use lfm_edge::config::{MAX_CONV_L_CACHE, MAX_LAYERS, MAX_WIDTH};
use lfm_edge::gguf::{model_config, GgufFile};
use lfm_edge::{ChatTemplate, Message, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec(), "fuzz.gguf") else {
        return;
    };
    let Ok(config) = model_config(&file) else {
        return;
    };
    assert!((1..=MAX_LAYERS).contains(&config.n_layers()));
    assert!(config.hidden_size <= MAX_WIDTH && config.vocab_size <= MAX_WIDTH);
    assert_eq!(config.head_dim * config.n_heads, config.hidden_size);
    assert!((1..=MAX_CONV_L_CACHE).contains(&config.conv_l_cache));
    assert!(config.norm_eps > 0.0 && config.rope_theta.is_finite());
    let Ok(tokenizer) = Tokenizer::from_gguf(&file) else {
        return;
    };
    if let Ok(template) = ChatTemplate::for_tokenizer(&tokenizer, &config) {
        let _ = template.render(&[Message::new("user", "Hi")], true);
    }
});
