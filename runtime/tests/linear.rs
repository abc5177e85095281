//! The projection kernels under both launch shapes, whatever the adapter: the GPU one
//! (matvec rows shared by 16 threads, tiled matmul) and the CPU one (rows per lane,
//! row-blocked matmul), so that lavapipe also checks the layout real GPUs run, and
//! with both half decodings (hardware and integer). Every
//! weight type, float and GGUF, against a CPU reference on the same weights
//! (`gguf::dequantize` for the blocks), for one token (matvec), a batch (matmul), the
//! last-row logits path and the MoE expert matvec.

mod common;

use std::sync::{Arc, OnceLock};

use common::{ggml_type, Rng};
use lfm_edge::dtype::DType;
use lfm_edge::gguf::dequantize;
use lfm_edge::gpu::{Gpu, GpuOptions, HalfDecode, Reduce, Tuning};
use lfm_edge::ops::{
    self, ExpertLinear, ExpertMatrix, ExpertOutput, GateUp, GpuTensor, InputNorm, Linear,
    LinearOutput,
};

const QUANTIZED: [DType; 12] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::Q1_0,
    DType::Q2_0,
    DType::TQ1_0,
    DType::TQ2_0,
];

/// The GPU launch shapes with integer half decoding and sums in a tree, the CPU ones
/// with the device's own, a wide matvec (32 threads on each of 4 rows per thread, their
/// sums added in a tree), and a row's 64 threads to a workgroup (its sums added by
/// subgroups where the device has them): every path the kernels have, on any adapter
/// that runs the tests.
fn gpus() -> &'static [Arc<Gpu>; 4] {
    static GPUS: OnceLock<[Arc<Gpu>; 4]> = OnceLock::new();
    GPUS.get_or_init(|| {
        [
            (
                Tuning::GPU,
                Some(HalfDecode::Integer),
                Some(Reduce::Workgroup),
            ),
            (Tuning::CPU, None, None),
            (Tuning::GPU.with_matvec([64, 32, 4]), None, None),
            (Tuning::GPU_SUBGROUPS.with_matvec([64, 64, 4]), None, None),
        ]
        .map(|(tuning, halves, reduce)| {
            Gpu::new(&GpuOptions {
                tuning: Some(tuning),
                halves,
                reduce,
                ..GpuOptions::default()
            })
            .expect("no wgpu adapter")
        })
    })
}

/// Random raw bytes of `elements` weights of `dtype`, its f16 scales (at the offsets
/// ggml's block layouts put them) set to small finite values; and the weights they
/// hold, as `gguf::dequantize` reads them.
fn random_weights(dtype: DType, elements: usize, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(&rng.vec(elements, 1.0)).to_vec(),
        DType::F16 | DType::BF16 => {
            let values = rng.vec(elements, 1.0);
            let bits: Vec<u16> = match dtype {
                DType::F16 => values
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect(),
                _ => values
                    .iter()
                    .map(|&v| half::bf16::from_f32(v).to_bits())
                    .collect(),
            };
            bytemuck::cast_slice(&bits).to_vec()
        }
        _ => {
            let mut bytes: Vec<u8> = (0..dtype.bytes_for(elements))
                .map(|_| rng.next_u64() as u8)
                .collect();
            for block in bytes.chunks_mut(dtype.block_bytes()) {
                for &s in common::scale_offsets(dtype) {
                    let scale = half::f16::from_f32(0.01 + 0.02 * rng.uniform(1.0).abs());
                    block[s..s + 2].copy_from_slice(&scale.to_le_bytes());
                }
            }
            bytes
        }
    };
    let values = dequantize(ggml_type(dtype), &bytes).unwrap();
    (bytes, values)
}

fn tensor(gpu: &Gpu, dtype: DType, shape: &[usize], bytes: &[u8]) -> GpuTensor {
    GpuTensor::upload(gpu, &format!("w.{dtype}"), dtype, shape, &[bytes]).unwrap()
}

