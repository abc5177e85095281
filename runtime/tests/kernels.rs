//! Each kernel family on the GPU (lavapipe where there is no GPU) against a small CPU
//! reference, through the public `ops` constructors and the same encoding a session
//! uses: one `Step` uniform at `@group(1)`, dispatches recorded into one compute pass.
//!
//! Weights are rounded to their dtype once; the reference decodes those same rounded
//! values, so only the kernels' arithmetic is under test. References run in f64.
//! Every case also runs with a tiny per-dimension workgroup limit, which forces
//! `Dispatch::encode` to spill the grid into y and the kernels to flatten it back.
//! `cargo test --test kernels -- --nocapture` prints the largest error of each family.

mod common;

use std::sync::{Arc, OnceLock};

use common::Rng;
use half::{bf16, f16};
use lfm_edge::config::{Architecture, AttentionTemperature, Rope, Yarn};
use lfm_edge::dtype::DType;
use lfm_edge::gpu::{Dispatch, Gpu, GpuOptions, PickChunks, Reduce, Tuning};
use lfm_edge::ops::{self, GpuTensor, Linear, LinearOutput, ShortConv};
use lfm_edge::sampler::TopLogits;
use lfm_edge::ModelConfig;

// ---------------------------------------------------------------------------------
// Device, buffers, launches
// ---------------------------------------------------------------------------------

fn gpu() -> &'static Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(&GpuOptions::default()).expect("no wgpu adapter"))
}

/// Per-dimension workgroup limits every case runs under: the device's own, and one
/// small enough that every grid here spills into y (with a ragged last row).
fn grid_limits() -> [u32; 2] {
    [gpu().limits.max_compute_workgroups_per_dimension, 3]
}

/// A read-write f32 buffer holding `values` (readable with `Gpu::read_f32`).
fn buffer(label: &str, values: &[f32]) -> wgpu::Buffer {
    let b = gpu().zeros(label, values.len()).unwrap();
    gpu()
        .queue
        .write_buffer(&b, 0, bytemuck::cast_slice(values));
    b
}

fn read(b: &wgpu::Buffer, len: usize) -> Vec<f32> {
    gpu().read_f32(b, len).unwrap()
}

/// Bound where an op has no bias.
fn no_bias() -> wgpu::Buffer {
    gpu().zeros("no bias", 1).unwrap()
}

/// A batch as the session describes it to the kernels.
#[derive(Clone, Copy, Debug)]
struct Batch {
    n_tokens: u32,
    pos: u32,
}

impl Batch {
    fn new(n_tokens: usize, pos: usize) -> Batch {
        Batch {
            n_tokens: n_tokens as u32,
            pos: pos as u32,
        }
    }
}

/// Records `dispatches` for `batch` in one compute pass, as `Session::run_batch` does,
/// submits, and fails on any wgpu error.
fn run(batch: Batch, max_per_dim: u32, dispatches: &[&Dispatch]) {
    common::run_dispatches(gpu(), batch.n_tokens, batch.pos, max_per_dim, dispatches);
}

// ---------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------

/// A weight tensor at `dtype` precision, and the values it holds decoded back to f32.
fn weight(name: &str, dtype: DType, shape: &[usize], values: &[f32]) -> (GpuTensor, Vec<f32>) {
    assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
    let (bytes, rounded): (Vec<u8>, Vec<f32>) = match dtype {
        DType::F32 => (bytemuck::cast_slice(values).to_vec(), values.to_vec()),
        DType::F16 => {
            let h: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            let bits: Vec<u16> = h.iter().map(|v| v.to_bits()).collect();
            (
                bytemuck::cast_slice(&bits).to_vec(),
                h.iter().map(|v| v.to_f32()).collect(),
            )
        }
        DType::BF16 => {
            let b: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            let bits: Vec<u16> = b.iter().map(|v| v.to_bits()).collect();
            (
                bytemuck::cast_slice(&bits).to_vec(),
                b.iter().map(|v| v.to_f32()).collect(),
            )
        }
        quantized => panic!("{quantized} weights are built from raw blocks, not values"),
    };
    let tensor =
        GpuTensor::upload(gpu(), &format!("{name}.{dtype}"), dtype, shape, &[&bytes]).unwrap();
    (tensor, rounded)
}

const ALL_DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

// ---------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------

/// Largest `|got - want| / (1 + |want|)`, checked against `tol`; the panic names the
/// case and the first element out of tolerance.
fn assert_close(case: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / (1.0 + w.abs());
        assert!(
            err <= tol,
            "{case}: element {i} is {g}, expected {w} (error {err:e} > {tol:e})"
        );
        worst = worst.max(err);
    }
    worst
}

/// Prints a family's largest error (shown with `-- --nocapture`).
fn report(family: &str, worst: f32) {
    println!("{family}: max error {worst:e}");
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// `x / sqrt(mean(x²) + eps) * w`.
fn rmsnorm_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
    let scale = 1.0 / (dot(x, x) / x.len() as f64 + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &w)| v as f64 * scale * w as f64)
        .collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn to_f32(v: impl IntoIterator<Item = f64>) -> Vec<f32> {
    v.into_iter().map(|x| x as f32).collect()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn embedding_gathers_rows() {
    let (vocab, hidden) = (11, 301); // odd width: 16-bit rows straddle u32 words
    let tokens: [u32; 6] = [0, 10, 3, 10, 7, 1];
    let mut rng = Rng(1);
    let ids = gpu()
        .upload("tokens", bytemuck::cast_slice(&tokens))
        .unwrap();
    let batch = Batch::new(tokens.len(), 0);
    let mut worst = 0.0f32;
    for dtype in ALL_DTYPES {
        let (table, values) = weight(
            "embed",
            dtype,
            &[vocab, hidden],
            &rng.vec(vocab * hidden, 2.0),
        );
        let out = gpu().zeros("out", tokens.len() * hidden).unwrap();
        let d = ops::embedding(gpu(), &ids, &table, &out).unwrap();
        let want: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| &values[t as usize * hidden..][..hidden])
            .copied()
            .collect();
        for limit in grid_limits() {
            run(
                batch,
                limit,
                &d.dispatches(batch.n_tokens, batch.pos + batch.n_tokens),
            );
            let case = format!("embedding {dtype} limit {limit}");
            worst = worst.max(assert_close(&case, &read(&out, want.len()), &want, 0.0));
        }
    }
    report("embedding", worst);
}

#[test]
fn rmsnorm_rows() {
    let (n, rows, eps) = (300, 5, 1e-5);
    let mut rng = Rng(2);
    let mut worst = 0.0f32;
    for dtype in ALL_DTYPES {
        let (w, w_values) = weight("norm", dtype, &[n], &rng.vec(n, 1.5));
        let x_values = rng.vec(rows * n, 3.0);
        let x = buffer("x", &x_values);
        let out = gpu().zeros("out", rows * n).unwrap();
        let d = ops::rmsnorm(gpu(), &x, &w, eps, &out).unwrap();
        let want: Vec<f32> = x_values
            .chunks(n)
            .flat_map(|row| to_f32(rmsnorm_ref(row, &w_values, eps)))
            .collect();
        for limit in grid_limits() {
            run(Batch::new(rows, 0), limit, &[&d]);
            let case = format!("rmsnorm {dtype} limit {limit}");
            worst = worst.max(assert_close(&case, &read(&out, want.len()), &want, 1e-5));
        }
    }
    report("rmsnorm", worst);
}

