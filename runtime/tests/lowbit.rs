//! 1-bit (Q1_0) and 2-bit (Q2_0) GGUF weights, as Bonsai's files carry them, and the
//! ternary TQ1_0 and TQ2_0 of BitNet b1.58 files: tiny Qwen3s packed by
//! scripts/make_lowbit_fixtures.py (every 2-D tensor, embedding and output head
//! included, norms F32; the ternary ones 256 wide, a TQ block's width) against HF
//! transformers in f32 on exactly the dequantized weights; the embedding and head bound
//! in several row ranges; the bits per weight `info` reports; and type id 42, which
//! older files used for other layouts, read as Q2_0 only when the file's tensor spans
//! say so.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::{gpu, max_abs_diff};
use lfm_edge::dtype::DType;
use lfm_edge::gguf::{dequantize, GgmlType, GgufFile};
use lfm_edge::ops::{row_parts, GpuTensor};
use lfm_edge::{Gpu, GpuOptions, Model, Session, SessionOptions};
use serde::Deserialize;

/// The bar for GGUF logits: activations stay f32, so only the weights' rounding counts.
const TOLERANCE: f32 = 5e-3;

/// Each fixture, its weight type and that type's bits per weight.
const FILES: [(&str, DType, f64); 4] = [
    ("qwen3-tiny-lowbit-Q1_0", DType::Q1_0, 1.125),
    ("qwen3-tiny-lowbit-Q2_0", DType::Q2_0, 2.25),
    ("qwen3-tiny-ternary-TQ1_0", DType::TQ1_0, 1.6875),
    ("qwen3-tiny-ternary-TQ2_0", DType::TQ2_0, 2.0625),
];

#[derive(Deserialize)]
struct TensorReference {
    #[serde(rename = "type")]
    ggml_type: String,
    dims: Vec<usize>,
    dequantized_fnv1a64: String,
}

#[derive(Deserialize)]
struct Reference {
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    tensors: BTreeMap<String, TensorReference>,
}

fn path(name: &str) -> PathBuf {
    common::fixture("gguf").join(format!("{name}.gguf"))
}

fn reference(name: &str) -> (Reference, Vec<f32>) {
    let file = path(name);
    let text = std::fs::read_to_string(file.with_extension("json")).unwrap();
    let (_, logits) = lfm_edge::npy::read_f32(&file.with_extension("logits.npy")).unwrap();
    (serde_json::from_str(&text).unwrap(), logits)
}

#[test]
fn files_hold_every_matrix_packed() {
    for (name, dtype, _) in FILES {
        let (r, _) = reference(name);
        let file = GgufFile::open(&path(name)).unwrap();
        assert_eq!(file.tensors().count(), r.tensors.len(), "{name}");
        for (tensor_name, want) in &r.tensors {
            let tensor = file.tensor(tensor_name).unwrap();
            let expected = if want.dims.len() == 2 {
                dtype.to_string()
            } else {
                "F32".to_string()
            };
            assert_eq!(want.ggml_type, expected, "{name} {tensor_name}");
            assert_eq!(
                tensor.info.ggml_type.name(),
                expected,
                "{name} {tensor_name}"
            );
            assert_eq!(tensor.info.dims, want.dims, "{name} {tensor_name}");
            let values = dequantize(tensor.info.ggml_type, tensor.bytes).unwrap();
            assert_eq!(
                common::fnv1a64(&values),
                want.dequantized_fnv1a64,
                "{name} {tensor_name}: dequantized values differ from the script's"
            );
        }
        for packed in ["token_embd.weight", "output.weight"] {
            assert!(
                r.tensors[packed].ggml_type == dtype.to_string(),
                "{name} {packed}"
            );
        }
    }
}