fn buffer(gpu: &Gpu, values: &[f32]) -> wgpu::Buffer {
    let b = gpu.zeros("buffer", values.len()).unwrap();
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(values));
    b
}

fn u32_buffer(gpu: &Gpu, values: &[u32]) -> wgpu::Buffer {
    let b = gpu.zeros("u32 buffer", values.len()).unwrap();
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(values));
    b
}

/// Records `step` for a batch of `n_tokens` in one compute pass, as a session does.
fn run(gpu: &Gpu, step: &lfm_edge::gpu::Step, n_tokens: u32) {
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    common::run_dispatches(gpu, n_tokens, 0, max, &step.dispatches(n_tokens, n_tokens));
}

/// A value the kernel should produce, and the sum of the magnitudes it adds up: f32
/// rounding grows with the latter (random GGUF scales make large terms that cancel).
#[derive(Clone, Copy)]
struct Want {
    value: f64,
    magnitude: f64,
}

fn dot(a: &[f32], b: &[f32]) -> Want {
    let terms = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64);
    Want {
        value: terms.clone().sum(),
        magnitude: terms.map(f64::abs).sum(),
    }
}

fn assert_close(case: &str, got: &[f32], want: &[Want]) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w.value).abs() / (1.0 + w.magnitude);
        assert!(
            err < 1e-5,
            "{case}: element {i} is {g}, expected {}",
            w.value
        );
    }
}

/// `ops::linear` of (n, k) weights of `dtype` for a batch of `n_tokens`, in each output
/// mode, on both launch shapes.
fn check_linear(dtype: DType, (n, k): (usize, usize), n_tokens: usize, rng: &mut Rng) {
    let (bytes, w) = random_weights(dtype, n * k, rng);
    let x = rng.vec(n_tokens * k, 1.0);
    let before = rng.vec(n_tokens * n, 1.0);
    let bias = rng.vec(n, 1.0);
    for gpu in gpus() {
        let weight = tensor(gpu, dtype, &[n, k], &bytes);
        let bias_tensor = tensor(gpu, DType::F32, &[n], bytemuck::cast_slice(&bias));
        let (x_buffer, none) = (buffer(gpu, &x), gpu.zeros("none", 1).unwrap());
        for output in [
            LinearOutput::Rows,
            LinearOutput::Accumulate,
            LinearOutput::LastRow,
        ] {
            let rows: Vec<usize> = match output {
                LinearOutput::LastRow => vec![n_tokens - 1],
                _ => (0..n_tokens).collect(),
            };
            let mut want: Vec<Want> = before
                .iter()
                .map(|&v| Want {
                    value: v as f64,
                    magnitude: v.abs() as f64,
                })
                .collect();
            for (o, &t) in rows.iter().enumerate() {
                for j in 0..n {
                    let mut y = dot(&x[t * k..][..k], &w[j * k..][..k]);
                    y.value += bias[j] as f64;
                    let slot = &mut want[o * n + j];
                    if output == LinearOutput::Accumulate {
                        y.value += slot.value;
                        y.magnitude += slot.magnitude;
                    }
                    *slot = y;
                }
            }
            let out = buffer(gpu, &before);
            let op = Linear {
                weight: &weight,
                bias: Some(&bias_tensor),
                x: &x_buffer,
                out: &out,
                output,
                gate: None,
                norm: None,
            };
            run(gpu, &ops::linear(gpu, op, &none).unwrap(), n_tokens as u32);
            let case = format!(
                "{dtype} {n}x{k}, {n_tokens} tokens, {output:?}, {:?}",
                gpu.tuning.prefill
            );
            assert_close(&case, &gpu.read_f32(&out, before.len()).unwrap(), &want);
        }
    }
}