/// What `ops::linear` should leave in `out` (which held `before`).
fn linear_ref(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (k, n): (usize, usize),
    batch: Batch,
    output: LinearOutput,
    before: &[f32],
) -> Vec<f32> {
    let n_tokens = batch.n_tokens as usize;
    // (row of x, row of out)
    let rows: Vec<(usize, usize)> = match output {
        LinearOutput::Rows | LinearOutput::Accumulate => (0..n_tokens).map(|t| (t, t)).collect(),
        LinearOutput::LastRow => vec![(n_tokens - 1, 0)],
        LinearOutput::Columns { .. } => panic!("tests/linear.rs checks columns of shared rows"),
    };
    let mut out = before.to_vec();
    for (t, row) in rows {
        for j in 0..n {
            let mut y = dot(&x[t * k..][..k], &w[j * k..][..k]);
            y += bias.map_or(0.0, |b| b[j] as f64);
            let o = &mut out[row * n + j];
            if output == LinearOutput::Accumulate {
                y += *o as f64;
            }
            *o = y as f32;
        }
    }
    out
}

/// One projection at one dtype: the tensors, and the values they hold for the reference.
struct Projection {
    weight: (GpuTensor, Vec<f32>),
    bias: Option<(GpuTensor, Vec<f32>)>,
}

/// Runs `ops::linear` for `batch` into an `out` holding random rows (so that writes to
/// the wrong rows, or a missing accumulate, show) and returns the largest error.
fn check_linear(p: &Projection, output: LinearOutput, batch: Batch, rng: &mut Rng) -> f32 {
    let (n, k) = (p.weight.0.shape[0], p.weight.0.shape[1]);
    let x_values = rng.vec(batch.n_tokens as usize * k, 1.0);
    let before = rng.vec((batch.pos + batch.n_tokens) as usize * n, 1.0);
    let bias_values = p.bias.as_ref().map(|b| &b.1[..]);
    let want = linear_ref(
        &x_values,
        &p.weight.1,
        bias_values,
        (k, n),
        batch,
        output,
        &before,
    );
    let (x, no_bias) = (buffer("x", &x_values), no_bias());
    let mut worst = 0.0f32;
    for limit in grid_limits() {
        let out = buffer("out", &before);
        let op = Linear {
            weight: &p.weight.0,
            bias: p.bias.as_ref().map(|b| &b.0),
            x: &x,
            out: &out,
            output,
            gate: None,
            norm: None,
        };
        let step = ops::linear(gpu(), op, &no_bias).unwrap();
        run(
            batch,
            limit,
            &step.dispatches(batch.n_tokens, batch.pos + batch.n_tokens),
        );
        let case = format!(
            "linear {} {output:?} {batch:?} bias {} limit {limit}",
            p.weight.0.dtype,
            p.bias.is_some()
        );
        worst = worst.max(assert_close(&case, &read(&out, want.len()), &want, 1e-4));
    }
    worst
}

#[test]
fn linear_every_output_mode_dtype_and_path() {
    // One token takes the matvec path, several the tiled matmul. None of the sizes are
    // multiples of matmul's 32 x 64 x 16 tiles; 130 outputs span three 64-wide tiles.
    let mut rng = Rng(3);
    let mut worst = 0.0f32;
    let outputs = [
        LinearOutput::Rows,
        LinearOutput::Accumulate,
        LinearOutput::LastRow,
    ];
    for dtype in ALL_DTYPES {
        for (k, n) in [(72, 100), (18, 130)] {
            let weight_values = rng.vec(n * k, 1.0);
            let bias_values = rng.vec(n, 1.0);
            for with_bias in [false, true] {
                let p = Projection {
                    weight: weight("w", dtype, &[n, k], &weight_values),
                    bias: with_bias.then(|| weight("b", dtype, &[n], &bias_values)),
                };
                for (output, n_tokens) in outputs.iter().flat_map(|&o| [(o, 1), (o, 5), (o, 37)]) {
                    let err = check_linear(&p, output, Batch::new(n_tokens, 6), &mut rng);
                    worst = worst.max(err);
                }
            }
        }
    }
    report("linear", worst);
}

/// Each token's q, k and v side by side in one row, as the attention projections write
/// them for the kernels after them (a session's `qkv`).
fn qkv_rows(c: &ModelConfig, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
    let rows = q.chunks(q_dim).zip(k.chunks(kv_dim)).zip(v.chunks(kv_dim));
    rows.flat_map(|((q, k), v)| [q, k, v].concat()).collect()
}

/// Per-head RMSNorm (where `norm` is given) then rotate-half RoPE over `x` (n_tokens,
/// n_heads, d) with cos/sin scaled by `factor`, then q's attention temperature
/// `1 + beta · ln(1 + floor(position / floor_scale))`: batch token t is at position
/// `pos + t`. The angles are recomputed here in f64, independently of `ops::rope_table`.
fn rope_ref(x: &[f32], norm: Option<&[f32]>, d: usize, rope: &Rope, batch: Batch) -> Vec<f32> {
    let half = d / 2;
    let n_heads = x.len() / d / batch.n_tokens as usize;
    let factor = rope.attention_factor() as f64;
    let mut out = x.to_vec();
    for t in 0..batch.n_tokens as usize {
        let position = batch.pos as usize + t;
        let temperature = rope.temperature.map_or(1.0, |temp| {
            1.0 + temp.beta as f64 * (1.0 + (position / temp.floor_scale) as f64).ln()
        });
        for head in 0..n_heads {
            let base = (t * n_heads + head) * d;
            let normed = match norm {
                Some(norm) => rmsnorm_ref(&x[base..][..d], norm, ROPE_EPS),
                None => x[base..][..d].iter().map(|&v| v as f64).collect(),
            };
            for i in 0..half {
                let angle = position as f64 / ROPE_THETA.powf(2.0 * i as f64 / d as f64);
                let (sin, cos) = angle.sin_cos();
                let (sin, cos) = (sin * factor, cos * factor);
                let (a, b) = (normed[i], normed[i + half]);
                out[base + i] = ((a * cos - b * sin) * temperature) as f32;
                out[base + i + half] = ((b * cos + a * sin) * temperature) as f32;
            }
        }
    }
    out
}

const ROPE_THETA: f64 = 10_000.0;
const ROPE_EPS: f32 = 1e-5;

/// A config for the rope kernel: LFM2's plain RoPE with q/k norms, or (`ministral`)
/// no norms, an attention factor and an attention temperature that steps every 5
/// positions.
fn rope_config(d: usize, ministral: bool) -> ModelConfig {
    let mut c = attention_config(2, 1, d);
    c.norm_eps = ROPE_EPS;
    c.rope = Rope::plain(ROPE_THETA as f32);
    if ministral {
        c.architecture = Architecture::Ministral3;
        c.rope.yarn = Some(Yarn {
            factor: 1.0,
            original_context: 5,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: 1.25,
            truncate: true,
        });
        c.rope.temperature = Some(AttentionTemperature {
            beta: 0.1,
            floor_scale: 5,
        });
    }
    c
}

