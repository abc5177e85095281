//! The MoE kernels against CPU references: moe.wgsl's routing (top-k by score + expert
//! bias, normalised and scaled weights, each expert's slot list), a single token's
//! router projection with its routing, the epilogues that fuse SwiGLU and the weighted
//! combine into a single token's expert matvecs, and a batch's expert matmul over the
//! slot lists, on both launch shapes.

mod common;

use std::sync::Arc;

use common::Rng;
use lfm_edge::config::MoeConfig;
use lfm_edge::dtype::DType;
use lfm_edge::gpu::{Gpu, GpuOptions, Tuning};
use lfm_edge::ops::{self, ExpertLinear, ExpertMatrix, ExpertOutput, GpuTensor, MoeBuffers};

fn buffer(gpu: &Gpu, values: &[f32]) -> wgpu::Buffer {
    let b = gpu.zeros("buffer", values.len()).unwrap();
    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(values));
    b
}

fn run(gpu: &Gpu, step: &lfm_edge::gpu::Step, n_tokens: u32) {
    let max = gpu.limits.max_compute_workgroups_per_dimension;
    common::run_dispatches(gpu, n_tokens, 0, max, &step.dispatches(n_tokens, n_tokens));
}

/// Lfm2MoeTopKRouter on the CPU: (expert, weight) per slot of each token.
fn route_reference(logits: &[f32], bias: Option<&[f32]>, moe: &MoeConfig) -> Vec<(u32, f32)> {
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    let mut routes = Vec::new();
    for row in logits.chunks(moe.n_experts) {
        let key = |e: usize| sigmoid(row[e]) + bias.map_or(0.0, |b| b[e]);
        let mut order: Vec<usize> = (0..moe.n_experts).collect();
        // Highest key first, the lower index on a tie.
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        let chosen = &order[..moe.top_k];
        let total: f32 = chosen.iter().map(|&e| sigmoid(row[e])).sum();
        let scale = if moe.norm_topk_prob {
            1.0 / (total + 1e-6)
        } else {
            1.0
        } * moe.routed_scaling_factor;
        routes.extend(chosen.iter().map(|&e| (e as u32, sigmoid(row[e]) * scale)));
    }
    routes
}

/// What a routing launch binds besides its input and the expert bias, for `n_tokens`
/// tokens; `none` stands in for what it does not read.
struct RouteScratch {
    router_logits: wgpu::Buffer,
    expert_out: wgpu::Buffer,
    routes: wgpu::Buffer,
    slots: wgpu::Buffer,
    none: wgpu::Buffer,
}

impl RouteScratch {
    fn new(gpu: &Gpu, moe: &MoeConfig, hidden: usize, n_tokens: usize) -> RouteScratch {
        let zeros = |label, len| gpu.zeros(label, len).unwrap();
        RouteScratch {
            router_logits: zeros("router logits", n_tokens * moe.n_experts),
            expert_out: zeros("expert out", n_tokens * moe.top_k * hidden),
            routes: zeros("routes", n_tokens * moe.top_k * 2),
            slots: zeros("slots", moe.n_experts * (1 + n_tokens)),
            none: zeros("none", 1),
        }
    }

    fn bind<'a>(
        &'a self,
        moe: &'a MoeConfig,
        hidden: usize,
        expert_bias: Option<&'a GpuTensor>,
        x: &'a wgpu::Buffer,
    ) -> MoeBuffers<'a> {
        MoeBuffers {
            label: "moe",
            config: moe,
            hidden,
            router_logits: &self.router_logits,
            expert_bias,
            expert_out: &self.expert_out,
            routes: &self.routes,
            slots: &self.slots,
            x,
        }
    }
}

/// Fails unless `routes` on the GPU holds `want`'s (expert, weight) per slot.
fn check_routes(gpu: &Gpu, routes: &wgpu::Buffer, want: &[(u32, f32)], case: &str) {
    let got: Vec<u32> = gpu.read(routes, 0, (want.len() * 8) as u64).unwrap();
    for (slot, (&(expert, weight), pair)) in want.iter().zip(got.chunks(2)).enumerate() {
        assert_eq!(pair[0], expert, "{case}: slot {slot}'s expert");
        let w = f32::from_bits(pair[1]);
        assert!(
            (w - weight).abs() < 1e-5,
            "{case}: slot {slot}'s weight {w} vs {weight}"
        );
    }
}