#[test]
fn float_projections_on_both_launch_shapes() {
    let mut rng = Rng(7);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        // Rows 16-byte aligned (k = 64, 72 for 16-bit) or not (k = 18).
        for shape in [(37, 64), (130, 72), (9, 18)] {
            // The prefill kernels' tiles of a quarter, a half and all of their tokens
            // (tiled: 8, 16, 32; register blocks: 4, 8, 16).
            for n_tokens in [1, 3, 5, 12, 37] {
                check_linear(dtype, shape, n_tokens, &mut rng);
            }
        }
    }
}

/// With a gate, a single token's up projection writes silu(gate) · y (SwiGLU fused into
/// its matvec) and a batch's writes y, its SwiGLU being a launch of its own.
#[test]
fn gated_projection_applies_swiglu_to_a_single_token() {
    let mut rng = Rng(17);
    let (n, k) = (37, 96);
    for dtype in [DType::F16, DType::Q4_0] {
        let (bytes, w) = random_weights(dtype, n * k, &mut rng);
        for n_tokens in [1, 5] {
            let x = rng.vec(n_tokens * k, 1.0);
            let gate = rng.vec(n_tokens * n, 2.0);
            let want: Vec<Want> = (0..n_tokens * n)
                .map(|i| {
                    let (t, j) = (i / n, i % n);
                    let mut y = dot(&x[t * k..][..k], &w[j * k..][..k]);
                    if n_tokens == 1 {
                        let g = gate[i] as f64;
                        let silu = g / (1.0 + (-g).exp());
                        y.value *= silu;
                        y.magnitude *= silu.abs();
                    }
                    y
                })
                .collect();
            for gpu in gpus() {
                let weight = tensor(gpu, dtype, &[n, k], &bytes);
                let (x_buffer, none) = (buffer(gpu, &x), gpu.zeros("none", 1).unwrap());
                let (gate_buffer, out) =
                    (buffer(gpu, &gate), gpu.zeros("out", n_tokens * n).unwrap());
                let op = Linear {
                    weight: &weight,
                    bias: None,
                    x: &x_buffer,
                    out: &out,
                    output: LinearOutput::Rows,
                    gate: Some(&gate_buffer),
                    norm: None,
                };
                run(gpu, &ops::linear(gpu, op, &none).unwrap(), n_tokens as u32);
                let case = format!("gated {dtype}, {n_tokens} tokens, {:?}", gpu.tuning);
                assert_close(&case, &gpu.read_f32(&out, n_tokens * n).unwrap(), &want);
            }
        }
    }
}

/// Projections writing their columns of rows they share (q, k and v side by side),
/// for a token and a batch: each adds its part of the one bias of the whole row.
#[test]
fn projections_write_their_columns_of_shared_rows() {
    let mut rng = Rng(23);
    let k = 64;
    let rows = [48, 16, 16];
    let width: usize = rows.iter().sum();
    for dtype in [DType::BF16, DType::Q8_0] {
        let weights: Vec<_> = rows
            .iter()
            .map(|&n| random_weights(dtype, n * k, &mut rng))
            .collect();
        let bias = rng.vec(width, 1.0);
        for n_tokens in [1, 5] {
            let x = rng.vec(n_tokens * k, 1.0);
            let want: Vec<Want> = (0..n_tokens)
                .flat_map(|t| {
                    let x = &x[t * k..][..k];
                    weights
                        .iter()
                        .flat_map(move |(_, w)| w.chunks(k).map(move |row| dot(x, row)))
                })
                .zip(bias.iter().cycle())
                .map(|(mut y, b)| {
                    y.value += *b as f64;
                    y
                })
                .collect();
            for gpu in gpus() {
                let bias_tensor = tensor(gpu, DType::F32, &[width], bytemuck::cast_slice(&bias));
                let (x_buffer, none) = (buffer(gpu, &x), gpu.zeros("none", 1).unwrap());
                let out = gpu.zeros("out", n_tokens * width).unwrap();
                let mut first = 0;
                for ((bytes, _), &n) in weights.iter().zip(&rows) {
                    let weight = tensor(gpu, dtype, &[n, k], bytes);
                    let op = |bias| Linear {
                        weight: &weight,
                        bias: Some(bias),
                        x: &x_buffer,
                        out: &out,
                        output: LinearOutput::Columns { first, width },
                        gate: None,
                        norm: None,
                    };
                    // A bias of the projection's rows alone is not the row's.
                    let own = tensor(gpu, DType::F32, &[n], bytemuck::cast_slice(&bias[..n]));
                    let Err(err) = ops::linear(gpu, op(&own), &none) else {
                        panic!("a bias of {n} for rows {width} wide was taken");
                    };
                    let message = format!("rows are {width} wide");
                    assert!(err.to_string().contains(&message), "{err}");
                    let step = ops::linear(gpu, op(&bias_tensor), &none).unwrap();
                    run(gpu, &step, n_tokens as u32);
                    first += n;
                }
                let case = format!("columns {dtype}, {n_tokens} tokens, {:?}", gpu.tuning);
                assert_close(&case, &gpu.read_f32(&out, n_tokens * width).unwrap(), &want);
            }
        }
    }
}