/// Runs `ops::rope` for `batch` over `c`'s q, k and v rows, with q/k norms of type
/// `norm_dtype` where given, into a paged KV cache of `cache`'s type. Checks q and k,
/// rotated in their columns of the rows (v's left as they were), against `rope_ref`,
/// and the cache at the batch's positions: exactly the keys left in the rows, and the
/// values, as the cache's type stores them. Returns the largest error of the rows.
fn check_rope(
    c: &ModelConfig,
    norm_dtype: Option<DType>,
    cache: DType,
    batch: Batch,
    rng: &mut Rng,
) -> f32 {
    let (d, tokens, kv) = (c.head_dim, batch.n_tokens as usize, c.kv_dim());
    let seen = (batch.pos + batch.n_tokens) as usize;
    let blocks = lfm_edge::kv_pool::blocks_for(seen);
    let table = ops::rope_table(&Rope::plain(ROPE_THETA as f32), d, seen);
    let table = gpu()
        .upload("rope table", bytemuck::cast_slice(&table))
        .unwrap();
    let mut norm = |name, dtype| weight(name, dtype, &[d], &rng.vec(d, 1.5));
    let norms = norm_dtype.map(|dtype| [norm("q_layernorm", dtype), norm("k_layernorm", dtype)]);
    let norm_values = |i: usize| norms.as_ref().map(|n| n[i].1.as_slice());
    let q_values = rng.vec(tokens * c.q_dim(), 2.0);
    let k_values = rng.vec(tokens * kv, 2.0);
    // Values across f16's range: subnormals, ties, large ones.
    let mut v_values = rng.vec(tokens * kv, 4.0);
    v_values[..6].copy_from_slice(&[1.0e-6, -3.0e-5, 65000.0, 2049.0, 0.1, -0.0]);
    // k's heads take no attention temperature.
    let k_rope = Rope {
        temperature: None,
        ..c.rope.clone()
    };
    let q_want = rope_ref(&q_values, norm_values(0), d, &c.rope, batch);
    let k_want = rope_ref(&k_values, norm_values(1), d, &k_rope, batch);
    let want = qkv_rows(c, &q_want, &k_want, &v_values);
    // A cache's rows as the kernel should leave them: the batch's at its positions (in
    // the blocks the page table gives), the others untouched (zero).
    let cache_rows = |values: &[f32]| {
        let mut logical = vec![0.0; seen * kv];
        logical[batch.pos as usize * kv..].copy_from_slice(values);
        paged(&logical, kv, blocks)
    };
    let (pages, physical) = cache_rows(&v_values);
    let words = if cache == DType::F16 {
        physical.len() / 2
    } else {
        physical.len()
    };
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let none = no_bias();
    let mut worst = 0.0f32;
    for limit in grid_limits() {
        let qkv = buffer("qkv", &qkv_rows(c, &q_values, &k_values, &v_values));
        let k_cache = gpu().zeros("k cache", words).unwrap();
        let v_cache = gpu().zeros("v cache", words).unwrap();
        let (out, partials) = (gpu().zeros("out", 1).unwrap(), gpu().zeros("p", 1).unwrap());
        let op = ops::Rope {
            label: "rope",
            q_norm: norms.as_ref().map(|n| &n[0].0),
            k_norm: norms.as_ref().map(|n| &n[1].0),
            table: &table,
            qkv: &qkv,
            pages: &pages,
            k_cache: &k_cache,
            v_cache: &v_cache,
            cache_dtype: cache,
            out: &out,
            partials: &partials,
        };
        run(batch, limit, &[&ops::rope(gpu(), c, &op, &none).unwrap()]);
        let case = format!(
            "rope d {d} {:?} norms {norm_dtype:?} cache {cache} limit {limit}",
            c.architecture
        );
        let got = read(&qkv, want.len());
        worst = worst.max(assert_close(&case, &got, &want, 1e-4));
        let k_got: Vec<f32> = got
            .chunks(c.qkv_dim())
            .flat_map(|row| &row[c.q_dim()..][..kv])
            .copied()
            .collect();
        for (buffer, values) in [(&k_cache, &k_got), (&v_cache, &v_values)] {
            let (_, physical) = cache_rows(values);
            let got = read_cache(buffer, cache, physical.len());
            assert_eq!(bits(&got), bits(&stored(cache, &physical)), "{case}");
        }
    }
    worst
}

#[test]
fn rope_rotates_heads_and_stores_keys_and_values() {
    // Positions 14..19 straddle two blocks of the paged cache.
    let batch = Batch::new(5, 14);
    let mut rng = Rng(4);
    let mut worst = 0.0f32;
    for d in [16, 64] {
        for (ministral, norms) in [
            (false, Some(DType::F32)),
            (false, Some(DType::BF16)),
            (true, None),
        ] {
            // A workgroup per kv head and token (heads in pairs), and two per kv head
            // (16 heads, 8 to a workgroup), the first rotating and storing the key.
            for (heads, kv_heads) in [(4, 2), (16, 1)] {
                let mut c = rope_config(d, ministral);
                (c.n_heads, c.n_kv_heads) = (heads, kv_heads);
                for cache in [DType::F32, DType::F16] {
                    worst = worst.max(check_rope(&c, norms, cache, batch, &mut rng));
                }
            }
        }
    }
    report("rope", worst);
}

/// Causal softmax(q kᵀ / sqrt(d)) v: batch token t sees cache rows 0..=pos + t.
fn attention_ref(q: &[f32], k: &[f32], v: &[f32], c: &ModelConfig, batch: Batch) -> Vec<f32> {
    let (d, heads, kv_heads) = (c.head_dim, c.n_heads, c.n_kv_heads);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = Vec::new();
    for t in 0..batch.n_tokens as usize {
        for head in 0..heads {
            let query = &q[(t * heads + head) * d..][..d];
            let kv_head = head / (heads / kv_heads);
            let key = |i: usize| &k[(i * kv_heads + kv_head) * d..][..d];
            let value = |i: usize| &v[(i * kv_heads + kv_head) * d..][..d];
            let n_keys = batch.pos as usize + t + 1;
            let scores: Vec<f64> = (0..n_keys).map(|i| dot(query, key(i)) * scale).collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            out.extend((0..d).map(|i| {
                let mixed: f64 = (0..n_keys).map(|j| weights[j] * value(j)[i] as f64).sum();
                (mixed / total) as f32
            }));
        }
    }
    out
}

/// A one-layer attention config: `heads` query heads of `head_dim` over `kv_heads`.
fn attention_config(heads: usize, kv_heads: usize, head_dim: usize) -> ModelConfig {
    let json = format!(
        r#"{{"model_type": "lfm2", "vocab_size": 8, "hidden_size": {},
            "num_hidden_layers": 1, "num_attention_heads": {heads},
            "num_key_value_heads": {kv_heads}, "intermediate_size": 8,
            "block_auto_adjust_ff_dim": false, "layer_types": ["full_attention"]}}"#,
        heads * head_dim
    );
    let config = ModelConfig::from_json(&json).unwrap();
    assert_eq!(config.head_dim, head_dim);
    config
}