#[test]
fn route_picks_the_top_k_and_lists_each_experts_slots() {
    let gpu = common::gpu();
    let mut rng = Rng(19);
    for (n_experts, top_k, n_tokens, with_bias, norm) in [
        (8, 3, 1, true, true),
        (8, 3, 5, false, true),
        (32, 4, 70, true, false),
        (4, 4, 2, true, true),
    ] {
        let moe = MoeConfig {
            n_experts,
            top_k,
            expert_ff: 8,
            n_dense_layers: 0,
            use_expert_bias: with_bias,
            norm_topk_prob: norm,
            routed_scaling_factor: 1.5,
        };
        let case = format!("{n_experts} experts, top {top_k}, {n_tokens} tokens");
        let logits = rng.vec(n_tokens * n_experts, 3.0);
        let bias = rng.vec(n_experts, 0.3);
        let bias_tensor = GpuTensor::upload(
            &gpu,
            "expert_bias",
            DType::F32,
            &[n_experts],
            &[bytemuck::cast_slice(&bias)],
        )
        .unwrap();
        let hidden = 4;
        let scratch = RouteScratch::new(&gpu, &moe, hidden, n_tokens);
        gpu.queue
            .write_buffer(&scratch.router_logits, 0, bytemuck::cast_slice(&logits));
        let x = gpu.zeros("x", n_tokens * hidden).unwrap();
        let buffers = scratch.bind(&moe, hidden, with_bias.then_some(&bias_tensor), &x);
        let route = ops::moe_route(&gpu, &buffers, &scratch.none).unwrap();
        let lists = ops::moe_lists(&gpu, &buffers, &scratch.none).unwrap();
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        common::run_dispatches(&gpu, n_tokens as u32, 0, max, &[&route, &lists]);

        let want = route_reference(&logits, with_bias.then_some(&bias), &moe);
        check_routes(&gpu, &scratch.routes, &want, &case);
        let lists: Vec<u32> = gpu
            .read(&scratch.slots, 0, (n_experts * (1 + n_tokens) * 4) as u64)
            .unwrap();
        for e in 0..n_experts {
            let want: Vec<u32> = (0..want.len() as u32)
                .filter(|&s| want[s as usize].0 == e as u32)
                .collect();
            let start = n_experts + e * n_tokens;
            let count = lists[e] as usize;
            assert_eq!(
                &lists[start..start + count],
                &want[..],
                "{case}: expert {e}'s slots"
            );
        }
    }
}

/// A single token's router projection and routing in one launch (moe.wgsl `token`):
/// the residual stream normalized by the feed-forward RMSNorm, projected by an f32 or
/// bf16 router (rows wider than the kernel's chunk of x, and narrower), then routed as
/// `route` routes.
#[test]
fn a_tokens_router_normalizes_projects_and_routes() {
    let gpu = common::gpu();
    let mut rng = Rng(29);
    let moe = MoeConfig {
        n_experts: 32,
        top_k: 4,
        expert_ff: 8,
        n_dense_layers: 0,
        use_expert_bias: false,
        norm_topk_prob: true,
        routed_scaling_factor: 1.0,
    };
    let eps = 1e-5;
    for (dtype, hidden) in [(DType::F32, 2060), (DType::BF16, 2056), (DType::BF16, 64)] {
        let case = format!("{dtype} router, hidden {hidden}");
        let x = rng.vec(hidden, 2.0);
        let gain = rng.vec(hidden, 1.0);
        let weights = rng.vec(moe.n_experts * hidden, 0.2);
        let (bytes, weights): (Vec<u8>, Vec<f32>) = match dtype {
            DType::F32 => (bytemuck::cast_slice(&weights).to_vec(), weights),
            _ => {
                let halves: Vec<half::bf16> =
                    weights.iter().map(|&w| half::bf16::from_f32(w)).collect();
                let bits: Vec<u16> = halves.iter().map(|h| h.to_bits()).collect();
                let rounded = halves.iter().map(|h| h.to_f32()).collect();
                (bytemuck::cast_slice(&bits).to_vec(), rounded)
            }
        };
        let shape = [moe.n_experts, hidden];
        let router = GpuTensor::upload(&gpu, "router", dtype, &shape, &[&bytes]).unwrap();
        let gain_bytes: &[u8] = bytemuck::cast_slice(&gain);
        let norm = GpuTensor::upload(&gpu, "norm", DType::F32, &[hidden], &[gain_bytes]).unwrap();
        let residual = buffer(&gpu, &x);
        let scratch = RouteScratch::new(&gpu, &moe, hidden, 1);
        let buffers = scratch.bind(&moe, hidden, None, &residual);
        let input = ops::InputNorm {
            weight: &norm,
            eps,
            residual: &residual,
        };
        let launch = ops::moe_route_token(&gpu, &buffers, &router, input, &scratch.none)
            .unwrap()
            .expect("a float router with whole-vector rows takes the token kernel");
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        common::run_dispatches(&gpu, 1, 0, max, &[&launch]);

        let squares: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        let inv_rms = 1.0 / (squares / hidden as f64 + eps as f64).sqrt();
        let logits: Vec<f32> = (weights.chunks(hidden))
            .map(|row| {
                let dot: f64 = (row.iter().zip(&x).zip(&gain))
                    .map(|((&w, &v), &g)| w as f64 * v as f64 * g as f64)
                    .sum();
                (dot * inv_rms) as f32
            })
            .collect();
        let want = route_reference(&logits, None, &moe);
        check_routes(&gpu, &scratch.routes, &want, &case);
    }
}

