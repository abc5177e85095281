//! Arbitrary text as config.json: a config that loads has its counts within the
//! limits and heads that split the width; anything else is an error, never a panic,
//! a hang or an allocation sized by the file.
//!
//! `cargo +nightly fuzz run config_json corpus/config_json` from runtime/.

#![no_main]

use lfm_edge::config::{MAX_CONTEXT, MAX_LAYERS, MAX_WIDTH};
use lfm_edge::ModelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(config) = ModelConfig::from_json(text) else {
        return;
    };
    assert!((1..=MAX_LAYERS).contains(&config.n_layers()));
    for width in [config.hidden_size, config.ff_size, config.vocab_size] {
        assert!((1..=MAX_WIDTH).contains(&width));
    }
    assert!((1..=MAX_CONTEXT).contains(&config.max_position_embeddings));
    assert_eq!(config.head_dim * config.n_heads, config.hidden_size);
    assert_eq!(config.n_heads % config.n_kv_heads, 0);
    assert!(config.norm_eps > 0.0 && config.norm_eps.is_finite());
    assert!(config.rope_theta > 0.0 && config.rope_theta.is_finite());
    if let Some(moe) = &config.moe {
        assert!(moe.top_k >= 1 && moe.top_k <= moe.n_experts);
        assert!(moe.n_dense_layers <= config.n_layers());
    }
});