/// A page table over `blocks` blocks that maps positions to blocks in reverse order,
/// and `logical` (positions, width) laid out in those blocks.
fn paged(logical: &[f32], width: usize, blocks: usize) -> (wgpu::Buffer, Vec<f32>) {
    let b = lfm_edge::kv_pool::BLOCK_TOKENS;
    let pages: Vec<u32> = (0..blocks as u32).rev().collect();
    let mut physical = vec![0.0; blocks * b * width];
    for (p, row) in logical.chunks(width).enumerate() {
        let at = pages[p / b] as usize * b + p % b;
        physical[at * width..][..width].copy_from_slice(row);
    }
    let table = gpu().upload("pages", bytemuck::cast_slice(&pages)).unwrap();
    (table, physical)
}

/// Runs `ops::attention` for `batch` over a `cache`-typed, paged cache of random keys
/// and values (rows past the batch hold huge values: reading one would wreck the
/// result), its queries beside keys and values that it must not read in their rows.
fn check_attention(config: &ModelConfig, batch: Batch, cache: DType, rng: &mut Rng) -> f32 {
    let (q_width, kv_width) = (config.n_heads * config.head_dim, config.kv_dim());
    let seen = (batch.pos + batch.n_tokens) as usize;
    let blocks = lfm_edge::kv_pool::blocks_for(seen + 4);
    let mut pages = None;
    let mut cache_rows = |name| {
        let mut values = rng.vec(seen * kv_width, 2.0);
        values.resize((seen + 4) * kv_width, 1.0e4);
        let (table, physical) = paged(&values, kv_width, blocks);
        pages = Some(table);
        let (tensor, _) = weight(name, cache, &[physical.len()], &physical);
        // The reference reads the logical values as the cache stores them.
        let logical = stored(cache, &values);
        (tensor, logical)
    };
    let ((k, k_values), (v, v_values)) = (cache_rows("k"), cache_rows("v"));
    let pages = pages.unwrap();
    let q_values = rng.vec(batch.n_tokens as usize * q_width, 2.0);
    let want = attention_ref(&q_values, &k_values, &v_values, config, batch);
    let beside = vec![1.0e4; batch.n_tokens as usize * kv_width];
    let qkv = buffer("qkv", &qkv_rows(config, &q_values, &beside, &beside));
    let out = gpu().zeros("out", want.len()).unwrap();
    let (k, v) = (k.buffer().unwrap(), v.buffer().unwrap());
    let buffers = [&qkv, &pages, k, v, &out];
    let d = ops::attention(gpu(), "attention", config, cache, buffers).unwrap();
    let mut worst = 0.0f32;
    for limit in grid_limits() {
        run(batch, limit, &[&d]);
        let case = format!(
            "attention {}/{} heads of {} {cache} cache {batch:?} limit {limit}",
            config.n_heads, config.n_kv_heads, config.head_dim
        );
        worst = worst.max(assert_close(&case, &read(&out, want.len()), &want, 1e-4));
    }
    worst
}

#[test]
fn attention_causal_gqa_over_cache() {
    let mut rng = Rng(5);
    let mut worst = 0.0f32;
    // GQA ratio 3, head_dim 32: 70 cached + 3 new keys spans two 64-key blocks; also a
    // prefill from 0 and a decode step that ends a third block.
    let config = attention_config(6, 2, 32);
    for batch in [Batch::new(3, 70), Batch::new(5, 0), Batch::new(1, 191)] {
        for cache in [DType::F32, DType::F16] {
            worst = worst.max(check_attention(&config, batch, cache, &mut rng));
        }
    }
    // The largest head_dim the kernel takes: each thread owns 4 dimensions.
    let config = attention_config(4, 2, 256);
    worst = worst.max(check_attention(
        &config,
        Batch::new(3, 70),
        DType::F32,
        &mut rng,
    ));
    report("attention", worst);
}

/// A single token's RoPE and attention in one launch (`ops::rope_attention`, a
/// workgroup per group of q heads sharing a kv head: 3, 1 and 4 heads below) give the
/// output, and leave the cache, that `ops::rope` then `ops::attention` (a workgroup per
/// head) give: bit for bit, with and without q/k norms, with an attention temperature,
/// GQA and one kv head per q head, both cache types, at the first position, across a
/// block boundary and past the attention's first block of keys.
#[test]
fn rope_attention_is_rope_then_attention() {
    let mut rng = Rng(6);
    for (d, ministral, norms, heads) in [
        (64, false, Some(DType::F32), (6, 2)),
        (32, true, None, (3, 3)),
        (128, false, Some(DType::BF16), (4, 1)),
    ] {
        let mut c = rope_config(d, ministral);
        (c.n_heads, c.n_kv_heads) = heads;
        for cache in [DType::F32, DType::F16] {
            for pos in [0, 15, 16, 70] {
                check_rope_attention(&c, norms, cache, pos, &mut rng);
            }
        }
    }
}

fn check_rope_attention(
    c: &ModelConfig,
    norm_dtype: Option<DType>,
    cache: DType,
    pos: usize,
    rng: &mut Rng,
) {
    let (d, kv) = (c.head_dim, c.kv_dim());
    let blocks = lfm_edge::kv_pool::blocks_for(pos + 1);
    let table = ops::rope_table(&Rope::plain(ROPE_THETA as f32), d, pos + 1);
    let table = gpu()
        .upload("rope table", bytemuck::cast_slice(&table))
        .unwrap();
    let mut norm = |name, dtype| weight(name, dtype, &[d], &rng.vec(d, 1.5)).0;
    let norms = norm_dtype.map(|dtype| [norm("q_layernorm", dtype), norm("k_layernorm", dtype)]);
    // Earlier positions' keys and values, and the token's q, k and v.
    let earlier = [rng.vec(pos * kv, 2.0), rng.vec(pos * kv, 2.0)];
    let row = qkv_rows(
        c,
        &rng.vec(c.q_dim(), 2.0),
        &rng.vec(kv, 2.0),
        &rng.vec(kv, 2.0),
    );
    let none = no_bias();
    let batch = Batch::new(1, pos);
    let limit = gpu().limits.max_compute_workgroups_per_dimension;
    let mut results = Vec::new();
    for fused in [false, true] {
        let caches = earlier.clone().map(|mut values| {
            values.resize((pos + 1) * kv, 0.0);
            let (pages, physical) = paged(&values, kv, blocks);
            (
                pages,
                weight("cache", cache, &[physical.len()], &physical).0,
            )
        });
        let [(pages, k_cache), (_, v_cache)] = &caches;
        let qkv = buffer("qkv", &row);
        let out = gpu().zeros("out", c.q_dim()).unwrap();
        let partials = gpu().zeros("partials", ops::partials_len(c)).unwrap();
        let op = ops::Rope {
            label: "rope",
            q_norm: norms.as_ref().map(|n| &n[0]),
            k_norm: norms.as_ref().map(|n| &n[1]),
            table: &table,
            qkv: &qkv,
            pages,
            k_cache: k_cache.buffer().unwrap(),
            v_cache: v_cache.buffer().unwrap(),
            cache_dtype: cache,
            out: &out,
            partials: &partials,
        };
        if fused {
            run(
                batch,
                limit,
                &[&ops::rope_attention(gpu(), c, &op, &none).unwrap()],
            );
        } else {
            let attend = [&qkv, pages, op.k_cache, op.v_cache, &out];
            let attention = ops::attention(gpu(), "attention", c, cache, attend).unwrap();
            run(
                batch,
                limit,
                &[&ops::rope(gpu(), c, &op, &none).unwrap(), &attention],
            );
        }
        let cache_words = |b: &wgpu::Buffer| gpu().read::<u32>(b, 0, b.size()).unwrap();
        results.push((
            read(&out, c.q_dim()),
            cache_words(op.k_cache),
            cache_words(op.v_cache),
        ));
    }
    let case = format!(
        "d {d} {}/{} heads {:?} norms {norm_dtype:?} cache {cache} position {pos}",
        c.n_heads, c.n_kv_heads, c.architecture
    );
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(results[0].0.iter().all(|v| v.is_finite()), "{case}");
    assert_eq!(bits(&results[1].0), bits(&results[0].0), "{case}: output");
    assert_eq!(results[1].1, results[0].1, "{case}: keys");
    assert_eq!(results[1].2, results[0].2, "{case}: values");
}

