//! `bench`: what `lfm_edge::bench` measured, one `key: value` line each (compare.sh
//! reads them by key).

use lfm_edge::bench::{self, BenchOptions};
use lfm_edge::units::format_size;
use lfm_edge::{Model, Result};

pub fn run(model: &std::sync::Arc<Model>, options: &BenchOptions) -> Result<()> {
    let gpu = &model.gpu;
    let report = bench::bench(model, options)?;
    let probe = bench::copy_bandwidth(gpu)?;
    let c = &model.config;
    let types: Vec<String> = model
        .bytes_by_dtype()
        .iter()
        .map(|(dtype, _, bytes)| format!("{dtype} {}", format_size(*bytes)))
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
    outln!(
        "prefill tok/s: {:.2} ± {:.2} ({} tokens, {} runs)",
        report.prefill.mean,
        report.prefill.stddev,
        options.prompt_tokens,
        options.repeat
    )?;
    outln!(
        "decode tok/s: {:.2} ± {:.2} ({} tokens, {} runs)",
        report.decode.mean,
        report.decode.stddev,
        options.gen_tokens,
        options.repeat
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
    outln!(
        "peak VRAM allocated: {} ({}: weights {}, session {})",
        report.peak_vram_bytes(),
        format_size(report.peak_vram_bytes()),
        format_size(report.weight_vram_bytes),
        format_size(report.session_vram_bytes)
    )?;
    Ok(())
}