#[test]
fn logits_match_transformers_in_prefill_and_decode() {
    for (name, _, _) in FILES {
        let (r, expected) = reference(name);
        let model = Arc::new(Model::load(&path(name), gpu()).unwrap());
        for batch in [1, 5, r.prompt_ids.len()] {
            for (mode, got) in common::prefill_and_decode(model.clone(), &r.prompt_ids, batch) {
                let err = max_abs_diff(&got, &expected);
                eprintln!("{name} {mode}, batch {batch}: max abs error {err:.2e}");
                assert!(err <= TOLERANCE, "{name} {mode}, batch {batch}: {err}");
            }
        }
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    for (name, _, _) in FILES {
        let (r, _) = reference(name);
        let model = Arc::new(Model::load(&path(name), gpu()).unwrap());
        let generated = common::greedy(model, &r.prompt_ids, r.greedy_ids.len());
        assert_eq!(generated, r.greedy_ids, "{name}");
    }
}

/// With 9 KiB bindings (`--max-binding 9KiB`, room for the session's largest
/// activation) the packed embedding and output head (1024 rows of 18, 36, 54 or 66
/// bytes) are gathered and multiplied one row range at a time, to the same logits.
#[test]
fn embedding_split_across_bindings_gives_the_same_logits() {
    const BINDING: u64 = 9 << 10;
    let small = Gpu::new(&GpuOptions {
        max_binding_size: Some(BINDING),
        ..GpuOptions::default()
    })
    .unwrap();
    for (name, dtype, _) in FILES {
        let (r, expected) = reference(name);
        let file = GgufFile::open(&path(name)).unwrap();
        let embedding = file.tensor("token_embd.weight").unwrap();
        let shape = embedding.info.shape();
        let table = GpuTensor::upload(&small, "embed", dtype, &shape, &[embedding.bytes]).unwrap();
        let parts = row_parts(&small, &table).unwrap();
        assert!(parts.len() > 1, "{name}: the embedding takes one binding");
        let split = Arc::new(Model::load(&path(name), small.clone()).unwrap());
        let whole = Arc::new(Model::load(&path(name), gpu()).unwrap());
        // Two tokens' logits fill a binding.
        let unsplit = common::prefill_and_decode(whole, &r.prompt_ids, 2);
        for ((mode, got), (_, want)) in common::prefill_and_decode(split, &r.prompt_ids, 2)
            .into_iter()
            .zip(unsplit)
        {
            let err = max_abs_diff(&got, &want);
            eprintln!(
                "{name} {mode} in {} parts: split vs whole {err:.2e}",
                parts.len()
            );
            assert!(err <= 1e-5, "{name} {mode}: {err}");
            assert!(max_abs_diff(&got, &expected) <= TOLERANCE, "{name} {mode}");
        }
    }
}

#[test]
fn info_reports_bits_per_weight() {
    for (name, dtype, bits) in FILES {
        let file = GgufFile::open(&path(name)).unwrap();
        let (count, bytes) = file
            .tensors()
            .filter(|t| t.ggml_type.name() == dtype.to_string())
            .fold((0, 0), |(n, b), t| (n + 1, b + t.n_bytes));
        assert_eq!(dtype.bits_per_weight(), bits);
        // Bindings too small for q, k and v or w1 and w3 together: no projections are
        // joined, and the model holds the file's tensors.
        let out = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
            .args(["info", "--model"])
            .arg(path(name))
            .args(["--max-binding", "4KiB"])
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        let line = format!("  {dtype}: {count} tensors, {bytes} bytes, {bits} bits per weight");
        assert!(stdout.contains(&line), "{line:?} not in {stdout}");
    }
}

// ---------------------------------------------------------------- type id 42

/// A GGUF file of tensors `(name, dims, type id, data)`, each placed right after the
/// previous one and padded to 32 bytes, as ggml and gguf-py write them.
fn gguf_file(tensors: &[(&str, &[u64], u32, Vec<u8>)]) -> Vec<u8> {
    let mut header = b"GGUF".to_vec();
    header.extend(3u32.to_le_bytes());
    header.extend((tensors.len() as u64).to_le_bytes());
    header.extend(0u64.to_le_bytes()); // metadata
    let mut data = Vec::new();
    for (name, dims, type_id, bytes) in tensors {
        header.extend((name.len() as u64).to_le_bytes());
        header.extend(name.as_bytes());
        header.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| header.extend(d.to_le_bytes()));
        header.extend(type_id.to_le_bytes());
        header.extend((data.len() as u64).to_le_bytes());
        data.extend(bytes);
        data.resize(data.len().next_multiple_of(32), 0);
    }
    header.resize(header.len().next_multiple_of(32), 0);
    header.extend(data);
    header
}

/// `elements` weights in blocks of `block_size` weights, `block_bytes` bytes each.
fn blocks(elements: usize, block_size: usize, block_bytes: usize) -> Vec<u8> {
    (0..elements / block_size * block_bytes)
        .map(|i| (i * 7 % 251) as u8)
        .collect()
}