/// out[t] = C[t] * (bias + Σ_k w[c, k] · (B·x)[t - (L-1) + k]) over the whole sequence
/// `bcx` (tokens, B | C | x), zero before its start.
fn shortconv_ref(
    bcx: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    hidden: usize,
    l: usize,
) -> Vec<f32> {
    let token = |t: usize| &bcx[t * 3 * hidden..][..3 * hidden];
    let bx = |t: usize, c: usize| token(t)[c] as f64 * token(t)[2 * hidden + c] as f64;
    let tokens = bcx.len() / (3 * hidden);
    let mut out = Vec::with_capacity(tokens * hidden);
    for t in 0..tokens {
        for c in 0..hidden {
            let mut y = bias.map_or(0.0, |b| b[c] as f64);
            for k in 0..l {
                if let Some(s) = (t + k).checked_sub(l - 1) {
                    y += w[c * l + k] as f64 * bx(s, c);
                }
            }
            out.push((token(t)[hidden + c] as f64 * y) as f32);
        }
    }
    out
}

/// Feeds `sequence` (tokens, B | C | x) through `ops::shortconv` + `ops::shortconv_state`
/// in batches of `batches` tokens, as a session would, checking every batch's output
/// and the final state against the reference over the whole sequence.
fn check_shortconv(
    weight: &(GpuTensor, Vec<f32>),
    bias: Option<&(GpuTensor, Vec<f32>)>,
    sequence: &[f32],
    batches: &[usize],
    max_per_dim: u32,
) -> f32 {
    let (hidden, l) = (weight.0.shape[0], weight.0.shape[2]);
    let width = 3 * hidden;
    let bias_values = bias.map(|b| &b.1[..]);
    let want = shortconv_ref(sequence, &weight.1, bias_values, hidden, l);
    let max_batch = *batches.iter().max().unwrap();
    let bcx = gpu().zeros("bcx", max_batch * width).unwrap();
    let state = gpu().zeros("state", (l - 1) * hidden).unwrap();
    let previous = gpu().zeros("previous", (l - 1) * hidden).unwrap();
    let out = gpu().zeros("out", max_batch * hidden).unwrap();
    let no_bias = no_bias();
    let op = ShortConv {
        weight: &weight.0,
        bias: bias.map(|b| &b.0),
        bcx: &bcx,
        state: &state,
        previous: &previous,
        out: &out,
    };
    let conv = ops::shortconv(gpu(), &op, &no_bias).unwrap();
    let update = ops::shortconv_state(gpu(), &op, &no_bias).unwrap();
    let token = ops::shortconv_token(gpu(), &op, &no_bias).unwrap();
    let name = format!(
        "shortconv {} bias {} limit {max_per_dim}",
        weight.0.dtype,
        bias.is_some()
    );
    let mut worst = 0.0f32;
    let mut start = 0;
    for &n in batches {
        let rows = &sequence[start * width..(start + n) * width];
        gpu()
            .queue
            .write_buffer(&bcx, 0, bytemuck::cast_slice(rows));
        let batch = Batch::new(n, start);
        // As the forward graph runs them: a single token in one launch, which keeps
        // the state it found.
        let before = read(&state, (l - 1) * hidden);
        match n {
            1 => run(batch, max_per_dim, &[&token]),
            _ => run(batch, max_per_dim, &[&conv, &update]),
        }
        if n == 1 {
            let kept = read(&previous, before.len());
            assert_eq!(kept, before, "{name} {batch:?}: the state before the token");
        }
        let expected = &want[start * hidden..(start + n) * hidden];
        let got = read(&out, n * hidden);
        worst = worst.max(assert_close(
            &format!("{name} {batch:?}"),
            &got,
            expected,
            1e-5,
        ));
        start += n;
    }
    // The state ends as the last L-1 values of B·x, oldest first.
    let tail: Vec<f32> = sequence[(start + 1 - l) * width..]
        .chunks(width)
        .flat_map(|token| (0..hidden).map(move |c| token[c] * token[2 * hidden + c]))
        .collect();
    let got = read(&state, tail.len());
    worst.max(assert_close(
        &format!("{name} final state"),
        &got,
        &tail,
        1e-6,
    ))
}

#[test]
fn shortconv_carries_state_across_batches() {
    let (hidden, l) = (300, 3); // more than one workgroup of channels, not a multiple
    let batches = [4, 1, 1, 2, 1];
    let tokens: usize = batches.iter().sum();
    let mut rng = Rng(6);
    let mut worst = 0.0f32;
    for dtype in [DType::F32, DType::BF16] {
        let w = weight("conv", dtype, &[hidden, 1, l], &rng.vec(hidden * l, 1.0));
        let b = weight("conv bias", dtype, &[hidden], &rng.vec(hidden, 1.0));
        for bias in [None, Some(&b)] {
            let sequence = rng.vec(tokens * 3 * hidden, 2.0);
            for limit in grid_limits() {
                worst = worst.max(check_shortconv(&w, bias, &sequence, &batches, limit));
            }
        }
    }
    report("shortconv", worst);
}