/// The launch shapes of a GPU and of a CPU rasteriser.
fn gpus() -> [Arc<Gpu>; 2] {
    [Tuning::GPU, Tuning::CPU].map(|tuning| {
        Gpu::new(&GpuOptions {
            tuning: Some(tuning),
            ..GpuOptions::default()
        })
        .expect("no wgpu adapter")
    })
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// A random f16 stack of `experts` matrices, `rows` × `k` each.
struct Experts {
    bits: Vec<u16>,
    experts: usize,
    rows: usize,
    k: usize,
}

impl Experts {
    fn random(rng: &mut Rng, experts: usize, rows: usize, k: usize) -> Experts {
        let bits = (rng.vec(experts * rows * k, 1.0).iter())
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        Experts {
            bits,
            experts,
            rows,
            k,
        }
    }

    /// Row `row` of expert `expert`'s matrix dotted with `x`, in f64.
    fn dot(&self, expert: usize, row: usize, x: &[f32]) -> f64 {
        let w = &self.bits[(expert * self.rows + row) * self.k..][..self.k];
        (w.iter().zip(x))
            .map(|(&b, &x)| half::f16::from_bits(b).to_f64() * x as f64)
            .sum()
    }

    fn upload(&self, gpu: &Gpu) -> ExpertMatrix {
        let shape = [self.experts, self.rows, self.k];
        let bytes = bytemuck::cast_slice(&self.bits);
        ExpertMatrix {
            tensor: GpuTensor::upload(gpu, "experts", DType::F16, &shape, &[bytes]).unwrap(),
            rows: self.rows,
            row_offset: 0,
        }
    }
}

#[test]
fn expert_matvec_fuses_swiglu_and_the_weighted_combine() {
    let mut rng = Rng(7);
    let (experts, rows, k, top_k) = (5, 24, 64, 3);
    let routes = [(3u32, 0.5f32), (0, 0.3), (4, 0.2)];
    let route_words: Vec<u32> = routes.iter().flat_map(|&(e, w)| [e, w.to_bits()]).collect();
    let stack = Experts::random(&mut rng, experts, rows, k);
    let dot = |expert: u32, row: usize, x: &[f32]| stack.dot(expert as usize, row, x);
    for gpu in gpus() {
        let weight = stack.upload(&gpu);
        let route_buffer = gpu.zeros("routes", route_words.len()).unwrap();
        gpu.queue
            .write_buffer(&route_buffer, 0, bytemuck::cast_slice(&route_words));
        let none = gpu.zeros("none", 1).unwrap();
        let shape = format!("{:?}", gpu.tuning.prefill);

        // The up projection: out[s, r] = silu(gate[s, r]) · (W_{e_s} x)[r].
        let x = rng.vec(k, 1.0);
        let gate = rng.vec(top_k * rows, 2.0);
        let (x_buffer, gate_buffer) = (buffer(&gpu, &x), buffer(&gpu, &gate));
        let out = gpu.zeros("out", top_k * rows).unwrap();
        let op = ExpertLinear {
            weight: &weight,
            x: &x_buffer,
            x_per_slot: false,
            out: &out,
            single: ExpertOutput::Gated { gate: &gate_buffer },
            norm: None,
            top_k,
            routes: &route_buffer,
            slots: &none,
        };
        run(&gpu, &ops::expert_linear(&gpu, op, &none).unwrap(), 1);
        let got = gpu.read_f32(&out, top_k * rows).unwrap();
        for (s, &(expert, _)) in routes.iter().enumerate() {
            for r in 0..rows {
                let want = silu(gate[s * rows + r] as f64) * dot(expert, r, &x);
                let g = got[s * rows + r] as f64;
                assert!(
                    (g - want).abs() < 1e-4,
                    "gated, {shape}: slot {s} row {r}: {g} vs {want}"
                );
            }
        }

        // The down projection: residual[r] += Σ_s weight_s · (W_{e_s} h_s)[r].
        let h = rng.vec(top_k * k, 1.0);
        let residual = rng.vec(rows, 1.0);
        let (h_buffer, residual_buffer) = (buffer(&gpu, &h), buffer(&gpu, &residual));
        let op = ExpertLinear {
            weight: &weight,
            x: &h_buffer,
            x_per_slot: true,
            out: &out,
            norm: None,
            single: ExpertOutput::Combine {
                residual: &residual_buffer,
            },
            top_k,
            routes: &route_buffer,
            slots: &none,
        };
        run(&gpu, &ops::expert_linear(&gpu, op, &none).unwrap(), 1);
        let got = gpu.read_f32(&residual_buffer, rows).unwrap();
        for r in 0..rows {
            let sum: f64 = routes
                .iter()
                .enumerate()
                .map(|(s, &(expert, weight))| weight as f64 * dot(expert, r, &h[s * k..][..k]))
                .sum();
            let want = residual[r] as f64 + sum;
            let g = got[r] as f64;
            assert!(
                (g - want).abs() < 1e-4,
                "combine, {shape}: row {r}: {g} vs {want}"
            );
        }
    }
}

#[test]
fn a_batchs_expert_matmul_multiplies_each_experts_slots() {
    let mut rng = Rng(11);
    let (experts, rows, k, top_k) = (5, 24, 64, 2);
    let stack = Experts::random(&mut rng, experts, rows, k);
    // Tiles of a quarter and a half of a prefill kernel's tokens take the batches that
    // give each expert that many slots on average: the tiled kernel's tiles of 8
    // tokens up to 20 tokens here, those of 16 up to 40; the register blocks' of 4 up
    // to 10, of 8 up to 20.
    for n_tokens in [8, 12, 30, 50] {
        check_expert_batch(&stack, top_k, n_tokens, &mut rng);
    }
}

/// A batch of `n_tokens` through `stack` on both launch shapes: expert 0 takes every
/// token's first slot (several tiles of tokens), the second slots go round experts 1, 2
/// and 4, and expert 3 takes none.
fn check_expert_batch(stack: &Experts, top_k: usize, n_tokens: usize, rng: &mut Rng) {
    let (experts, rows, k) = (stack.experts, stack.rows, stack.k);
    let slot_expert = |slot: usize| match slot % 2 {
        0 => 0,
        _ => [1, 2, 4][(slot / 2) % 3],
    };
    let mut counts = vec![0u32; experts];
    let mut lists = vec![0u32; experts * n_tokens];
    for slot in 0..n_tokens * top_k {
        let e = slot_expert(slot);
        lists[e * n_tokens + counts[e] as usize] = slot as u32;
        counts[e] += 1;
    }
    let slot_words: Vec<u32> = counts.iter().chain(&lists).copied().collect();
    for gpu in gpus() {
        let weight = stack.upload(&gpu);
        let slots = gpu.zeros("slots", slot_words.len()).unwrap();
        gpu.queue
            .write_buffer(&slots, 0, bytemuck::cast_slice(&slot_words));
        let none = gpu.zeros("none", 1).unwrap();
        let shape = format!("{:?}", gpu.tuning.prefill);
        // A token's row (the gate and up projections), then a slot's own (the down).
        for x_per_slot in [false, true] {
            let x_rows = if x_per_slot {
                n_tokens * top_k
            } else {
                n_tokens
            };
            let x = rng.vec(x_rows * k, 1.0);
            let x_buffer = buffer(&gpu, &x);
            let out = gpu.zeros("out", n_tokens * top_k * rows).unwrap();
            let op = ExpertLinear {
                weight: &weight,
                x: &x_buffer,
                x_per_slot,
                out: &out,
                single: ExpertOutput::Slots,
                norm: None,
                top_k,
                routes: &none,
                slots: &slots,
            };
            run(
                &gpu,
                &ops::expert_linear(&gpu, op, &none).unwrap(),
                n_tokens as u32,
            );
            let got = gpu.read_f32(&out, n_tokens * top_k * rows).unwrap();
            for slot in 0..n_tokens * top_k {
                let x_row = if x_per_slot { slot } else { slot / top_k };
                for r in 0..rows {
                    let want = stack.dot(slot_expert(slot), r, &x[x_row * k..][..k]);
                    let g = got[slot * rows + r] as f64;
                    assert!(
                        (g - want).abs() < 1e-4,
                        "{shape}, {n_tokens} tokens, x per slot {x_per_slot}: slot {slot} row {r}: {g} vs {want}"
                    );
                }
            }
        }
    }
}
