//! `bench --profile`: where the time of a decoded token goes. Tokens are decoded as
//! `bench` decodes them (`Session::step_greedy`, the argmax on the GPU), and after each the
//! forward graph of that token is launched twice more: once with its dispatches timed
//! one by one (GPU timestamps between dispatches where the adapter writes them inside
//! a pass, around a pass per dispatch where it writes them only at pass boundaries,
//! else on the CPU, one submission per dispatch less an empty submission), once whole
//! in one submission, waited for. The replays run the same kernels on the same buffers
//! at the same position (they advance the conv state again, which changes the values
//! decoded next, not the work).
//!
//! The picks that follow a token's graph (greedy decoding's argmax, sampled decoding's
//! candidates) are timed the same way, over the token's logits, into buffers of their
//! own.
//!
//! A token's wall time less that of its launches submitted alone is the fixed cost of a
//! token outside the GPU: writing the step, recording, the argmax and reading its id
//! back. The launches hold a fixed cost too, that of launching: launches of one
//! workgroup copying 16 bytes measure it. (Timestamps between dispatches cost something
//! themselves: the per-family times can add up to more than the launches submitted
//! alone.)
//!
//! A prompt's batch is profiled the same way ([`profile_prefill`]): the prompt fed as
//! `bench` feeds it, then its first batch's graph replayed, timed dispatch by dispatch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{back_to_depth, prompt, BenchOptions};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, StepUniform, Timestamps};
use crate::model::Model;
use crate::ops;
use crate::session::{Session, SessionOptions};

/// The launches of one kernel family, per decoded token.
#[derive(Clone, Debug)]
pub struct FamilyTime {
    /// The kernel, and for projections the weight they read without its layer
    /// (`Matvec feed_forward.w1`, `Matvec model.embed_tokens` for the tied head).
    pub name: String,
    pub dispatches: usize,
    pub micros: f64,
    /// Weight bytes its launches read per token (projections; 0 for the others).
    pub weight_bytes: u64,
}

impl FamilyTime {
    /// The weight bytes read per second of the family's time, in GB/s, for projections
    /// (infinite where their time measured 0).
    pub fn weight_gb_per_s(&self) -> Option<f64> {
        (self.weight_bytes > 0).then(|| self.weight_bytes as f64 / (self.micros * 1e3))
    }
}

#[derive(Clone, Debug)]
pub struct Profile {
    /// How the dispatches were timed.
    pub timing: Timestamps,
    /// Tokens decoded and replayed.
    pub tokens: usize,
    /// Most time first.
    pub families: Vec<FamilyTime>,
    /// Mean wall time of one `Session::step` and its argmax.
    pub token_micros: f64,
    /// GPU time of a token's pick: the argmax (greedy decoding), and the candidates
    /// (sampled decoding), one launch each.
    pub argmax_micros: f64,
    pub top_micros: f64,
    /// Mean wall time of a token's launches in one submission, waited for.
    pub graph_micros: f64,
    /// What a launch that does next to nothing (one workgroup copying 16 bytes) costs,
    /// by the CPU's clock over a submission of many.
    pub launch_micros: f64,
}

impl Profile {
    pub fn dispatches(&self) -> usize {
        self.families.iter().map(|f| f.dispatches).sum()
    }

    /// A token's wall time outside its launches: the fixed cost of a token on the CPU.
    pub fn fixed_micros(&self) -> f64 {
        self.token_micros - self.graph_micros
    }

    /// The part of the kernels' time a token would take if they did nothing.
    pub fn launch_overhead_micros(&self) -> f64 {
        self.launch_micros * self.dispatches() as f64
    }
}

/// Where the time of a prompt's batch goes.
#[derive(Clone, Debug)]
pub struct PrefillProfile {
    pub timing: Timestamps,
    /// Tokens in the batch (the prompt's, up to `bench`'s batch of 512).
    pub tokens: usize,
    /// Per batch, most time first (no weight bytes: a batch reads a weight once,
    /// whatever its tokens, and its time goes to arithmetic as much as to reading).
    pub families: Vec<FamilyTime>,
    /// Mean wall time of feeding the batch (`Session::feed`, its logits read back).
    pub batch_micros: f64,
    /// Mean wall time of its launches in one submission, waited for.
    pub graph_micros: f64,
}

/// A dispatch's family: the kernel, and for a projection the weight's name with its
/// layer index and any row range dropped, so that the layers add up.
fn family(dispatch: &Dispatch) -> String {
    let kernel = dispatch.key().kernel;
    if !matches!(
        kernel,
        Kernel::Matvec | Kernel::MatvecConv | Kernel::Matmul | Kernel::MatmulRows
    ) {
        return format!("{kernel:?}");
    }
    let name = dispatch.label().split(" rows ").next().unwrap_or_default();
    let name = name.strip_suffix(".weight").unwrap_or(name);
    let name = match name.split_once("layers.") {
        Some((_, rest)) => rest.split_once('.').map_or(rest, |(_, tail)| tail),
        None => name,
    };
    format!("{kernel:?} {name}")
}

