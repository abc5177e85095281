//! Arbitrary `--model` values: a hub name that parses names a repository and file that
//! stay inside the cache once joined to it (the property hf-hub relies on); nothing
//! panics.
//!
//! `cargo +nightly fuzz run hub_spec corpus/hub_spec` from runtime/.

#![no_main]

use std::path::{Component, Path};

use lfm_edge::hub::ModelSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|spec: &str| {
    let Ok(ModelSpec::Hub { repo, file }) = ModelSpec::parse(spec) else {
        return;
    };
    let cache = Path::new("/cache/models");
    let joined = cache.join(&repo).join(file.unwrap_or_default());
    assert!(joined.starts_with(cache), "{spec:?}");
    let inside = |c: Component| matches!(c, Component::RootDir | Component::Normal(_));
    assert!(joined.components().all(inside), "{spec:?}");
    assert!(
        !repo.contains(':') && repo.split('/').count() == 2,
        "{spec:?}"
    );
});
