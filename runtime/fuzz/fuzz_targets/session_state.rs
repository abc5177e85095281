//! Arbitrary bytes as a saved session state, restored into a session of the fixture
//! model (on whatever adapter wgpu finds; lavapipe on CI). With a first byte of 0 the
//! rest goes in as it is; otherwise it follows the prefix a real save starts with
//! (magic, version, length, the model's fingerprint) and gets a valid checksum, so
//! that the fuzzer reaches the fields behind those checks. A restore succeeds or
//! fails; it never panics or allocates beyond what the session holds.
//!
//! `cargo +nightly fuzz run session_state corpus/session_state` from runtime/.

#![no_main]

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use lfm_edge::files::checksum;
use lfm_edge::{Gpu, GpuOptions, Model, Session, SessionOptions};
use libfuzzer_sys::fuzz_target;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/lfm2-tiny-conv-first"
);
/// Magic, version, length and fingerprint: what is copied from a real save.
const PREFIX: usize = 8 + 4 + 8 + 8;
const LENGTH_AT: usize = 12;

/// A session with a few tokens fed, and what it saved.
fn session() -> (Session, Vec<u8>) {
    let gpu = Gpu::new(&GpuOptions::default()).expect("a wgpu adapter");
    let model = Model::load(Path::new(FIXTURE), gpu).expect("the fixture model");
    let mut session = Session::new(Arc::new(model), &SessionOptions::default()).unwrap();
    session.feed(&[1, 2, 3]).unwrap();
    let saved = session.save_state().unwrap();
    (session, saved)
}

/// `rest` behind `saved`'s prefix, with the length and checksum that makes whole.
fn with_valid_prefix(saved: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut bytes = [&saved[..PREFIX], rest].concat();
    let length = (bytes.len() + 8) as u64;
    bytes[LENGTH_AT..LENGTH_AT + 8].copy_from_slice(&length.to_le_bytes());
    let sum = checksum(&bytes);
    bytes.extend(sum.to_le_bytes());
    bytes
}

thread_local! {
    static SESSION: RefCell<(Session, Vec<u8>)> = RefCell::new(session());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    SESSION.with_borrow_mut(|(session, saved)| {
        let bytes = match mode {
            0 => rest.to_vec(),
            _ => with_valid_prefix(saved, rest),
        };
        let _ = session.restore_state(&bytes);
    });
});