#[test]
fn swiglu_gates_in_place() {
    let (ff, n_tokens) = (300, 3);
    let mut rng = Rng(7);
    let mut worst = 0.0f32;
    let gate_values = rng.vec(n_tokens * ff, 6.0);
    let up_values = rng.vec(n_tokens * ff, 2.0);
    let want: Vec<f32> = gate_values
        .iter()
        .zip(&up_values)
        .map(|(&g, &u)| (silu(g as f64) * u as f64) as f32)
        .collect();
    let gate = buffer("gate", &gate_values);
    for limit in grid_limits() {
        let up = buffer("up", &up_values);
        let d = ops::swiglu(gpu(), "swiglu", &gate, &up, ff).unwrap();
        run(Batch::new(n_tokens, 0), limit, &[&d]);
        let case = format!("swiglu limit {limit}");
        worst = worst.max(assert_close(&case, &read(&up, want.len()), &want, 1e-5));
    }
    report("swiglu", worst);
}

/// The cache as `dtype` stores `values`: f32 as is, f16 rounded to nearest even (the
/// half crate's conversion is the reference for the kernel's integer rounding).
fn stored(dtype: DType, values: &[f32]) -> Vec<f32> {
    match dtype {
        DType::F16 => values.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        _ => values.to_vec(),
    }
}

/// Decodes `len` cache elements read back as u32 words.
fn read_cache(b: &wgpu::Buffer, dtype: DType, len: usize) -> Vec<f32> {
    let words = if dtype == DType::F16 { len / 2 } else { len };
    let words: Vec<u32> = gpu().read(b, 0, words as u64 * 4).unwrap();
    match dtype {
        DType::F16 => words
            .iter()
            .flat_map(|w| [*w as u16, (*w >> 16) as u16])
            .map(|h| f16::from_bits(h).to_f32())
            .collect(),
        _ => words.iter().map(|w| f32::from_bits(*w)).collect(),
    }
}

#[test]
fn kv_shift_moves_rows_and_rotates_keys_back() {
    let (heads, d) = (2, 16);
    let config = attention_config(heads * 2, heads, d);
    let kv = config.kv_dim();
    let (rows, max_pos) = (48, 48);
    let blocks = lfm_edge::kv_pool::blocks_for(rows);
    let table = ops::rope_table(&Rope::plain(ROPE_THETA as f32), d, max_pos);
    let table = gpu()
        .upload("rope table", bytemuck::cast_slice(&table))
        .unwrap();
    let mut rng = Rng(9);
    let mut worst = 0.0f32;
    // Positions 30..35 move to 13..18, across blocks: keys turn back by 17 positions.
    let shift = ops::KvShift {
        src: 30,
        dst: 13,
        rows: 5,
        rotate: true,
    };
    for dtype in [DType::F32, DType::F16] {
        for rotate in [false, true] {
            let (_, values) = weight("cache", dtype, &[rows * kv], &rng.vec(rows * kv, 2.0));
            let (pages, physical) = paged(&values, kv, blocks);
            let (cache, _) = weight("cache", dtype, &[physical.len()], &physical);
            let mut want = values.clone();
            for r in 0..shift.rows {
                for head in 0..heads {
                    let from = &values[((shift.src + r) * heads + head) * d..][..d];
                    let to = ((shift.dst + r) * heads + head) * d;
                    for i in 0..d / 2 {
                        let angle = -((shift.src - shift.dst) as f64)
                            / ROPE_THETA.powf(2.0 * i as f64 / d as f64);
                        let (sin, cos) = if rotate { angle.sin_cos() } else { (0.0, 1.0) };
                        let (a, b) = (from[i] as f64, from[i + d / 2] as f64);
                        want[to + i] = (a * cos - b * sin) as f32;
                        want[to + i + d / 2] = (b * cos + a * sin) as f32;
                    }
                }
            }
            let (_, want) = paged(&stored(dtype, &want), kv, blocks);
            let op = ops::KvShift { rotate, ..shift };
            let buffers = [&table, &pages, cache.buffer().unwrap()];
            let d = ops::kv_shift(gpu(), &config, dtype, buffers, op).unwrap();
            run(Batch::new(1, 0), 3, &[&d]);
            let case = format!("kv_shift {dtype} rotate {rotate}");
            let tol = if dtype == DType::F16 { 2e-3 } else { 1e-5 };
            let got = read_cache(cache.buffer().unwrap(), dtype, physical.len());
            worst = worst.max(assert_close(&case, &got, &want, tol));
        }
    }
    report("kv_shift", worst);
}

#[test]
fn copy_moves_whole_buffers() {
    let values: Vec<f32> = (0..1000).map(|i| i as f32 - 500.0).collect();
    for limit in grid_limits() {
        let (src, dst) = (buffer("src", &values), buffer("dst", &[0.0; 1000]));
        let copy = ops::copy(gpu(), &src, &dst, 4000).unwrap();
        run(Batch::new(1, 0), limit, &[&copy]);
        assert_eq!(read(&dst, values.len()), values, "limit {limit}");
    }
    let small = buffer("small", &[0.0; 4]);
    assert!(
        ops::copy(gpu(), &small, &small, 32).is_err(),
        "past the end"
    );
}

// ---------------------------------------------------------------------------------
// 1-bit, 2-bit and ternary GGUF weights (Q1_0, Q2_0, TQ1_0, TQ2_0)
// ---------------------------------------------------------------------------------

/// The adapters the low-bit kernels run on: the GPU launch shapes with integer half
/// decoding, the CPU ones with the device's own, and the device's own shapes with 16 KiB
/// bindings, so that the tables and matrices below are bound in several row ranges.
fn low_bit_gpus() -> &'static [Arc<Gpu>; 3] {
    static GPUS: OnceLock<[Arc<Gpu>; 3]> = OnceLock::new();
    GPUS.get_or_init(|| {
        use lfm_edge::gpu::{HalfDecode, Tuning};
        [
            GpuOptions {
                tuning: Some(Tuning::GPU),
                halves: Some(HalfDecode::Integer),
                ..GpuOptions::default()
            },
            GpuOptions {
                tuning: Some(Tuning::CPU),
                ..GpuOptions::default()
            },
            GpuOptions {
                max_binding_size: Some(LOW_BIT_BINDING),
                ..GpuOptions::default()
            },
        ]
        .map(|options| Gpu::new(&options).expect("no wgpu adapter"))
    })
}

const LOW_BIT_BINDING: u64 = 16 << 10;

/// Blocks of 18, 54 and 66 bytes: in rows of one block (or three) every other row
/// starts mid-word.
const LOW_BIT_TYPES: [DType; 4] = [DType::Q1_0, DType::Q2_0, DType::TQ1_0, DType::TQ2_0];

/// Random blocks of `dtype` (every bit pattern), their f16 scales finite and of either
/// sign, and the weights `gguf::dequantize` reads from them.
fn low_bit_weights(dtype: DType, elements: usize, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let mut bytes: Vec<u8> = (0..dtype.bytes_for(elements))
        .map(|_| rng.next_u64() as u8)
        .collect();
    let &[scale] = common::scale_offsets(dtype) else {
        panic!("{dtype} has more than one scale");
    };
    for block in bytes.chunks_mut(dtype.block_bytes()) {
        let d = f16::from_f32(0.05 * rng.uniform(1.0));
        block[scale..scale + 2].copy_from_slice(&d.to_le_bytes());
    }
    let values = lfm_edge::gguf::dequantize(common::ggml_type(dtype), &bytes).unwrap();
    (bytes, values)
}