/// Decodes `options.gen_tokens` tokens greedily from the prompt's first token, timing
/// each and then each of its dispatches, by the best means the adapter has.
pub fn profile(model: &Arc<Model>, options: &BenchOptions) -> Result<Profile> {
    profile_timed(model, options, model.gpu.timestamps())
}

/// As [`profile`], timing dispatches by `timing`, which the adapter must support (a
/// lesser means than the adapter's best is fine: tests run each on one adapter).
pub fn profile_timed(
    model: &Arc<Model>,
    options: &BenchOptions,
    timing: Timestamps,
) -> Result<Profile> {
    let gpu = &*model.gpu;
    check_timing(gpu, timing)?;
    let tokens = options.gen_tokens;
    if tokens == 0 {
        return Err(Error::Input(
            "bench --profile needs at least one generated token".into(),
        ));
    }
    let (depth, batch) = (options.depth, options.depth.clamp(1, 512));
    let mut session = Session::new(
        model.clone(),
        &SessionOptions {
            max_context: depth + tokens + 1,
            batch,
            snapshot_interval: batch,
            kv_dtype: options.kv_dtype,
            ..SessionOptions::default()
        },
    )?;
    if session.max_context() <= depth + tokens {
        return Err(Error::Input(format!(
            "bench --profile: {} tokens do not fit the context of {}",
            depth + tokens,
            session.max_context()
        )));
    }
    // The tokens already in the cache (--depth), to which each run goes back.
    if depth > 0 {
        session.feed(&prompt(depth, model.config.vocab_size))?;
    }
    // The session's graph, recorded again against its buffers: bind groups built once.
    // A token's launches depend on the keys it sees (its attention may split them).
    let graph = model.forward_graph(session.state())?;
    let launches_at = |pos: usize| -> Vec<&Dispatch> {
        (graph.steps.iter())
            .flat_map(|s| s.dispatches(1, pos as u32 + 1))
            .collect()
    };
    let last = launches_at(depth + tokens - 1);
    let picks = picks(gpu, &session.state().logits, model.config.vocab_size)?;
    let picks: Vec<&Dispatch> = picks.iter().flat_map(|p| p.dispatches()).collect();
    let timer = Timer::new(gpu, timing, last.len())?;
    // Warm-up: pipelines compiled by the driver, pages touched.
    let mut next = prompt(1, model.config.vocab_size)[0];
    for _ in 0..2 {
        next = session.step_greedy(next)?;
        let pos = session.position() - 1;
        timer.time(gpu, &launches_at(pos), 1, pos)?;
    }
    back_to_depth(&mut session, depth)?;
    let (mut wall, mut launches) = (Duration::ZERO, Duration::ZERO);
    let mut by_family: HashMap<String, FamilyTime> = HashMap::new();
    let mut pick_total = [0.0; 2];
    for _ in 0..tokens {
        let start = Instant::now();
        next = session.step_greedy(next)?;
        wall += start.elapsed();
        let pos = session.position() - 1;
        let dispatches = launches_at(pos);
        let times = timer.time(gpu, &dispatches, 1, pos)?;
        for (dispatch, micros) in dispatches.iter().zip(times) {
            family_entry(&mut by_family, dispatch).micros += micros / tokens as f64;
        }
        let times = timer.time(gpu, &picks, 1, pos)?;
        // Each pick is two launches.
        (pick_total.iter_mut().zip(times.chunks(2))).for_each(|(t, d)| *t += d.iter().sum::<f64>());
        launches += timer.submit_and_wait(gpu, &dispatches, 1)?;
    }
    // Launches and weights per token: the last token's, which sees the most keys.
    for dispatch in &last {
        let entry = family_entry(&mut by_family, dispatch);
        entry.dispatches += 1;
        entry.weight_bytes += dispatch.weight_bytes();
    }
    Ok(Profile {
        timing: timer.timing,
        tokens,
        families: most_time_first(by_family),
        token_micros: wall.as_secs_f64() * 1e6 / tokens as f64,
        argmax_micros: pick_total[0] / tokens as f64,
        top_micros: pick_total[1] / tokens as f64,
        graph_micros: launches.as_secs_f64() * 1e6 / tokens as f64,
        launch_micros: launch_micros(gpu, &timer)?,
    })
}

