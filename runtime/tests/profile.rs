//! `bench --profile` by each means of timing a dispatch the adapter has (lavapipe
//! writes timestamps inside passes, so all three run here): the same launches found,
//! grouped alike, each timed, for decoded tokens and for a prompt's batch.

mod common;

use lfm_edge::bench::{profile_prefill_timed, profile_timed, BenchOptions, FamilyTime};
use lfm_edge::gpu::Timestamps;
use lfm_edge::KvDtype;

/// Runs `profile` by each means of timing the adapter has (an adapter without the
/// timestamps asked for still runs the lesser means) and checks that each finds the
/// same families with the same launches, each timed.
fn same_families_by_each_timing(profile: impl Fn(Timestamps) -> lfm_edge::Result<Vec<FamilyTime>>) {
    let mut shapes = Vec::new();
    for timing in [
        Timestamps::InsidePasses,
        Timestamps::PassBoundaries,
        Timestamps::None,
    ] {
        let families = match profile(timing) {
            Ok(families) => families,
            Err(e) if timing != Timestamps::None => {
                eprintln!("{timing:?}: {e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(families.iter().all(|f| f.micros >= 0.0), "{families:?}");
        let total: f64 = families.iter().map(|f| f.micros).sum();
        assert!(total > 0.0, "{timing:?}: {families:?}");
        let mut shape: Vec<(String, usize)> = families
            .iter()
            .map(|f| (f.name.clone(), f.dispatches))
            .collect();
        shape.sort();
        shapes.push(shape);
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
}

fn options(prompt_tokens: usize, gen_tokens: usize, repeat: usize) -> BenchOptions {
    BenchOptions {
        prompt_tokens,
        gen_tokens,
        repeat,
        depth: 0,
        kv_dtype: KvDtype::F16,
    }
}

#[test]
fn each_timing_finds_the_same_launches() {
    let model = common::load("lfm2moe-tiny");
    let options = options(1, 2, 1);
    same_families_by_each_timing(|timing| {
        let profile = profile_timed(&model, &options, timing)?;
        assert_eq!(profile.timing, timing);
        assert_eq!(profile.tokens, 2);
        assert!(profile.token_micros > 0.0 && profile.graph_micros > 0.0);
        assert!(profile.launch_micros >= 0.0);
        assert!(profile.argmax_micros >= 0.0 && profile.top_micros >= 0.0);
        // The projections read the token's weights but the norms', the router's and
        // the conv kernels'.
        let read: u64 = profile.families.iter().map(|f| f.weight_bytes).sum();
        let all = model.decode_weight_bytes();
        assert!(read <= all && read * 100 >= all * 95, "{read} of {all}");
        Ok(profile.families)
    });
}

#[test]
fn each_timing_finds_the_same_batch_launches() {
    let model = common::load("lfm2moe-tiny");
    let options = options(5, 1, 2);
    same_families_by_each_timing(|timing| {
        let profile = profile_prefill_timed(&model, &options, timing)?;
        assert_eq!(profile.timing, timing);
        assert_eq!(profile.tokens, 5);
        assert!(profile.batch_micros > 0.0 && profile.graph_micros > 0.0);
        Ok(profile.families)
    });
}