fn upload_on(gpu: &Gpu, name: &str, dtype: DType, shape: &[usize], bytes: &[u8]) -> GpuTensor {
    GpuTensor::upload(gpu, name, dtype, shape, &[bytes]).unwrap()
}

fn buffer_on(gpu: &Gpu, label: &str, values: &[f32]) -> wgpu::Buffer {
    let b = gpu.zeros(label, values.len()).unwrap();
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(values));
    b
}

/// The embedding gather reads rows of packed bits exactly: rows of one block (half of
/// them starting mid-word) and of two, and tables bound in several row ranges.
#[test]
fn low_bit_embedding_gathers_rows() {
    let mut rng = Rng(41);
    let tokens: [u32; 7] = [0, 999, 3, 517, 998, 1, 640];
    let mut parts_seen = 0;
    for dtype in LOW_BIT_TYPES {
        for hidden in [1, 2].map(|blocks| blocks * dtype.block_elements()) {
            let vocab = 1000;
            let (bytes, values) = low_bit_weights(dtype, vocab * hidden, &mut rng);
            let want: Vec<f32> = tokens
                .iter()
                .flat_map(|&t| &values[t as usize * hidden..][..hidden])
                .copied()
                .collect();
            for gpu in low_bit_gpus() {
                let table = upload_on(gpu, "embed", dtype, &[vocab, hidden], &bytes);
                parts_seen = parts_seen.max(ops::row_parts(gpu, &table).unwrap().len());
                let ids = gpu.upload("tokens", bytemuck::cast_slice(&tokens)).unwrap();
                let out = gpu.zeros("out", want.len()).unwrap();
                let step = ops::embedding(gpu, &ids, &table, &out).unwrap();
                let max = gpu.limits.max_compute_workgroups_per_dimension;
                let n = tokens.len() as u32;
                common::run_dispatches(gpu, n, 0, max, &step.dispatches(n, n));
                let got = gpu.read_f32(&out, want.len()).unwrap();
                let case = format!("embedding {dtype} hidden {hidden}, {:?}", gpu.limits);
                assert_close(&case, &got, &want, 0.0);
            }
        }
    }
    assert!(parts_seen > 1, "no table was split");
}