/// With an input norm, a single token's matvec reads the residual stream and applies
/// RMSNorm to it itself: y = W · (x ⊙ g) / rms(x) + b, whatever the weight's and the norm
/// weight's dtypes; LastRow normalizes the batch's last row.
#[test]
fn a_matvec_normalizes_its_own_input() {
    let mut rng = Rng(19);
    let eps = 1e-5;
    // k = 36 in 16-bit: rows of 18 words, read a word at a time.
    let cases = [
        (DType::F32, 36),
        (DType::F16, 36),
        (DType::BF16, 72),
        (DType::Q8_0, 96),
        (DType::Q4_0, 96),
        (DType::Q4_K, 256),
        (DType::Q6_K, 256),
        (DType::Q1_0, 256),
    ];
    for (dtype, k) in cases {
        let n = 37;
        let (bytes, w) = random_weights(dtype, n * k, &mut rng);
        for norm_dtype in [DType::F32, DType::F16, DType::BF16] {
            let (norm_bytes, g) = random_weights(norm_dtype, k, &mut rng);
            let bias = rng.vec(n, 1.0);
            for (n_tokens, output) in [(1, LinearOutput::Rows), (3, LinearOutput::LastRow)] {
                let x = rng.vec(n_tokens * k, 3.0);
                let last = &x[(n_tokens - 1) * k..];
                let rms = (last.iter().map(|v| (v * v) as f64).sum::<f64>() / k as f64
                    + eps as f64)
                    .sqrt();
                let normed: Vec<f32> = last
                    .iter()
                    .zip(&g)
                    .map(|(v, g)| (*v as f64 / rms) as f32 * g)
                    .collect();
                let want: Vec<Want> = (0..n)
                    .map(|j| {
                        let mut y = dot(&normed, &w[j * k..][..k]);
                        y.value += bias[j] as f64;
                        y
                    })
                    .collect();
                for gpu in gpus() {
                    let weight = tensor(gpu, dtype, &[n, k], &bytes);
                    let norm_weight = tensor(gpu, norm_dtype, &[k], &norm_bytes);
                    let bias_tensor = tensor(gpu, DType::F32, &[n], bytemuck::cast_slice(&bias));
                    let (residual, none) = (buffer(gpu, &x), gpu.zeros("none", 1).unwrap());
                    let (xn, out) = (gpu.zeros("xn", 1).unwrap(), gpu.zeros("out", n).unwrap());
                    let norm = InputNorm {
                        weight: &norm_weight,
                        eps,
                        residual: &residual,
                    };
                    let op = Linear {
                        weight: &weight,
                        bias: Some(&bias_tensor),
                        x: &xn,
                        out: &out,
                        output,
                        gate: None,
                        norm: Some(norm),
                    };
                    let step = ops::linear(gpu, op, &none).unwrap();
                    let case = format!(
                        "{dtype} {n}x{k}, norm {norm_dtype}, {n_tokens} tokens, {:?}",
                        gpu.tuning
                    );
                    // A batch's Rows projection reads the norm's output instead.
                    let tokens = if output == LinearOutput::Rows {
                        1
                    } else {
                        n_tokens
                    };
                    run(gpu, &step, tokens as u32);
                    assert_close(&case, &gpu.read_f32(&out, n).unwrap(), &want);
                }
            }
        }
    }
}