/// Fails where the adapter cannot time dispatches by `timing`.
fn check_timing(gpu: &Gpu, timing: Timestamps) -> Result<()> {
    let rank = |t| match t {
        Timestamps::None => 0,
        Timestamps::PassBoundaries => 1,
        Timestamps::InsidePasses => 2,
    };
    if rank(timing) > rank(gpu.timestamps()) {
        return Err(Error::Input(format!(
            "bench --profile: {} cannot time dispatches by {timing:?}",
            gpu.info.name
        )));
    }
    Ok(())
}

/// Feeds the prompt (`options.prompt_tokens`, its first batch of up to 512) from an
/// empty cache as `bench` does, then replays that batch's graph, timing each of its
/// dispatches, `options.repeat` times.
pub fn profile_prefill(model: &Arc<Model>, options: &BenchOptions) -> Result<PrefillProfile> {
    profile_prefill_timed(model, options, model.gpu.timestamps())
}

/// As [`profile_prefill`], timing dispatches by `timing` (see [`profile_timed`]).
pub fn profile_prefill_timed(
    model: &Arc<Model>,
    options: &BenchOptions,
    timing: Timestamps,
) -> Result<PrefillProfile> {
    let gpu = &*model.gpu;
    check_timing(gpu, timing)?;
    let (repeat, tokens) = (options.repeat, options.prompt_tokens.min(512));
    if tokens == 0 || repeat == 0 {
        return Err(Error::Input(
            "bench --profile needs at least one prompt token and one repeat".into(),
        ));
    }
    let mut session = Session::new(
        model.clone(),
        &SessionOptions {
            max_context: tokens + 1,
            batch: tokens,
            snapshot_interval: tokens,
            kv_dtype: options.kv_dtype,
            ..SessionOptions::default()
        },
    )?;
    let ids = prompt(tokens, model.config.vocab_size);
    let graph = model.forward_graph(session.state())?;
    let n = tokens as u32;
    let launches: Vec<&Dispatch> = (graph.steps.iter())
        .flat_map(|s| s.dispatches(n, n))
        .collect();
    let timer = Timer::new(gpu, timing, launches.len())?;
    // Warm-up, as for decode.
    session.feed(&ids)?;
    timer.time(gpu, &launches, n, 0)?;
    let (mut wall, mut graph_time) = (Duration::ZERO, Duration::ZERO);
    let mut by_family: HashMap<String, FamilyTime> = HashMap::new();
    for _ in 0..repeat {
        session.reset();
        let start = Instant::now();
        session.feed(&ids)?;
        wall += start.elapsed();
        let times = timer.time(gpu, &launches, n, 0)?;
        for (dispatch, micros) in launches.iter().zip(times) {
            family_entry(&mut by_family, dispatch).micros += micros / repeat as f64;
        }
        graph_time += timer.submit_and_wait(gpu, &launches, n)?;
    }
    for dispatch in &launches {
        family_entry(&mut by_family, dispatch).dispatches += 1;
    }
    let mean = |d: Duration| d.as_secs_f64() * 1e6 / repeat as f64;
    Ok(PrefillProfile {
        timing: timer.timing,
        tokens,
        families: most_time_first(by_family),
        batch_micros: mean(wall),
        graph_micros: mean(graph_time),
    })
}

fn most_time_first(families: HashMap<String, FamilyTime>) -> Vec<FamilyTime> {
    let mut families: Vec<FamilyTime> = families.into_values().collect();
    families.sort_by(|a, b| b.micros.total_cmp(&a.micros));
    families
}

/// The time and launches of `dispatch`'s kernel family.
fn family_entry<'a>(
    families: &'a mut HashMap<String, FamilyTime>,
    dispatch: &Dispatch,
) -> &'a mut FamilyTime {
    let name = family(dispatch);
    families.entry(name.clone()).or_insert(FamilyTime {
        name,
        dispatches: 0,
        micros: 0.0,
        weight_bytes: 0,
    })
}

/// The argmax and the candidates over `logits` (`vocab` values), every token allowed,
/// each into a buffer of its own.
fn picks(gpu: &Gpu, logits: &wgpu::Buffer, vocab: usize) -> Result<[ops::Pick; 2]> {
    let every = ops::allow_every(gpu, vocab);
    let id = gpu.zeros("profile argmax", 1)?;
    let record = gpu.zeros("profile candidates", ops::TOP_RECORD_BYTES as usize / 4)?;
    Ok([
        ops::argmax(gpu, logits, vocab, &every, &id)?,
        ops::top_logits(gpu, logits, vocab, &every, &record)?,
    ])
}

/// Launches of the launch probe in one submission.
const PROBES: usize = 64;