/// Matvec (one token, and the last-row logits path) and matmul (a batch) of the low-bit
/// weights under both launch shapes and split bindings, against f64 dot products
/// of the dequantized weights. The error is taken relative to the sum of the terms'
/// magnitudes: random signs make large terms that cancel.
#[test]
fn low_bit_projections_match_the_dequantizer() {
    let mut rng = Rng(42);
    let mut worst = 0.0f64;
    let mut parts_seen = 0;
    for dtype in LOW_BIT_TYPES {
        for k in [1, 3].map(|blocks| blocks * dtype.block_elements()) {
            // 600 rows of 1 or 3 blocks: blocks start mid-word in every other row; at 3
            // blocks the matrix takes several 16 KiB bindings.
            let n = 600;
            let (bytes, w) = low_bit_weights(dtype, n * k, &mut rng);
            for n_tokens in [1usize, 5] {
                let x = rng.vec(n_tokens * k, 1.0);
                for gpu in low_bit_gpus() {
                    let weight = upload_on(gpu, "w", dtype, &[n, k], &bytes);
                    parts_seen = parts_seen.max(ops::row_parts(gpu, &weight).unwrap().len());
                    let x_buffer = buffer_on(gpu, "x", &x);
                    let none = gpu.zeros("none", 1).unwrap();
                    for output in [LinearOutput::Rows, LinearOutput::LastRow] {
                        let rows: Vec<usize> = match output {
                            LinearOutput::LastRow => vec![n_tokens - 1],
                            _ => (0..n_tokens).collect(),
                        };
                        let out = gpu.zeros("out", rows.len() * n).unwrap();
                        let op = Linear {
                            weight: &weight,
                            bias: None,
                            x: &x_buffer,
                            out: &out,
                            output,
                            gate: None,
                            norm: None,
                        };
                        let step = ops::linear(gpu, op, &none).unwrap();
                        let max = gpu.limits.max_compute_workgroups_per_dimension;
                        let count = n_tokens as u32;
                        common::run_dispatches(gpu, count, 0, max, &step.dispatches(count, count));
                        let got = gpu.read_f32(&out, rows.len() * n).unwrap();
                        for (o, &t) in rows.iter().enumerate() {
                            for j in 0..n {
                                let (xr, wr) = (&x[t * k..][..k], &w[j * k..][..k]);
                                let want = dot(xr, wr);
                                let magnitude: f64 =
                                    xr.iter().zip(wr).map(|(&a, &b)| (a * b).abs() as f64).sum();
                                let err = (got[o * n + j] as f64 - want).abs() / (1.0 + magnitude);
                                assert!(
                                    err < 1e-5,
                                    "{dtype} {n}x{k}, {n_tokens} tokens, {output:?}, {:?}, \
                                     binding {}: row {j} of token {t} is {}, expected {want}",
                                    gpu.tuning.prefill,
                                    gpu.limits.max_storage_buffer_binding_size,
                                    got[o * n + j]
                                );
                                worst = worst.max(err);
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(parts_seen > 1, "no matrix was split");
    report("low-bit linear", worst as f32);
}

// ---------------------------------------------------------------------------------
// Greedy decoding's argmax
// ---------------------------------------------------------------------------------

/// The GPU argmax agrees with `sampler::argmax` (the first maximum) over rows longer
/// and shorter than its workgroup and its chunk, with ties (in one chunk and in
/// several), a maximum in the last slot and −∞ rows; NaNs count as −∞; with every token
/// allowed and with some (`masks`).
#[test]
fn argmax_picks_the_first_maximum() {
    let mut rng = Rng(21);
    let mut cases: Vec<Vec<f32>> = [1, 3, 256, 1000, 65536]
        .map(|n| rng.vec(n, 4.0))
        .into_iter()
        .collect();
    let mut tied = rng.vec(700, 1.0);
    (tied[17], tied[300], tied[699]) = (9.0, 9.0, 9.0);
    cases.push(tied);
    let mut last = rng.vec(513, 1.0);
    last[512] = 5.0;
    cases.push(last);
    // Ties in different chunks (1024 logits each), and the largest in the last one.
    let mut chunks = rng.vec(5000, 1.0);
    (chunks[1500], chunks[1030], chunks[4999]) = (7.0, 7.0, 7.0);
    cases.push(chunks);
    let mut at_end = rng.vec(4097, 1.0);
    at_end[4096] = 3.0;
    cases.push(at_end);
    cases.push(vec![f32::NEG_INFINITY; 300]);
    cases.push(vec![f32::NEG_INFINITY; 3000]);
    for (gpu, values) in pick_gpus()
        .iter()
        .flat_map(|g| cases.iter().map(move |c| (g, c)))
    {
        let mut with_nan = values.clone();
        with_nan.push(f32::NAN);
        for row in [values, &with_nan] {
            for (mask, allowed) in masks(gpu, row.len()) {
                let want = lfm_edge::sampler::argmax(&masked(row, &mask));
                let logits = buffer_on(gpu, "logits", row);
                let tokens = buffer_on(gpu, "tokens", &[0.0; 4]);
                let pick = ops::argmax(gpu, &logits, row.len(), &allowed, &tokens).unwrap();
                run_picks(gpu, &pick);
                let got: Vec<u32> = gpu.read(&tokens, 0, 4).unwrap();
                let (chunks, sums) = (gpu.tuning.pick_chunks, gpu.reduce);
                let case = format!("{} values, {chunks:?}, {sums:?}", row.len());
                assert_eq!(got[0], want, "argmax of {case}");
            }
        }
    }
}

/// The adapter's device, and one whose picks take the smallest chunks (a GPU's) and
/// sum through workgroup memory, so that rows of a few thousand logits span several
/// chunks, and both ways of summing run, on any adapter.
fn pick_gpus() -> [&'static Arc<Gpu>; 2] {
    static SMALL: OnceLock<Arc<Gpu>> = OnceLock::new();
    let small = SMALL.get_or_init(|| {
        let tuning = Tuning {
            pick_chunks: PickChunks::SMALLEST,
            ..gpu().tuning
        };
        let options = GpuOptions {
            tuning: Some(tuning),
            reduce: Some(Reduce::Workgroup),
            ..GpuOptions::default()
        };
        Gpu::new(&options).expect("no wgpu adapter")
    });
    [gpu(), small]
}

/// Both launches of `pick`, in one pass.
fn run_picks(gpu: &Gpu, pick: &ops::Pick) {
    let max_per_dim = gpu.limits.max_compute_workgroups_per_dimension;
    common::run_dispatches(gpu, 1, 0, max_per_dim, &pick.dispatches());
}

/// Masks of `n` tokens (a bit each, as the pick kernels read them) with their buffers:
/// every token allowed, and two in five.
fn masks(gpu: &Gpu, n: usize) -> [(Vec<u32>, wgpu::Buffer); 2] {
    let every = vec![u32::MAX; n.div_ceil(32)];
    let mut some = vec![0u32; n.div_ceil(32)];
    for i in (0..n).filter(|i| (i * 7 + 3) % 5 < 2) {
        some[i / 32] |= 1 << (i % 32);
    }
    [every, some].map(|mask| {
        let bits: Vec<f32> = mask.iter().map(|&w| f32::from_bits(w)).collect();
        let allowed = buffer_on(gpu, "allowed", &bits);
        (mask, allowed)
    })
}

/// `row` with the tokens `mask` forbids at −∞.
fn masked(row: &[f32], mask: &[u32]) -> Vec<f32> {
    (row.iter().enumerate())
        .map(|(i, &l)| match mask[i / 32] >> (i % 32) & 1 {
            1 => l,
            _ => f32::NEG_INFINITY,
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Sampled decoding's candidates
// ---------------------------------------------------------------------------------

/// The GPU's candidates are the logits above the row's `TOP_RANK`-th largest (in
/// `f32::total_cmp`'s order, NaN and −∞ never among them), with that bound and the
/// row's softmax mass, as the CPU finds them (`TopLogits::of_row`): over rows shorter
/// and longer than the rank and the workgroup, a vocabulary's 65 536, ties across the
/// rank, negative rows with −0 and +0, a row with fewer numbers than the rank, rows of
/// several chunks (with exactly the rank above every chunk's bound), and −∞ rows; NaNs count as −∞; with every token allowed and with
/// some (`masks`).
#[test]
fn top_logits_are_the_logits_above_the_bound() {
    let mut rng = Rng(23);
    let mut cases: Vec<Vec<f32>> = [1, 3, 255, 256, 257, 1000, 65536]
        .map(|n| rng.vec(n, 8.0))
        .into_iter()
        .collect();
    let mut tied = rng.vec(2000, 1.0);
    tied[100..400].fill(0.75);
    cases.push(tied);
    let mut signed: Vec<f32> = rng.vec(600, 3.0).iter().map(|v| -v.abs()).collect();
    (signed[5], signed[6], signed[7]) = (-0.0, 0.0, -0.0);
    cases.push(signed);
    let mut sparse = vec![f32::NEG_INFINITY; 5000];
    for i in (0..5000).step_by(50) {
        sparse[i] = rng.uniform(4.0);
    }
    cases.push(sparse);
    // Across chunks (4096 logits each): the largest all in one chunk, and in none of
    // them the rank; ties at the bound in every chunk; a chunk of fewer logits than the
    // rank after full ones.
    let ascending: Vec<f32> = (0..10000).map(|i| i as f32 / 100.0).collect();
    cases.push(ascending);
    let mut spread = rng.vec(9000, 1.0);
    for i in (0..9000).step_by(40) {
        spread[i] = 2.5;
    }
    cases.push(spread);
    cases.push(rng.vec(8292, 2.0));
    // Exactly `TOP_RANK` logits above the largest chunk bound, half in each chunk.
    let mut exact = vec![0.0; 8192];
    for i in 0..128 {
        (exact[i], exact[4096 + i]) = (10.0 + i as f32 / 64.0, 20.0 + i as f32 / 64.0);
    }
    cases.push(exact);
    cases.push(vec![f32::NEG_INFINITY; 300]);
    let temperature = 0.7;
    for (gpu, values) in pick_gpus()
        .iter()
        .flat_map(|g| cases.iter().map(move |c| (g, c)))
    {
        let mut with_nan = values.clone();
        with_nan.push(f32::NAN);
        for row in [values, &with_nan] {
            for (mask, allowed) in masks(gpu, row.len()) {
                let logits = buffer_on(gpu, "logits", row);
                let words = ops::TOP_RECORD_BYTES as usize / 4;
                let record = buffer_on(gpu, "record", &vec![0.0; words]);
                let pick = ops::top_logits(gpu, &logits, row.len(), &allowed, &record).unwrap();
                pick.write_params(&gpu.queue, &ops::top_params(row.len(), temperature));
                run_picks(gpu, &pick);
                let words: Vec<u32> = gpu.read(&record, 0, ops::TOP_RECORD_BYTES).unwrap();
                let got = TopLogits::from_record(&words).unwrap();

                let want = TopLogits::of_row(&masked(row, &mask), Some(temperature));
                let sorted = |top: &TopLogits| {
                    let mut pairs: Vec<(u32, u32)> = (top.candidates.iter())
                        .map(|&(i, l)| (i, l.to_bits()))
                        .collect();
                    pairs.sort();
                    pairs
                };
                let (n, chunks, sums) = (row.len(), gpu.tuning.pick_chunks, gpu.reduce);
                let case = format!("{n} values, {chunks:?}, {sums:?}");
                assert_eq!(sorted(&got), sorted(&want), "candidates of {case}");
                assert_eq!(got.bound.to_bits(), want.bound.to_bits(), "bound of {case}");
                let (got_mass, want_mass) = (got.mass.unwrap(), want.mass.unwrap());
                assert!(
                    (got_mass - want_mass).abs() <= 1e-5 * want_mass.max(1.0),
                    "mass of {case}: {got_mass} against {want_mass}"
                );
            }
        }
    }
}
