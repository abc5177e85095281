//! `bench`: what `lfm_edge::bench` measured, one `key: value` line each (compare.sh
//! reads them by key); with `--profile`, then a table of time per kernel family per
//! decoded token, and one per prompt batch.

use lfm_edge::bench::{self, BenchOptions, FamilyTime, PrefillProfile, Profile};
use lfm_edge::gpu::Timestamps;
use lfm_edge::units::format_size;
use lfm_edge::{Model, Result};

pub fn run(model: &std::sync::Arc<Model>, options: &BenchOptions, profile: bool) -> Result<()> {
    let gpu = &model.gpu;
    let report = bench::bench(model, options)?;
    let probe = bench::copy_bandwidth(gpu)?;
    let c = &model.config;
    let types: Vec<String> = model
        .bytes_by_dtype()
        .iter()
        .map(|(dtype, _, bytes)| {
            let bits = dtype.bits_per_weight();
            format!("{dtype} {} ({bits} bits per weight)", format_size(*bytes))
        })
        .collect();
    let gb = |bytes_per_s: f64| bytes_per_s / 1e9;
    outln!("model: {}", model.path.display())?;
    outln!(
        "shape: {}, {} layers, hidden {}, {} parameters ({} active)",
        c.architecture.name(),
        c.n_layers(),
        c.hidden_size,
        model.parameter_count(),
        model.active_parameter_count()
    )?;
    outln!("weights: {}", types.join(", "))?;
    outln!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        gpu.info.name,
        gpu.info.backend,
        gpu.info.device_type,
        gpu.info.driver,
        gpu.info.driver_info
    )?;
    let depth = match options.depth {
        0 => String::new(),
        n => format!(", at depth {n}"),
    };
    outln!(
        "prefill tok/s: {:.2} ± {:.2} ({} tokens, {} runs{depth})",
        report.prefill.mean,
        report.prefill.stddev,
        options.prompt_tokens,
        options.repeat
    )?;
    outln!(
        "decode tok/s: {:.2} ± {:.2} ({} tokens, {} runs{depth})",
        report.decode.mean,
        report.decode.stddev,
        options.gen_tokens,
        options.repeat
    )?;
    let sampled = &bench::SAMPLED;
    outln!(
        "sampled decode tok/s: {:.2} ± {:.2} (temperature {}, top-k {}: candidates read back, not the row)",
        report.sampled_decode.mean,
        report.sampled_decode.stddev,
        sampled.temperature,
        sampled.top_k
    )?;
    outln!(
        "weight bytes per decoded token: {} ({})",
        report.decode_weight_bytes,
        format_size(report.decode_weight_bytes)
    )?;
    outln!(
        "decode GB/s: {:.3} ({:.0}% of the probe)",
        gb(report.decode_bandwidth()),
        100.0 * report.decode_bandwidth() / probe
    )?;
    outln!(
        "probe GB/s: {:.2} (copy kernel, bytes read + written)",
        gb(probe)
    )?;
    // Decode's matvec alone over one large matrix of the model's main weight type.
    let main_dtype = (model.bytes_by_dtype().into_iter())
        .max_by_key(|(_, _, bytes)| *bytes)
        .map(|(dtype, _, _)| dtype);
    if let Some(dtype) = main_dtype {
        let m = bench::matvec_bandwidth(gpu, dtype)?;
        outln!(
            "matvec probe GB/s: {:.2} ({:.0}% of the probe: decode's matvec alone over a {} matrix of {} × {}, weight bytes read)",
            gb(m.bytes_per_s),
            100.0 * m.bytes_per_s / probe,
            m.dtype,
            m.rows,
            m.k
        )?;
    }
    outln!(
        "peak VRAM allocated: {} ({}: weights {}, session {})",
        report.peak_vram_bytes(),
        format_size(report.peak_vram_bytes()),
        format_size(report.weight_vram_bytes),
        format_size(report.session_vram_bytes)
    )?;
    if profile {
        print_profile(&bench::profile(model, options)?)?;
        print_prefill_profile(&bench::profile_prefill(model, options)?)?;
    }
    Ok(())
}

fn print_prefill_profile(p: &PrefillProfile) -> Result<()> {
    let timing = timing_name(p.timing);
    outln!(
        "prefill profile: a batch of {} prompt tokens, timed by {timing}",
        p.tokens
    )?;
    print_families(&p.families, "batch", false)?;
    outln!(
        "batch µs: {:.1} wall, {:.1} for its launches submitted alone ({:.1} tok/s)",
        p.batch_micros,
        p.graph_micros,
        p.tokens as f64 * 1e6 / p.batch_micros
    )
}

fn timing_name(timing: Timestamps) -> &'static str {
    match timing {
        Timestamps::InsidePasses => "GPU timestamps between dispatches",
        Timestamps::PassBoundaries => "GPU timestamps around a pass per dispatch",
        Timestamps::None => "CPU, a submission per dispatch less an empty one",
    }
}

/// The families' table, per `unit` (token or batch), with the projections' weight GB/s
/// where `rates`.
fn print_families(families: &[FamilyTime], unit: &str, rates: bool) -> Result<()> {
    let width = families.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let (rate_head, rate_rule) = if rates {
        (" weight GB/s |", "------------:|")
    } else {
        ("", "")
    };
    let per = format!("dispatches/{unit}");
    let micros = format!("µs/{unit}");
    outln!(
        "| {:width$} | {per} | {micros:>10} |     % |{rate_head}",
        "family"
    )?;
    outln!(
        "|{:-<w$}|{:->p$}:|-----------:|------:|{rate_rule}",
        "",
        "",
        w = width + 2,
        p = per.len() + 1
    )?;
    let kernels: f64 = families.iter().map(|f| f.micros).sum();
    let row = |name: &str, dispatches: usize, micros: f64, rate: String| {
        let rate = if rates {
            format!(" {rate:>11} |")
        } else {
            String::new()
        };
        outln!(
            "| {name:width$} | {dispatches:>p$} | {micros:>10.1} | {:>5.1} |{rate}",
            100.0 * micros / kernels,
            p = per.len()
        )
    };
    for f in families {
        // Three decimals below 1 GB/s (a debug build on lavapipe), so that a rate shows.
        let rate = f.weight_gb_per_s().map_or(String::new(), |r| match r {
            r if r < 1.0 => format!("{r:.3}"),
            r => format!("{r:.1}"),
        });
        row(&f.name, f.dispatches, f.micros, rate)?;
    }
    let dispatches = families.iter().map(|f| f.dispatches).sum();
    row("kernels", dispatches, kernels, String::new())
}

fn print_profile(p: &Profile) -> Result<()> {
    let timing = timing_name(p.timing);
    outln!("profile: {} decoded tokens, timed by {timing}", p.tokens)?;
    print_families(&p.families, "token", true)?;
    outln!(
        "token µs: {:.1} wall, {:.1} for its launches submitted alone, {:.1} outside them (step, record, argmax readback)",
        p.token_micros,
        p.graph_micros,
        p.fixed_micros()
    )?;
    outln!(
        "pick µs: {:.1} for greedy decoding's argmax, {:.1} for sampled decoding's candidates (two launches each)",
        p.argmax_micros,
        p.top_micros
    )?;
    outln!(
        "launch µs: {:.1} for a launch doing next to nothing, {:.1} for the token's {} launches",
        p.launch_micros,
        p.launch_overhead_micros(),
        p.dispatches()
    )?;
    Ok(())
}