/// What a launch that does next to nothing (one workgroup copying 16 bytes) costs: a
/// submission of PROBES of them less an empty one, on the CPU's clock (timestamps
/// between launches would add their own cost), the median of a few.
fn launch_micros(gpu: &Gpu, timer: &Timer) -> Result<f64> {
    let (src, dst) = (gpu.zeros("launch probe", 4)?, gpu.zeros("launch probe", 4)?);
    let probe = crate::ops::copy(gpu, &src, &dst, 16)?;
    let probes = vec![&probe; PROBES];
    let mut times = (0..5)
        .map(|_| {
            let empty = timer.submit_and_wait(gpu, &[], 1)?;
            let full = timer.submit_and_wait(gpu, &probes, 1)?;
            Ok(full.saturating_sub(empty).as_secs_f64() * 1e6 / PROBES as f64)
        })
        .collect::<Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times the dispatches of one token, by one means.
struct Timer {
    timing: Timestamps,
    step: wgpu::Buffer,
    step_group: wgpu::BindGroup,
    /// Timestamp queries (GPU timing only): up to wgpu's 4096 per set.
    queries: Option<Queries>,
}

struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f64,
}

/// Dispatches timed in one submission: its queries fit one set either way.
const CHUNK: usize = (wgpu::QUERY_SET_MAX_QUERIES / 2 - 1) as usize;

impl Timer {
    fn new(gpu: &Gpu, timing: Timestamps, dispatches: usize) -> Result<Timer> {
        let (step, step_group) = gpu.step_binding("profile step", &StepUniform::default())?;
        let queries = (timing != Timestamps::None).then(|| {
            let count = 2 * dispatches.min(CHUNK) as u32;
            let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
            let buffer = |label, usage| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            Queries {
                set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                }),
                resolve: buffer(
                    "profile timestamps",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                staging: buffer(
                    "profile timestamps readback",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
                period_ns: gpu.queue.get_timestamp_period() as f64,
            }
        });
        Ok(Timer {
            timing,
            step,
            step_group,
            queries,
        })
    }

    /// Microseconds each dispatch takes for a batch of `n_tokens` from cache position
    /// `pos`.
    fn time(
        &self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        n_tokens: u32,
        pos: usize,
    ) -> Result<Vec<f64>> {
        let step = StepUniform {
            n_tokens,
            pos: pos as u32,
            _pad: [0; 2],
        };
        gpu.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&step));
        let mut micros = Vec::with_capacity(dispatches.len());
        match &self.queries {
            Some(queries) => {
                for chunk in dispatches.chunks(CHUNK) {
                    micros.extend(self.time_on_gpu(gpu, queries, chunk, n_tokens)?);
                }
            }
            None => {
                let empty = self.submit_and_wait(gpu, &[], n_tokens)?;
                for dispatch in dispatches {
                    let t = self.submit_and_wait(gpu, &[dispatch], n_tokens)?;
                    micros.push(t.saturating_sub(empty).as_secs_f64() * 1e6);
                }
            }
        }
        gpu.check()?;
        Ok(micros)
    }

    /// Timestamps before and after each dispatch, in one submission.
    fn time_on_gpu(
        &self,
        gpu: &Gpu,
        q: &Queries,
        chunk: &[&Dispatch],
        n_tokens: u32,
    ) -> Result<Vec<f64>> {
        let max_per_dim = gpu.limits.max_compute_workgroups_per_dimension;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let written = match self.timing {
            Timestamps::InsidePasses => {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_bind_group(1, &self.step_group, &[]);
                pass.write_timestamp(&q.set, 0);
                for (i, dispatch) in chunk.iter().enumerate() {
                    dispatch.encode(&mut pass, n_tokens, max_per_dim);
                    pass.write_timestamp(&q.set, i as u32 + 1);
                }
                chunk.len() + 1
            }
            _ => {
                for (i, dispatch) in chunk.iter().enumerate() {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("profile"),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &q.set,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    pass.set_bind_group(1, &self.step_group, &[]);
                    dispatch.encode(&mut pass, n_tokens, max_per_dim);
                }
                2 * chunk.len()
            }
        } as u32;
        let bytes = written as u64 * wgpu::QUERY_SIZE as u64;
        encoder.resolve_query_set(&q.set, 0..written, &q.resolve, 0);
        encoder.copy_buffer_to_buffer(&q.resolve, 0, &q.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let ticks: Vec<u64> = gpu.map_and_read(&q.staging, bytes)?;
        let micros = |a: u64, b: u64| b.saturating_sub(a) as f64 * q.period_ns / 1e3;
        Ok(match self.timing {
            Timestamps::InsidePasses => ticks.windows(2).map(|w| micros(w[0], w[1])).collect(),
            _ => ticks.chunks(2).map(|w| micros(w[0], w[1])).collect(),
        })
    }

    /// Wall time of one submission of `dispatches` for a batch of `n_tokens` in one
    /// pass, waited for (the step as the last `time` wrote it).
    fn submit_and_wait(
        &self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        n_tokens: u32,
    ) -> Result<Duration> {
        super::probe::submit_and_wait(gpu, &self.step_group, dispatches, n_tokens)
    }
}
