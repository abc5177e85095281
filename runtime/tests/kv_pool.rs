//! Sessions sharing one KV pool: forks share blocks until they write, a full pool is a
//! clear error, and blocks come back when sessions let go of them.

mod common;

use std::sync::Arc;

use common::{load, max_abs_diff, tokens};
use lfm_edge::{ContextOverflow, KvDtype, Model, Session, SessionOptions};

const SAME: f32 = 1e-4;

fn options() -> SessionOptions {
    SessionOptions {
        kv_dtype: KvDtype::F32,
        batch: 16,
        snapshot_interval: 8,
        max_context: 128,
        ..SessionOptions::default()
    }
}

fn fresh(model: &Arc<Model>, ids: &[u32]) -> Vec<f32> {
    Session::new(model.clone(), &options())
        .unwrap()
        .feed(ids)
        .unwrap()
}

fn check(case: &str, got: &[f32], want: &[f32]) {
    let err = max_abs_diff(got, want);
    eprintln!("{case}: max abs difference {err:.2e}");
    assert!(err <= SAME, "{case}: {err}");
}

#[test]
fn forks_share_blocks_until_they_write() {
    let model = load("lfm2-tiny-attn-first");
    let pool = model.kv_pool(KvDtype::F32, 20).unwrap();
    let (shared, a, b) = (tokens(40, 1), tokens(9, 2), tokens(30, 3));
    let mut parent = Session::new_in(&pool, model.clone(), &options()).unwrap();
    parent.feed(&shared).unwrap();
    assert_eq!(pool.free_blocks(), 20 - 3);
    let mut child = parent.fork().unwrap();
    // The fork holds the same three blocks.
    assert_eq!(pool.free_blocks(), 20 - 3);
    // Writing into the shared, partly filled third block copies it first.
    let got_b = child.feed(&b).unwrap();
    assert_eq!(pool.free_blocks(), 20 - 3 - 1 - 2);
    // The parent's third block is its own now; its fourth is new.
    let got_a = parent.feed(&a).unwrap();
    assert_eq!(pool.free_blocks(), 20 - 3 - 1 - 2 - 1);
    check(
        "parent",
        &got_a,
        &fresh(&model, &[&shared[..], &a[..]].concat()),
    );
    check(
        "child",
        &got_b,
        &fresh(&model, &[&shared[..], &b[..]].concat()),
    );
    drop(child);
    assert_eq!(pool.free_blocks(), 20 - 4);
    parent.rewind(16).unwrap();
    assert_eq!(pool.free_blocks(), 20 - 1);
    drop(parent);
    assert_eq!(pool.free_blocks(), 20);
}

#[test]
fn a_full_pool_is_an_error_naming_it() {
    let model = load("lfm2-tiny-conv-first");
    let pool = model.kv_pool(KvDtype::F16, 3).unwrap();
    let mut one = Session::new_in(&pool, model.clone(), &options()).unwrap();
    one.feed(&tokens(40, 4)).unwrap();
    let mut two = Session::new_in(&pool, model, &options()).unwrap();
    let err = two.feed(&tokens(20, 5)).unwrap_err().to_string();
    assert!(err.contains("KV pool is full"), "{err}");
    drop(one);
    two.reset();
    two.feed(&tokens(20, 5)).unwrap();
}

#[test]
fn a_shift_does_not_disturb_a_fork_sharing_the_blocks() {
    let model = load("lfm2-tiny-attn-first");
    let pool = model.kv_pool(KvDtype::F32, 16).unwrap();
    let shifting = SessionOptions {
        max_context: 48,
        overflow: ContextOverflow::Shift,
        ..options()
    };
    let all = tokens(60, 6);
    let mut parent = Session::new_in(&pool, model.clone(), &shifting).unwrap();
    parent.feed(&all[..40]).unwrap();
    let mut child = parent.fork().unwrap();
    // The parent overflows and shifts the rows the child still reads.
    parent.feed(&all[40..60]).unwrap();
    assert!(parent.position() <= 48);
    let got = child.feed(&all[40..45]).unwrap();
    check(
        "fork after its parent shifted",
        &got,
        &fresh(&model, &all[..45]),
    );
}

#[test]
fn a_saved_state_restores_into_a_shared_pool() {
    let model = load("lfm2moe-tiny");
    let all = tokens(30, 7);
    let mut session = Session::new(model.clone(), &options()).unwrap();
    session.feed(&all[..25]).unwrap();
    let saved = session.save_state().unwrap();
    let want = session.feed(&all[25..]).unwrap();
    let pool = model.kv_pool(KvDtype::F32, 8).unwrap();
    let mut restored = Session::new_in(&pool, model, &options()).unwrap();
    restored.restore_state(&saved).unwrap();
    assert_eq!(pool.free_blocks(), 8 - 2);
    check(
        "restored in a pool",
        &restored.feed(&all[25..]).unwrap(),
        &want,
    );
}