#[test]
fn quantized_projections_on_both_launch_shapes() {
    let mut rng = Rng(11);
    for dtype in QUANTIZED {
        // 512: whole blocks of every type; three blocks, so that every other row of a
        // type whose blocks are 2 mod 4 bytes (34, 18, 22, 210, 54, 66) starts mid-word.
        for k in [512, 3 * dtype.block_elements()] {
            for n_tokens in [1, 11] {
                check_linear(dtype, (37, k), n_tokens, &mut rng);
            }
        }
    }
}

#[test]
fn expert_matvec_reads_the_routed_experts_on_both_launch_shapes() {
    let mut rng = Rng(13);
    let (experts, rows, k, top_k) = (5, 37, 256, 3);
    let routes = [3u32, 0, 0, 0, 4, 0]; // expert, weight bits per slot; weights unused here
    for dtype in [DType::F16, DType::Q8_0, DType::Q4_K] {
        let (bytes, w) = random_weights(dtype, experts * rows * k, &mut rng);
        for x_per_slot in [false, true] {
            let x = rng.vec(if x_per_slot { top_k * k } else { k }, 1.0);
            let mut want = Vec::new();
            for s in 0..top_k {
                let expert = routes[2 * s] as usize;
                let x_row = if x_per_slot {
                    &x[s * k..][..k]
                } else {
                    &x[..k]
                };
                want.extend((0..rows).map(|j| dot(x_row, &w[(expert * rows + j) * k..][..k])));
            }
            for gpu in gpus() {
                let weight = ExpertMatrix {
                    tensor: tensor(gpu, dtype, &[experts, rows, k], &bytes),
                    rows,
                    row_offset: 0,
                };
                let (route_buffer, none) =
                    (u32_buffer(gpu, &routes), gpu.zeros("none", 1).unwrap());
                let (x_buffer, out) = (buffer(gpu, &x), gpu.zeros("out", top_k * rows).unwrap());
                let op = ExpertLinear {
                    weight: &weight,
                    x: &x_buffer,
                    x_per_slot,
                    out: &out,
                    single: ExpertOutput::Slots,
                    norm: None,
                    top_k,
                    routes: &route_buffer,
                    slots: &none,
                };
                run(gpu, &ops::expert_linear(gpu, op, &none).unwrap(), 1);
                let case = format!(
                    "{dtype} experts, x per slot {x_per_slot}, {:?}",
                    gpu.tuning.prefill
                );
                assert_close(&case, &gpu.read_f32(&out, top_k * rows).unwrap(), &want);
            }
        }
    }
}

/// silu(gate) · up, with the magnitude its rounding grows with.
fn swiglu_want(gate: Want, up: Want) -> Want {
    let silu = gate.value / (1.0 + (-gate.value).exp());
    Want {
        value: silu * up.value,
        magnitude: 1.1 * gate.magnitude * up.value.abs() + silu.abs() * up.magnitude,
    }
}