fn open_error(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes, "old.gguf") {
        Ok(_) => panic!("the file was read"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn id_42_is_read_as_q2_0_only_when_the_spans_say_so() {
    let id = GgmlType::Q2_0.id();
    assert_eq!(id, 42);
    let dims: &[u64] = &[128, 32]; // 4096 weights
    let two = |block_size, block_bytes| {
        gguf_file(&[
            ("a", dims, id, blocks(4096, block_size, block_bytes)),
            ("b", dims, id, blocks(4096, block_size, block_bytes)),
        ])
    };
    // ggml's Q2_0: 64 weights per 18 bytes.
    let file = GgufFile::from_bytes(two(64, 18), "q2_0.gguf").unwrap();
    let b = file.tensor("b").unwrap();
    assert_eq!(b.bytes.len(), 4096 / 64 * 18);
    assert_eq!(dequantize(GgmlType::Q2_0, b.bytes).unwrap().len(), 4096);
    // PrismML's older group-128 Q2_0 (34 bytes per 128) and an older fork's
    // Q1_0_g128 (18 bytes per 128), under the same id.
    for ((block_size, block_bytes), names) in [
        (
            (128, 34),
            "group-128 Q2_0 of PrismML's older llama.cpp fork",
        ),
        ((128, 18), "Q1_0_g128"),
    ] {
        let err = open_error(two(block_size, block_bytes));
        for needle in ["old.gguf", "tensor a", "type id 42", "laid out as", names] {
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }
    // One tensor of 128 weights: 36 bytes of Q2_0 or 34 of group-128 Q2_0, both
    // padded to 64, so nothing tells them apart.
    let err = open_error(gguf_file(&[("c", &[128], id, blocks(128, 64, 18))]));
    for needle in ["old.gguf", "fit either", "group-128", "refused"] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    // Beside tensors of other types the spans still decide.
    let mixed = gguf_file(&[
        ("norm", &[128], GgmlType::F32.id(), vec![0; 512]),
        ("a", dims, id, blocks(4096, 64, 18)),
        ("q1", dims, GgmlType::Q1_0.id(), blocks(4096, 128, 18)),
    ]);
    GgufFile::from_bytes(mixed, "mixed.gguf").unwrap();
}

// ---------------------------------------------------------------- damaged files

/// Byte offset of the type id in `name`'s tensor info (after its length-prefixed name,
/// dimension count and dimensions).
fn type_field(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    let mut pattern = (name.len() as u64).to_le_bytes().to_vec();
    pattern.extend(name.as_bytes());
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .unwrap();
    at + pattern.len() + 4 + 8 * n_dims
}

/// Opens `bytes` and dequantizes every tensor it hands out: an error is fine, a panic
/// or a tensor of the wrong size is not. Whether it opened.
fn open_and_read(bytes: Vec<u8>) -> bool {
    let Ok(file) = GgufFile::from_bytes(bytes, "damaged.gguf") else {
        return false;
    };
    for info in file.tensors() {
        if let Ok(tensor) = file.tensor(&info.name) {
            assert_eq!(tensor.bytes.len(), info.n_bytes, "{}", info.name);
            let values = dequantize(info.ggml_type, tensor.bytes).unwrap();
            assert_eq!(values.len(), info.n_elements(), "{}", info.name);
        }
    }
    true
}

/// The low-bit files cut short, their tensor types rewritten and seeded bytes flipped:
/// each opens or fails with an error, never a panic; a Q1_0 matrix relabelled id 42
/// (as an older fork's Q1_0_g128 files are) is refused with the reason; a sample of
/// the damaged files that open is loaded as a model and run for a token.
#[test]
fn damaged_low_bit_files_give_errors_not_panics() {
    let gpu = gpu();
    let mut rng = common::Rng(42);
    for (name, dtype, _) in FILES {
        let valid = std::fs::read(path(name)).unwrap();
        let file = GgufFile::open(&path(name)).unwrap();
        let data_offset = file.data_offset() as usize;
        let last_end = file
            .tensors()
            .map(|t| data_offset + t.offset as usize + t.n_bytes)
            .max()
            .unwrap();
        // Every cut through the tensor table and the first tensors' data, and every
        // cut across the last tensor's end.
        let table = data_offset.saturating_sub(2048)..data_offset + 512;
        for len in table.chain(last_end - 64..valid.len()) {
            let opened = open_and_read(valid[..len].to_vec());
            assert!(!opened || len >= last_end, "{name} cut at {len} opened");
        }
        // Each matrix's type id rewritten to neighbouring and unknown ids.
        for info in file.tensors().filter(|t| t.dims.len() == 2) {
            let at = type_field(&valid, &info.name, 2);
            assert_eq!(
                u32::from_le_bytes(valid[at..at + 4].try_into().unwrap()),
                info.ggml_type.id()
            );
            for id in [0u32, 1, 2, 8, 12, 30, 34, 35, 40, 41, 42, 43, 142, u32::MAX] {
                let mut bytes = valid.clone();
                bytes[at..at + 4].copy_from_slice(&id.to_le_bytes());
                open_and_read(bytes);
            }
        }
        if dtype == DType::Q1_0 {
            let mut bytes = valid.clone();
            let at = type_field(&bytes, "blk.0.ffn_up.weight", 2);
            bytes[at..at + 4].copy_from_slice(&42u32.to_le_bytes());
            let err = open_error(bytes);
            for needle in ["blk.0.ffn_up.weight", "type id 42", "Q1_0_g128"] {
                assert!(err.contains(needle), "{needle:?} not in {err}");
            }
        }
        // Seeded flips: half in the header and tensor table, half anywhere.
        let tmp = tempfile::tempdir().unwrap();
        let mut loaded = 0;
        for i in 0..1500 {
            let mut bytes = valid.clone();
            let span = if i % 2 == 0 { data_offset } else { bytes.len() };
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() % span as u64) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            if open_and_read(bytes.clone()) && i % 50 == 1 {
                let file = tmp.path().join("flipped.gguf");
                std::fs::write(&file, &bytes).unwrap();
                if let Ok(model) = Model::load(&file, gpu.clone()) {
                    let options = SessionOptions {
                        max_context: 8,
                        ..SessionOptions::default()
                    };
                    // Runs or fails cleanly; data flips merely change values.
                    if let Ok(mut session) = Session::new(Arc::new(model), &options) {
                        let _ = session.step(1);
                        loaded += 1;
                    }
                }
            }
        }
        assert!(loaded > 0, "{name}: no flipped file ran");
    }
}
