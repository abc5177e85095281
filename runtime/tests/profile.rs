//! `bench --profile` by each means of timing a dispatch the adapter has (lavapipe
//! writes timestamps inside passes, so all three run here): the same launches found,
//! grouped alike, each timed, for decoded tokens and for a prompt's batch.

mod common;

use lfm_edge::bench::{profile_prefill_timed, profile_timed, BenchOptions};
use lfm_edge::gpu::Timestamps;
use lfm_edge::KvDtype;

#[test]
fn each_timing_finds_the_same_launches() {
    let model = common::load("lfm2moe-tiny");
    let options = BenchOptions {
        prompt_tokens: 1,
        gen_tokens: 2,
        repeat: 1,
        depth: 0,
        kv_dtype: KvDtype::F16,
    };
    let mut shapes = Vec::new();
    for timing in [
        Timestamps::InsidePasses,
        Timestamps::PassBoundaries,
        Timestamps::None,
    ] {
        let profile = match profile_timed(&model, &options, timing) {
            Ok(profile) => profile,
            // An adapter without the timestamps asked for: the lesser means still run.
            Err(e) if timing != Timestamps::None => {
                eprintln!("{timing:?}: {e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(profile.timing, timing);
        assert_eq!(profile.tokens, 2);
        assert!(profile.token_micros > 0.0 && profile.graph_micros > 0.0);
        assert!(profile.launch_micros >= 0.0);
        assert!(profile.argmax_micros >= 0.0 && profile.top_micros >= 0.0);
        assert!(profile.families.iter().all(|f| f.micros >= 0.0));
        assert!(profile.kernel_micros() > 0.0, "{timing:?}: {profile:?}");
        // The projections read the token's weights but the norms', the router's and
        // the conv kernels'.
        let read: u64 = profile.families.iter().map(|f| f.weight_bytes).sum();
        let all = model.decode_weight_bytes();
        assert!(read <= all && read * 100 >= all * 95, "{read} of {all}");
        let mut shape: Vec<(String, usize)> = profile
            .families
            .iter()
            .map(|f| (f.name.clone(), f.dispatches))
            .collect();
        shape.sort();
        shapes.push(shape);
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
}

#[test]
fn each_timing_finds_the_same_batch_launches() {
    let model = common::load("lfm2moe-tiny");
    let options = BenchOptions {
        prompt_tokens: 5,
        gen_tokens: 1,
        repeat: 2,
        depth: 0,
        kv_dtype: KvDtype::F16,
    };
    let mut shapes = Vec::new();
    for timing in [
        Timestamps::InsidePasses,
        Timestamps::PassBoundaries,
        Timestamps::None,
    ] {
        let profile = match profile_prefill_timed(&model, &options, timing) {
            Ok(profile) => profile,
            Err(e) if timing != Timestamps::None => {
                eprintln!("{timing:?}: {e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(profile.timing, timing);
        assert_eq!(profile.tokens, 5);
        assert!(profile.batch_micros > 0.0 && profile.graph_micros > 0.0);
        assert!(profile.families.iter().all(|f| f.micros >= 0.0));
        assert!(profile.kernel_micros() > 0.0, "{timing:?}: {profile:?}");
        let mut shape: Vec<(String, usize)> = profile
            .families
            .iter()
            .map(|f| (f.name.clone(), f.dispatches))
            .collect();
        shape.sort();
        shapes.push(shape);
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
}