/// A (2n, k) matrix of SwiGLU's gate rows then its up rows: a single token's launch
/// writes silu(gate) · up, one launch in all; a batch's writes each half as it is.
#[test]
fn joined_gate_and_up_rows_take_one_launch_for_a_token() {
    let mut rng = Rng(23);
    let (n, k) = (37, 256);
    for dtype in [DType::F16, DType::Q4_0, DType::Q4_K] {
        let (bytes, w) = random_weights(dtype, 2 * n * k, &mut rng);
        for n_tokens in [1, 5] {
            let x = rng.vec(n_tokens * k, 1.0);
            let row_dot = |t: usize, row: usize| dot(&x[t * k..][..k], &w[row * k..][..k]);
            let (mut want_gate, mut want_up) = (Vec::new(), Vec::new());
            for t in 0..n_tokens {
                for j in 0..n {
                    let (gate, up) = (row_dot(t, j), row_dot(t, n + j));
                    want_gate.push(gate);
                    want_up.push(if n_tokens == 1 {
                        swiglu_want(gate, up)
                    } else {
                        up
                    });
                }
            }
            for gpu in gpus() {
                let weight = tensor(gpu, dtype, &[2 * n, k], &bytes);
                let (x_buffer, none) = (buffer(gpu, &x), gpu.zeros("none", 1).unwrap());
                let gate = gpu.zeros("gate", n_tokens * n).unwrap();
                let up = gpu.zeros("up", n_tokens * n).unwrap();
                let op = GateUp {
                    weight: &weight,
                    x: &x_buffer,
                    gate: &gate,
                    up: &up,
                    norm: None,
                };
                let step = ops::gate_up(gpu, op, &none).unwrap();
                let launches = step.dispatches(n_tokens as u32, n_tokens as u32).len();
                assert_eq!(launches, if n_tokens == 1 { 1 } else { 2 });
                run(gpu, &step, n_tokens as u32);
                let case = format!("joined {dtype}, {n_tokens} tokens, {:?}", gpu.tuning);
                assert_close(&case, &gpu.read_f32(&up, n_tokens * n).unwrap(), &want_up);
                if n_tokens > 1 {
                    let got = gpu.read_f32(&gate, n_tokens * n).unwrap();
                    assert_close(&case, &got, &want_gate);
                }
            }
        }
    }
}

/// A stack holding each expert's gate rows then its up rows: a single token's launch
/// writes silu(gate) · up for each routed slot.
#[test]
fn paired_expert_rows_give_swiglu_of_each_slot() {
    let mut rng = Rng(29);
    let (experts, rows, k, top_k) = (5, 37, 256, 3);
    let routes = [3u32, 0, 0, 0, 4, 0]; // expert, weight bits per slot; weights unused here
    for dtype in [DType::F16, DType::Q8_0, DType::Q4_K] {
        let (bytes, w) = random_weights(dtype, experts * 2 * rows * k, &mut rng);
        let x = rng.vec(k, 1.0);
        let mut want = Vec::new();
        for s in 0..top_k {
            let first = routes[2 * s] as usize * 2 * rows;
            let row_dot = |row: usize| dot(&x, &w[(first + row) * k..][..k]);
            want.extend((0..rows).map(|j| swiglu_want(row_dot(j), row_dot(rows + j))));
        }
        for gpu in gpus() {
            let weight = ExpertMatrix {
                tensor: tensor(gpu, dtype, &[experts, 2 * rows, k], &bytes),
                rows,
                row_offset: 0,
            };
            let (route_buffer, none) = (u32_buffer(gpu, &routes), gpu.zeros("none", 1).unwrap());
            let x_buffer = buffer(gpu, &x);
            let gate = gpu.zeros("gate", top_k * rows).unwrap();
            let up = gpu.zeros("up", top_k * rows).unwrap();
            let op = ExpertLinear {
                weight: &weight,
                x: &x_buffer,
                x_per_slot: false,
                out: &gate,
                single: ExpertOutput::Paired { up: &up },
                norm: None,
                top_k,
                routes: &route_buffer,
                slots: &none,
            };
            run(gpu, &ops::expert_linear(gpu, op, &none).unwrap(), 1);
            let case = format!("paired {dtype} experts, {:?}", gpu.tuning);
            assert_close(&case, &gpu.read_f32(&up, top_k * rows).unwrap(), &want);
        }
    }
}

/// A single token's in_proj and short conv in one launch (`ops::conv_in_proj`) give
/// the output, the moved state and the state kept for taking the token back that
/// in_proj's matvec then the conv's token launch give, bit for bit: float and GGUF
/// weights, with and without the input's RMSNorm, a channel count that leaves a part
/// of a workgroup's rows empty, on every launch shape.
#[test]
fn conv_in_proj_is_in_proj_then_the_conv() {
    let mut rng = Rng(29);
    let (hidden, l) = (36, 3);
    for (dtype, conv_dtype) in [
        (DType::F32, DType::F32),
        (DType::BF16, DType::BF16),
        (DType::Q4_0, DType::F32),
        (DType::Q6_K, DType::F16),
    ] {
        let k = if dtype.is_quantized() { 256 } else { hidden };
        let (bytes, _) = random_weights(dtype, 3 * hidden * k, &mut rng);
        let (conv_bytes, _) = random_weights(conv_dtype, hidden * l, &mut rng);
        let x = rng.vec(k, 1.0);
        let state = rng.vec((l - 1) * hidden, 1.0);
        let norm_values = rng.vec(k, 1.5);
        for gpu in gpus() {
            let in_proj = tensor(gpu, dtype, &[3 * hidden, k], &bytes);
            let conv = tensor(gpu, conv_dtype, &[hidden, 1, l], &conv_bytes);
            let norm_weight = tensor(gpu, DType::F32, &[k], bytemuck::cast_slice(&norm_values));
            for normed in [false, true] {
                let mut results = Vec::new();
                for fused in [false, true] {
                    let none = gpu.zeros("none", 1).unwrap();
                    let x_buffer = buffer(gpu, &x);
                    let (bcx, out) = (
                        gpu.zeros("bcx", 3 * hidden).unwrap(),
                        gpu.zeros("out", hidden).unwrap(),
                    );
                    let state_buffer = buffer(gpu, &state);
                    let previous = gpu.zeros("previous", state.len()).unwrap();
                    let norm = normed.then_some(InputNorm {
                        weight: &norm_weight,
                        eps: 1e-5,
                        residual: &x_buffer,
                    });
                    let op = ops::ShortConv {
                        weight: &conv,
                        bias: None,
                        bcx: &bcx,
                        state: &state_buffer,
                        previous: &previous,
                        out: &out,
                    };
                    let max = gpu.limits.max_compute_workgroups_per_dimension;
                    if fused {
                        let one =
                            ops::conv_in_proj(gpu, &op, &in_proj, None, &x_buffer, norm, &none);
                        let one = one.unwrap().expect("the layer fuses");
                        common::run_dispatches(gpu, 1, 0, max, &[&one]);
                    } else {
                        let linear = Linear {
                            weight: &in_proj,
                            bias: None,
                            x: &x_buffer,
                            out: &bcx,
                            output: LinearOutput::Rows,
                            gate: None,
                            norm,
                        };
                        let step = ops::linear(gpu, linear, &none).unwrap();
                        let token = ops::shortconv_token(gpu, &op, &none).unwrap();
                        let mut launches = step.dispatches(1, 1);
                        launches.push(&token);
                        common::run_dispatches(gpu, 1, 0, max, &launches);
                    }
                    let read = |b: &wgpu::Buffer, n: usize| -> Vec<u32> {
                        gpu.read_f32(b, n)
                            .unwrap()
                            .iter()
                            .map(|v| v.to_bits())
                            .collect()
                    };
                    results.push([
                        read(&out, hidden),
                        read(&state_buffer, state.len()),
                        read(&previous, state.len()),
                    ]);
                }
                let case = format!("{dtype} conv {conv_dtype} normed {normed} {:?}", gpu.tuning);
                assert!(
                    results[0][0].iter().all(|&v| f32::from_bits(v).is_finite()),
                    "{case}"
                );
                assert_eq!(
                    results[0][2],
                    bytemuck::cast_slice::<f32, u32>(&state),
                    "{case}: kept state"
                );
                for (what, i) in [("output", 0), ("state", 1), ("kept state", 2)] {
                    assert_eq!(results[1][i], results[0][i], "{case}: {what}");
                }
            }
        }
    }
}
