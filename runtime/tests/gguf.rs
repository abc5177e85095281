//! The GGUF reader, dequantizer and tokenizer against the files llama.cpp's converter and
//! llama-quantize made (fixtures/gguf, by scripts/make_gguf_fixtures.py) and gguf-py's
//! readings of them; and against broken files built here, each of which must give an
//! error that names the file and what is wrong, never a panic. No GPU needed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lfm_edge::gguf::{dequantize, tokenizer_from_gguf, GgmlType, GgufFile, Value, ValueType};
use serde_json::Value as Json;

/// Every GGUF fixture, with the HF fixture it was converted from.
const FILES: [(&str, &str); 20] = [
    ("lfm2-tiny-conv-first-F32", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-conv-first-BF16", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-conv-first-Q8_0", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-conv-first-Q4_0", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-conv-first-Q5_1", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-attn-first-F16", "lfm2-tiny-attn-first"),
    ("lfm2-tiny-attn-first-Q4_1", "lfm2-tiny-attn-first"),
    ("lfm2-tiny-attn-first-Q5_0", "lfm2-tiny-attn-first"),
    // A hidden-256 model (K-quants need rows of 256) with conv-first's tokenizer.
    ("lfm2-tiny-kquant-Q4_K_M", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-kquant-Q5_K_M", "lfm2-tiny-conv-first"),
    ("lfm2-tiny-conv-first-F16", "lfm2-tiny-conv-first"),
    ("lfm2moe-tiny-F16", "lfm2moe-tiny"),
    ("lfm2moe-tiny-BF16", "lfm2moe-tiny"),
    ("lfm2moe-tiny-Q8_0", "lfm2moe-tiny"),
    ("lfm2moe-tiny-Q4_0", "lfm2moe-tiny"),
    ("lfm2moe-tiny-Q4_1", "lfm2moe-tiny"),
    ("lfm2moe-tiny-Q5_0", "lfm2moe-tiny"),
    ("lfm2moe-tiny-Q5_1", "lfm2moe-tiny"),
    // LFM2-MoE at hidden 256, for K-quants, with the same tokenizer.
    ("lfm2moe-tiny-kquant-Q4_K_M", "lfm2moe-tiny"),
    ("lfm2moe-tiny-kquant-Q5_K_M", "lfm2moe-tiny"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn read_json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn open(name: &str) -> GgufFile {
    GgufFile::open(&fixtures().join("gguf").join(format!("{name}.gguf"))).unwrap()
}

// ---------------------------------------------------------------- the fixture files

#[test]
fn fixtures_read_as_gguf_py_reads_them() {
    for (name, _) in FILES {
        let file = open(name);
        let expected = read_json(&fixtures().join("gguf").join(format!("{name}.json")));
        let expected = expected["tensors"].as_object().unwrap();
        assert_eq!(file.version(), 3, "{name}");
        assert_eq!(file.alignment(), 32, "{name}");
        assert_eq!(file.tensors().count(), expected.len(), "{name}");
        for (tensor_name, want) in expected {
            let tensor = file.tensor(tensor_name).unwrap();
            let dims: Vec<usize> = serde_json::from_value(want["dims"].clone()).unwrap();
            assert_eq!(tensor.info.dims, dims, "{name} {tensor_name}");
            assert_eq!(
                tensor.info.ggml_type.name(),
                want["type"],
                "{name} {tensor_name}"
            );
            assert_eq!(tensor.info.offset % 32, 0);
            let values = dequantize(tensor.info.ggml_type, tensor.bytes).unwrap();
            assert_eq!(values.len(), tensor.info.n_elements());
            assert_eq!(
                common::fnv1a64(&values),
                want["dequantized_fnv1a64"],
                "{name} {tensor_name}: dequantized values differ from gguf-py's"
            );
        }
    }
}

/// llama.cpp's names and shapes for archs lfm2 and lfm2moe, checked against the
/// hyperparameters the file states: what a loader can rely on.
#[test]
fn fixtures_have_llama_cpp_lfm2_layout() {
    for (name, _) in FILES {
        let file = open(name);
        let arch = file.get_str("general.architecture").unwrap();
        assert!(arch == "lfm2" || arch == "lfm2moe", "{name}: {arch}");
        let key = |k: &str| format!("{arch}.{k}");
        let h = file.get_u32(&key("embedding_length")).unwrap() as usize;
        let ff = file.get_u32(&key("feed_forward_length")).unwrap() as usize;
        let heads = file.get_u32(&key("attention.head_count")).unwrap() as usize;
        let l_cache = file.get_u32(&key("shortconv.l_cache")).unwrap() as usize;
        let vocab = file.get_u32(&key("vocab_size")).unwrap() as usize;
        let n_layers = file.get_u32(&key("block_count")).unwrap() as usize;
        // Per layer; 0 marks a conv layer.
        let kv_heads = file.get_u32_array(&key("attention.head_count_kv")).unwrap();
        assert_eq!(kv_heads.len(), n_layers);
        file.get_f32(&key("rope.freq_base")).unwrap();
        file.get_f32(&key("attention.layer_norm_rms_epsilon"))
            .unwrap();
        file.get_u32(&key("context_length")).unwrap();
        let conv_bias = file.tensors().any(|t| t.name.ends_with("conv.bias"));
        // lfm2moe: layers from `leading_dense_block_count` on route to experts.
        let moe = (arch == "lfm2moe").then(|| {
            let get = |k: &str| file.get_u32(&key(k)).unwrap() as usize;
            let experts = (get("expert_count"), get("expert_feed_forward_length"));
            (get("leading_dense_block_count"), experts)
        });

        let d = h / heads;
        let mut expected = vec![
            ("token_embd.weight".to_string(), vec![h, vocab]),
            ("token_embd_norm.weight".to_string(), vec![h]),
        ];
        for (i, &kv) in kv_heads.iter().enumerate() {
            let kv = kv as usize;
            let mut add = |suffix: &str, dims: Vec<usize>| {
                expected.push((format!("blk.{i}.{suffix}"), dims));
            };
            add("attn_norm.weight", vec![h]);
            add("ffn_norm.weight", vec![h]);
            match moe {
                Some((dense, (e, i_ff))) if i >= dense => {
                    add("ffn_gate_inp.weight", vec![h, e]);
                    add("exp_probs_b.bias", vec![e]);
                    add("ffn_gate_exps.weight", vec![h, i_ff, e]);
                    add("ffn_up_exps.weight", vec![h, i_ff, e]);
                    add("ffn_down_exps.weight", vec![i_ff, h, e]);
                }
                _ => {
                    add("ffn_gate.weight", vec![h, ff]);
                    add("ffn_up.weight", vec![h, ff]);
                    add("ffn_down.weight", vec![ff, h]);
                }
            }
            if kv == 0 {
                add("shortconv.in_proj.weight", vec![h, 3 * h]);
                add("shortconv.conv.weight", vec![l_cache, h]);
                add("shortconv.out_proj.weight", vec![h, h]);
                if conv_bias {
                    add("shortconv.in_proj.bias", vec![3 * h]);
                    add("shortconv.conv.bias", vec![h]);
                    add("shortconv.out_proj.bias", vec![h]);
                }
            } else {
                add("attn_q.weight", vec![h, h]);
                add("attn_k.weight", vec![h, kv * d]);
                add("attn_v.weight", vec![h, kv * d]);
                add("attn_output.weight", vec![h, h]);
                add("attn_q_norm.weight", vec![d]);
                add("attn_k_norm.weight", vec![d]);
            }
        }
        let found: BTreeSet<(String, Vec<usize>)> = file
            .tensors()
            .map(|t| (t.name.clone(), t.dims.clone()))
            .collect();
        assert_eq!(found, expected.into_iter().collect(), "{name}");
        // Norms, biases, the conv kernel and the router stay f32 whatever the file type.
        for t in file.tensors().filter(|t| {
            t.dims.len() == 1 || t.name.contains("conv.weight") || t.name.contains("gate_inp")
        }) {
            assert_eq!(t.ggml_type, GgmlType::F32, "{name} {}", t.name);
        }
        let embd = file.tensor("token_embd.weight").unwrap();
        assert_eq!(embd.info.shape(), vec![vocab, h], "PyTorch order");
    }
}

/// The 1-bit, 2-bit and ternary files (scripts/make_lowbit_fixtures.py; tested in
/// lowbit.rs).
const LOW_BIT_FILES: [&str; 4] = [
    "qwen3-tiny-lowbit-Q1_0",
    "qwen3-tiny-lowbit-Q2_0",
    "qwen3-tiny-ternary-TQ1_0",
    "qwen3-tiny-ternary-TQ2_0",
];

#[test]
fn fixtures_hold_every_supported_type() {
    let found: BTreeSet<&str> = FILES
        .iter()
        .map(|(name, _)| *name)
        .chain(LOW_BIT_FILES)
        .flat_map(|name| {
            open(name)
                .tensors()
                .map(|t| t.ggml_type.name())
                .collect::<Vec<_>>()
        })
        .collect();
    let supported: BTreeSet<&str> = GgmlType::all()
        .filter(|t| t.is_supported())
        .map(GgmlType::name)
        .collect();
    assert_eq!(found, supported);
}

// ---------------------------------------------------------------- types and dequantization

#[test]
fn ggml_type_table_matches_llama_cpp() {
    let table = read_json(&fixtures().join("gguf/ggml_types.json"));
    let table = table.as_array().unwrap();
    assert_eq!(table.len(), GgmlType::all().count());
    for entry in table {
        let ty = GgmlType::from_id(entry["id"].as_u64().unwrap() as u32).unwrap();
        assert_eq!(ty.name(), entry["name"]);
        assert_eq!(ty.id(), entry["id"].as_u64().unwrap() as u32);
        assert_eq!(ty.block_size(), entry["block_size"].as_u64().unwrap());
        assert_eq!(ty.block_bytes(), entry["block_bytes"].as_u64().unwrap());
    }
    for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
        assert_eq!(GgmlType::from_id(removed), None);
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for ty in GgmlType::all().filter(|t| t.is_supported()) {
        let sample = read_json(&fixtures().join(format!("gguf/dequant/{}.json", ty.name())));
        let hex = sample["bytes_hex"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let expected: Vec<u32> = serde_json::from_value(sample["f32_bits"].clone()).unwrap();
        let values = dequantize(ty, &bytes).unwrap();
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, expected, "{ty}");
    }
}

#[test]
fn dequantize_refuses_partial_blocks_and_unsupported_types() {
    let err = dequantize(GgmlType::Q4_K, &[0; 100])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not whole Q4_K blocks of 144 bytes"), "{err}");
    let err = dequantize(GgmlType::IQ2_XXS, &[0; 66])
        .unwrap_err()
        .to_string();
    assert!(err.contains("IQ2_XXS"), "{err}");
}

// ---------------------------------------------------------------- tokenizer

#[test]
fn tokenizer_from_metadata_encodes_as_tokenizer_json() {
    let extra = [
        "",
        "I'VE been 'told he's there, 'RE you sure? We'Ve a'lL",
        "3 33 333 3333 33333 3.3 3..3 ------======= нещо на Български",
        "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
        "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～",
        "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
        "<|startoftext|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<|fim_pre|>def f(x):<|fim_suf|>    return x<|fim_mid|>",
        "text<|endoftext|>more<|pad|>",
    ];
    for (file_name, hf_name) in [FILES[2], FILES[5], FILES[8]] {
        let built = tokenizer_from_gguf(&open(file_name)).unwrap();
        let hf_dir = fixtures().join(hf_name);
        let hf = tokenizers::Tokenizer::from_file(hf_dir.join("tokenizer.json")).unwrap();
        let reference = read_json(&hf_dir.join("reference.json"));
        for case in reference["tokenizations"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            let got = built.tokenizer.encode(text, true).unwrap();
            assert_eq!(got.get_ids(), ids, "{file_name}: {text:?}");
        }
        for text in extra {
            let want = hf.encode(text, true).unwrap();
            let got = built.tokenizer.encode(text, true).unwrap();
            assert_eq!(got.get_ids(), want.get_ids(), "{file_name}: {text:?}");
            assert_eq!(got.get_tokens(), want.get_tokens(), "{file_name}: {text:?}");
            for skip_special in [false, true] {
                assert_eq!(
                    built.tokenizer.decode(got.get_ids(), skip_special).unwrap(),
                    hf.decode(want.get_ids(), skip_special).unwrap()
                );
            }
        }
        let pair = (extra[1], extra[2]);
        assert_eq!(
            built.tokenizer.encode(pair, true).unwrap().get_ids(),
            hf.encode(pair, true).unwrap().get_ids()
        );
        assert_eq!(
            built.tokenizer.get_vocab_size(true),
            hf.get_vocab_size(true)
        );

        let config = read_json(&hf_dir.join("tokenizer_config.json"));
        let eos = hf
            .token_to_id(config["eos_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(built.eos_token_ids, vec![eos]);
        assert_eq!(
            built.chat_template.as_deref(),
            config["chat_template"].as_str()
        );
    }
}

#[test]
fn tokenizer_refuses_other_models_and_pre_tokenizers() {
    for (model, pre, expected) in [
        ("llama", "lfm2", "only \"gpt2\""),
        ("gpt2", "qwen35", "tokenizer.ggml.pre is \"qwen35\""),
    ] {
        let bytes = Gguf::new()
            .kv_str("tokenizer.ggml.model", model)
            .kv_str("tokenizer.ggml.pre", pre)
            .build();
        let file = GgufFile::from_bytes(bytes, "tok.gguf").unwrap();
        let err = tokenizer_from_gguf(&file).err().unwrap().to_string();
        assert!(
            err.starts_with("tok.gguf: ") && err.contains(expected),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- building GGUF files

const TYPE_U8: u32 = 0;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_U64: u32 = 10;

fn gguf_string(s: &[u8]) -> Vec<u8> {
    [&(s.len() as u64).to_le_bytes()[..], s].concat()
}

/// A GGUF image assembled field by field, so that each broken file differs from a
/// valid one in exactly the way under test.
struct Gguf {
    version: u32,
    kvs: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    alignment: usize,
    data: Vec<u8>,
}

impl Gguf {
    fn new() -> Self {
        Gguf {
            version: 3,
            kvs: Vec::new(),
            n_kv: 0,
            infos: Vec::new(),
            n_tensors: 0,
            alignment: 32,
            data: Vec::new(),
        }
    }

    /// A key/value with the value already encoded (type id then payload).
    fn kv_raw(mut self, key: &[u8], typed_value: &[u8]) -> Self {
        self.kvs.extend(gguf_string(key));
        self.kvs.extend(typed_value);
        self.n_kv += 1;
        self
    }

    fn kv(self, key: &str, ty: u32, payload: &[u8]) -> Self {
        self.kv_raw(key.as_bytes(), &[&ty.to_le_bytes()[..], payload].concat())
    }

    fn kv_str(self, key: &str, value: &str) -> Self {
        self.kv(key, TYPE_STRING, &gguf_string(value.as_bytes()))
    }

    fn kv_u32(self, key: &str, value: u32) -> Self {
        self.kv(key, 4, &value.to_le_bytes())
    }

    fn alignment(mut self, alignment: u32) -> Self {
        self.alignment = alignment as usize;
        self.kv_u32("general.alignment", alignment)
    }

    fn tensor_info(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
        self.infos.extend(gguf_string(name.as_bytes()));
        self.infos.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| self.infos.extend(d.to_le_bytes()));
        self.infos.extend(type_id.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    /// A tensor whose data is appended to the data section (padded to the alignment).
    fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: &[u8]) -> Self {
        let offset = self.data.len().next_multiple_of(self.alignment);
        self.data.resize(offset, 0);
        self.data.extend(data);
        self.tensor_info(name, dims, ty.id(), offset as u64)
    }

    fn header(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kvs);
        out.extend(&self.infos);
        out
    }

    fn build(&self) -> Vec<u8> {
        let mut out = self.header();
        out.resize(out.len().next_multiple_of(self.alignment), 0);
        out.extend(&self.data);
        out
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One value of every type, arrays nested and empty, and two tensors.
fn every_value_type() -> Gguf {
    let array = |ty: u32, items: &[&[u8]]| {
        [
            &TYPE_ARRAY.to_le_bytes()[..],
            &ty.to_le_bytes(),
            &(items.len() as u64).to_le_bytes(),
        ]
        .concat()
        .into_iter()
        .chain(items.concat())
        .collect::<Vec<u8>>()
    };
    // An array of arrays: the inner ones are encoded without their leading type id.
    let nested = array(
        TYPE_ARRAY,
        &[
            &array(TYPE_U8, &[&[1], &[2]])[4..],
            &array(TYPE_U8, &[&[3]])[4..],
        ],
    );
    Gguf::new()
        .kv("u8", TYPE_U8, &[200])
        .kv("i8", 1, &(-5i8).to_le_bytes())
        .kv("u16", 2, &60000u16.to_le_bytes())
        .kv("i16", 3, &(-300i16).to_le_bytes())
        .kv_u32("u32", 4_000_000_000)
        .kv("i32", TYPE_I32, &(-1i32).to_le_bytes())
        .kv("f32", TYPE_F32, &1.5f32.to_le_bytes())
        .kv("bool", TYPE_BOOL, &[1])
        .kv_str("string", "héllo")
        .kv_raw(b"nested", &nested)
        .kv_raw(b"empty", &array(TYPE_STRING, &[]))
        .kv_raw(
            b"strings",
            &array(TYPE_STRING, &[&gguf_string(b"a b"), &gguf_string(b"")]),
        )
        .kv_raw(
            b"f32s",
            &array(TYPE_F32, &[&0.25f32.to_le_bytes(), &(-2f32).to_le_bytes()]),
        )
        .kv("u64", TYPE_U64, &u64::MAX.to_le_bytes())
        .kv("i64", 11, &i64::MIN.to_le_bytes())
        .kv("f64", 12, &0.1f64.to_le_bytes())
        .tensor(
            "weights",
            &[2, 3],
            GgmlType::F32,
            &f32_bytes(&[1., 2., 3., 4., 5., 6.]),
        )
        .tensor("empty", &[0, 4], GgmlType::Q8_0, &[])
}

#[test]
fn reads_every_value_type() {
    let file = GgufFile::from_bytes(every_value_type().build(), "values.gguf").unwrap();
    assert_eq!(file.get("u8"), Some(&Value::U8(200)));
    assert_eq!(file.get("i8"), Some(&Value::I8(-5)));
    assert_eq!(file.get("u16"), Some(&Value::U16(60000)));
    assert_eq!(file.get("i16"), Some(&Value::I16(-300)));
    assert_eq!(file.get_u32("u32").unwrap(), 4_000_000_000);
    assert_eq!(file.get("i32"), Some(&Value::I32(-1)));
    assert_eq!(file.get_f32("f32").unwrap(), 1.5);
    assert!(file.get_bool("bool").unwrap());
    assert_eq!(file.get_str("string").unwrap(), "héllo");
    let inner =
        |items: Vec<u8>| Value::Array(ValueType::U8, items.into_iter().map(Value::U8).collect());
    assert_eq!(
        file.get("nested"),
        Some(&Value::Array(
            ValueType::Array,
            vec![inner(vec![1, 2]), inner(vec![3])]
        ))
    );
    assert_eq!(
        file.get("empty"),
        Some(&Value::Array(ValueType::String, vec![]))
    );
    assert_eq!(file.get_str_array("strings").unwrap(), vec!["a b", ""]);
    assert_eq!(file.get_f32_array("f32s").unwrap(), vec![0.25, -2.0]);
    assert_eq!(file.get("u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(file.get("i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(file.get("f64"), Some(&Value::F64(0.1)));
    assert_eq!(file.metadata().count(), 16);
    assert_eq!(file.metadata().next().unwrap().0, "u8", "file order");

    let weights = file.tensor("weights").unwrap();
    assert_eq!(
        (weights.info.dims.as_slice(), weights.info.shape()),
        (&[2, 3][..], vec![3, 2])
    );
    assert_eq!(
        dequantize(weights.info.ggml_type, weights.bytes).unwrap(),
        [1., 2., 3., 4., 5., 6.]
    );
    assert_eq!(file.tensor("empty").unwrap().bytes.len(), 0);
    assert_eq!(file.data_offset() % 32, 0);
}

#[test]
fn typed_getters_name_the_key_and_what_they_found() {
    let file = GgufFile::from_bytes(every_value_type().build(), "values.gguf").unwrap();
    let expect = |result: lfm_edge::Result<()>, expected: &str| {
        let expected = format!("values.gguf: metadata key {expected}");
        assert_eq!(result.unwrap_err().to_string(), expected);
    };
    expect(
        file.get_u32("i32").map(drop),
        "i32: expected an integer that fits in u32, found i32 -1",
    );
    expect(
        file.get_u32("u64").map(drop),
        "u64: expected an integer that fits in u32, found u64 18446744073709551615",
    );
    expect(
        file.get_f32("string").map(drop),
        "string: expected f32, found string \"héllo\"",
    );
    expect(
        file.get_str_array("nested").map(drop),
        "nested: expected array of string, found array of 2 array",
    );
    expect(
        file.get_bool("u8").map(drop),
        "u8: expected bool, found u8 200",
    );
    expect(
        file.get_str("general.architecture").map(drop),
        "general.architecture is missing",
    );
    let err = file.tensor("missing").err().unwrap().to_string();
    assert_eq!(err, "values.gguf: tensor missing is not in the file");
}

#[test]
fn known_but_unsupported_types_are_listed_but_not_handed_out() {
    let bytes = Gguf::new()
        .tensor(
            "blk.0.ffn_up.weight",
            &[256, 2],
            GgmlType::IQ2_XXS,
            &[0; 132],
        )
        .build();
    let file = GgufFile::from_bytes(bytes, "iq.gguf").unwrap();
    assert_eq!(file.tensors().next().unwrap().ggml_type, GgmlType::IQ2_XXS);
    let err = file
        .tensor("blk.0.ffn_up.weight")
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "iq.gguf: tensor blk.0.ffn_up.weight has type IQ2_XXS, which is not supported"
    );
}

#[test]
fn alignment_other_than_32_places_the_data() {
    let bytes = Gguf::new()
        .alignment(256)
        .tensor("a", &[3], GgmlType::F32, &f32_bytes(&[1., 2., 3.]))
        .tensor("b", &[2], GgmlType::F32, &f32_bytes(&[4., 5.]))
        .build();
    let file = GgufFile::from_bytes(bytes, "aligned.gguf").unwrap();
    assert_eq!((file.alignment(), file.data_offset() % 256), (256, 0));
    assert_eq!(file.tensor("b").unwrap().info.offset, 256);
    let b = file.tensor("b").unwrap();
    assert_eq!(dequantize(b.info.ggml_type, b.bytes).unwrap(), [4., 5.]);
}

// ---------------------------------------------------------------- broken files

/// Writes `bytes` to a file named after the case, opens it through the memory map and
/// checks that the error names that file, then starts with `expected`.
fn assert_broken(case: &str, bytes: &[u8], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{case}.gguf"));
    std::fs::write(&path, bytes).unwrap();
    let Err(err) = GgufFile::open(&path) else {
        panic!("{case}: opened");
    };
    let err = err.to_string();
    let message = err.strip_prefix(&format!("{}: ", path.display()));
    assert!(
        message.is_some_and(|m| m.starts_with(expected)),
        "{case}:\n  got      {err}\n  expected {expected}…"
    );
}

const HUGE: u64 = 1 << 60;

fn array_of(item_type: u32, count: u64, items: &[u8]) -> Vec<u8> {
    let header = [TYPE_ARRAY, item_type].map(u32::to_le_bytes).concat();
    [&header[..], &count.to_le_bytes(), items].concat()
}

fn one_tensor(dims: &[u64], type_id: u32, offset: u64) -> Gguf {
    Gguf::new().tensor_info("t", dims, type_id, offset)
}

#[test]
fn broken_headers_and_truncations_give_clear_errors() {
    let valid = every_value_type();
    let with_counts = |at: usize, count: u64| {
        let mut bytes = valid.build();
        bytes[at..at + 8].copy_from_slice(&count.to_le_bytes());
        bytes
    };
    let header_len = valid.header().len();
    let data_offset = header_len.next_multiple_of(32);
    let long_name = Gguf::new().kv_str("general.name", &"x".repeat(100)).build();
    let count = Gguf::new()
        .kv("count", TYPE_U64, &7u64.to_le_bytes())
        .build();

    assert_broken(
        "empty",
        &[],
        "header: truncated: 4 bytes needed at offset 0",
    );
    assert_broken(
        "not_gguf",
        b"GGML\x03\0\0\0",
        "not a GGUF file (starts with [47, 47",
    );
    let version = |v: [u8; 4]| [&b"GGUF"[..], &v].concat();
    assert_broken(
        "version_1",
        &version(1u32.to_le_bytes()),
        "GGUF version 1 is not supported (2 and 3 are)",
    );
    assert_broken(
        "big_endian",
        &version(3u32.to_be_bytes()),
        "big-endian GGUF files are not supported",
    );
    assert_broken(
        "truncated_header",
        &valid.build()[..12],
        "header: truncated: 8 bytes needed at offset 8",
    );
    assert_broken(
        "huge_tensor_count",
        &with_counts(8, HUGE),
        "header: tensor count 1152921504606846976 cannot fit",
    );
    assert_broken(
        "huge_kv_count",
        &with_counts(16, HUGE),
        "header: metadata count 1152921504606846976 cannot fit",
    );
    assert_broken(
        "truncated_in_metadata",
        &long_name[..60],
        "metadata key general.name: string length 100 at offset 48 is past the end",
    );
    assert_broken(
        "truncated_in_value",
        &count[..44],
        "metadata key count: truncated: 8 bytes needed at offset 41",
    );
    assert_broken(
        "truncated_in_tensor_table",
        &valid.build()[..header_len - 3],
        "tensor empty: truncated",
    );
    assert_broken(
        "truncated_in_data",
        &valid.build()[..data_offset + 20],
        "tensor weights: 24 bytes at offset 0 of the data section",
    );
    assert_broken(
        "data_section_past_end",
        &one_tensor(&[0], 0, 0).header(),
        "the data section (after the tensor table, aligned to 32) starts past the end",
    );
}

#[test]
fn broken_metadata_gives_clear_errors() {
    let u8_value = [&TYPE_U8.to_le_bytes()[..], &[0]].concat();
    // Arrays holding one array each, nine deep, then room for more.
    let level = [
        TYPE_ARRAY.to_le_bytes().to_vec(),
        1u64.to_le_bytes().to_vec(),
    ]
    .concat();
    let nested = [&TYPE_ARRAY.to_le_bytes()[..], &level.repeat(9), &[0; 64]].concat();

    assert_broken(
        "huge_array_count",
        &Gguf::new()
            .kv_raw(b"tokenizer.ggml.tokens", &array_of(TYPE_STRING, HUGE, &[]))
            .build(),
        "metadata key tokenizer.ggml.tokens: array length 1152921504606846976 cannot fit",
    );
    let too_many = (1 << 22) + 1;
    assert_broken(
        "too_many_array_values",
        &Gguf::new()
            .kv_raw(
                b"big",
                &array_of(TYPE_U8, too_many, &vec![0; too_many as usize]),
            )
            .build(),
        "metadata key big: array length 4194305 takes the metadata past 4194304 values",
    );
    assert_broken(
        "huge_string_length",
        &Gguf::new()
            .kv("general.name", TYPE_STRING, &HUGE.to_le_bytes())
            .build(),
        "metadata key general.name: string length 1152921504606846976 at offset",
    );
    assert_broken(
        "string_in_array_past_end",
        &Gguf::new()
            .kv_raw(b"s", &array_of(TYPE_STRING, 1, &100u64.to_le_bytes()))
            .header(),
        "metadata key s: element 0: string length 100 at offset 49 is past the end",
    );
    assert_broken(
        "non_utf8_key",
        &Gguf::new().kv_raw(b"bad\xff", &u8_value).build(),
        "metadata key #0: string at offset 32 is not UTF-8",
    );
    assert_broken(
        "non_utf8_value",
        &Gguf::new()
            .kv("general.name", TYPE_STRING, &gguf_string(b"caf\xe9"))
            .build(),
        "metadata key general.name: string at offset 56 is not UTF-8",
    );
    assert_broken(
        "unknown_value_type",
        &Gguf::new().kv("k", 13, &[0; 8]).build(),
        "metadata key k: unknown value type id 13",
    );
    assert_broken(
        "arrays_nested_too_deep",
        &Gguf::new().kv_raw(b"deep", &nested).build(),
        &format!(
            "metadata key deep: {}arrays nested deeper than 8",
            "element 0: ".repeat(8)
        ),
    );
    assert_broken(
        "empty_key",
        &Gguf::new().kv_raw(b"", &u8_value).build(),
        "metadata key #0 is empty",
    );
    assert_broken(
        "duplicate_key",
        &Gguf::new().kv_u32("a", 1).kv_u32("a", 2).build(),
        "metadata key a appears twice",
    );
    let alignment = "metadata key general.alignment";
    assert_broken(
        "alignment_zero",
        &Gguf::new().kv_u32("general.alignment", 0).build(),
        &format!("{alignment}: u32 0, expected a u32 power of two"),
    );
    assert_broken(
        "alignment_not_power_of_two",
        &Gguf::new().kv_u32("general.alignment", 48).build(),
        &format!("{alignment}: u32 48, expected a u32 power of two"),
    );
    assert_broken(
        "alignment_not_u32",
        &Gguf::new()
            .kv("general.alignment", TYPE_U64, &32u64.to_le_bytes())
            .build(),
        &format!("{alignment}: u64 32, expected a u32 power of two"),
    );
}

#[test]
fn broken_tensor_tables_give_clear_errors() {
    let f32_tensor = |gguf: Gguf| gguf.tensor("t", &[1], GgmlType::F32, &[0; 4]);
    let bad_name: Vec<u8> = one_tensor(&[1], 0, 0)
        .build()
        .into_iter()
        .map(|b| if b == b't' { 0xff } else { b })
        .collect();

    assert_broken(
        "non_utf8_tensor_name",
        &bad_name,
        "tensor #0: name: string at offset 32 is not UTF-8",
    );
    assert_broken(
        "duplicate_tensor",
        &f32_tensor(f32_tensor(Gguf::new())).build(),
        "tensor t appears twice",
    );
    assert_broken(
        "five_dims",
        &one_tensor(&[1; 5], 0, 0).build(),
        "tensor t: 5 dimensions, GGUF allows at most 4",
    );
    assert_broken(
        "element_count_overflow",
        &one_tensor(&[1 << 32, 1 << 32, 2], 0, 0).build(),
        "tensor t: dimensions [4294967296, 4294967296, 2] overflow the element count",
    );
    assert_broken(
        "negative_dim",
        &one_tensor(&[u64::MAX], 0, 0).build(),
        "tensor t: dimension out of range in [18446744073709551615]",
    );
    assert_broken(
        "byte_size_overflow",
        &one_tensor(&[1 << 62, 2], 0, 0).build(),
        "tensor t: dimensions [4611686018427387904, 2] of type F32 overflow the byte size",
    );
    assert_broken(
        "size_past_end",
        &one_tensor(&[1 << 40, 1 << 20], 0, 0).build(),
        "tensor t: 4611686018427387904 bytes at offset 0 of the data section",
    );
    assert_broken(
        "unknown_type_id",
        &one_tensor(&[32], 99, 0).build(),
        "tensor t: unknown ggml type id 99",
    );
    assert_broken(
        "removed_type_id",
        &one_tensor(&[32], 4, 0).build(),
        "tensor t: unknown ggml type id 4",
    );
    assert_broken(
        "row_not_whole_blocks",
        &one_tensor(&[16, 2], GgmlType::Q4_0.id(), 0).build(),
        "tensor t: type Q4_0 needs rows that are a multiple of 32 elements",
    );
    assert_broken(
        "offset_unaligned",
        &one_tensor(&[1], 0, 8).build(),
        "tensor t: data offset 8 is not a multiple of the alignment 32",
    );
    assert_broken(
        "offset_past_end",
        &one_tensor(&[1], 0, 1 << 20).build(),
        "tensor t: 4 bytes at offset 1048576 of the data section",
    );
    assert_broken(
        "offset_overflow",
        &one_tensor(&[1], 0, u64::MAX - 31).build(),
        "tensor t: 4 bytes at offset 18446744073709551584 of the data section",
    );
}

/// Every truncation and a few thousand seeded byte flips of a valid file: each must
/// open or fail with an error, never panic or allocate without bound.
#[test]
fn truncated_and_corrupted_files_never_panic() {
    let valid = every_value_type().build();
    for len in 0..valid.len() {
        assert!(
            GgufFile::from_bytes(valid[..len].to_vec(), "cut.gguf").is_err(),
            "cut at {len}"
        );
    }
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut bytes = valid.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        if let Ok(file) = GgufFile::from_bytes(bytes, "flipped.gguf") {
            for info in file.tensors() {
                if let Ok(tensor) = file.tensor(&info.name) {
                    assert_eq!(tensor.bytes.len(), info.n_bytes);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- model metadata

fn type_id(ty: ValueType) -> u32 {
    (0..13)
        .find(|&id| ValueType::from_id(id) == Some(ty))
        .unwrap()
}

/// A value as a file stores it after its key: the type id, then the payload.
fn encode(value: &Value) -> Vec<u8> {
    [
        &type_id(value.value_type()).to_le_bytes()[..],
        &payload(value),
    ]
    .concat()
}

fn payload(value: &Value) -> Vec<u8> {
    match value {
        Value::U8(v) => v.to_le_bytes().to_vec(),
        Value::I8(v) => v.to_le_bytes().to_vec(),
        Value::U16(v) => v.to_le_bytes().to_vec(),
        Value::I16(v) => v.to_le_bytes().to_vec(),
        Value::U32(v) => v.to_le_bytes().to_vec(),
        Value::I32(v) => v.to_le_bytes().to_vec(),
        Value::F32(v) => v.to_le_bytes().to_vec(),
        Value::Bool(v) => vec![u8::from(*v)],
        Value::String(s) => gguf_string(s.as_bytes()),
        Value::U64(v) => v.to_le_bytes().to_vec(),
        Value::I64(v) => v.to_le_bytes().to_vec(),
        Value::F64(v) => v.to_le_bytes().to_vec(),
        Value::Array(ty, items) => {
            let bytes: Vec<u8> = items.iter().flat_map(payload).collect();
            // array_of's encoding, less the type id that encode() writes.
            array_of(type_id(*ty), items.len() as u64, &bytes)[4..].to_vec()
        }
    }
}

/// The fixture `name` rebuilt with its metadata passed through `edit` (`None` drops the
/// key) and its tensors as they are.
fn edited(name: &str, edit: impl Fn(&str, &Value) -> Option<Value>) -> Vec<u8> {
    let file = open(name);
    let mut gguf = Gguf::new();
    for (key, value) in file.metadata() {
        if let Some(value) = edit(key, value) {
            gguf = gguf.kv_raw(key.as_bytes(), &encode(&value));
        }
    }
    for info in file.tensors() {
        let dims: Vec<u64> = info.dims.iter().map(|&d| d as u64).collect();
        let bytes = file.tensor(&info.name).unwrap().bytes;
        gguf = gguf.tensor(&info.name, &dims, info.ggml_type, bytes);
    }
    gguf.build()
}

/// `name` with each of `changes` (key, new value) made.
fn with_metadata(name: &str, changes: &[(&str, Value)]) -> Vec<u8> {
    edited(name, |key, value| {
        let new = changes.iter().find(|(k, _)| *k == key);
        Some(new.map_or(value, |(_, v)| v).clone())
    })
}

fn model_config_error(bytes: Vec<u8>) -> String {
    let file = GgufFile::from_bytes(bytes, "edited.gguf").unwrap();
    match lfm_edge::gguf::model_config(&file) {
        Ok(config) => panic!("loaded: {config:?}"),
        Err(e) => e.to_string(),
    }
}

const LFM2_F32: &str = "lfm2-tiny-conv-first-F32";

#[test]
fn edited_fixture_reads_as_the_original() {
    let original = lfm_edge::gguf::model_config(&open(LFM2_F32)).unwrap();
    let file = GgufFile::from_bytes(edited(LFM2_F32, |_, v| Some(v.clone())), "same.gguf");
    let copy = lfm_edge::gguf::model_config(&file.unwrap()).unwrap();
    assert_eq!(format!("{copy:?}"), format!("{original:?}"));
}

/// The checks config.json gets, naming the GGUF key and the value found.
#[test]
fn model_metadata_is_checked_as_config_json_is() {
    let eps = "lfm2.attention.layer_norm_rms_epsilon";
    let theta = "lfm2.rope.freq_base";
    let l_cache = "lfm2.shortconv.l_cache";
    for (key, value, expected) in [
        (
            l_cache,
            Value::U32(0),
            "lfm2.shortconv.l_cache is 0, must be in 1..=16",
        ),
        (
            l_cache,
            Value::U32(17),
            "lfm2.shortconv.l_cache is 17, must be in 1..=16",
        ),
        (
            eps,
            Value::F32(f32::NAN),
            "lfm2.attention.layer_norm_rms_epsilon is NaN",
        ),
        (
            eps,
            Value::F32(-1e-5),
            "lfm2.attention.layer_norm_rms_epsilon is -1e-5",
        ),
        (
            eps,
            Value::F32(0.0),
            "lfm2.attention.layer_norm_rms_epsilon is 0.0",
        ),
        (
            theta,
            Value::F32(0.0),
            "lfm2.rope.freq_base is 0.0, must be positive and finite",
        ),
        (theta, Value::F32(-1.0), "lfm2.rope.freq_base is -1.0"),
        (
            theta,
            Value::F32(f32::INFINITY),
            "lfm2.rope.freq_base is inf",
        ),
        (theta, Value::F64(1e300), "lfm2.rope.freq_base is inf"),
        (
            "lfm2.attention.head_count",
            Value::U32(0),
            "lfm2.attention.head_count is 0",
        ),
        (
            "lfm2.embedding_length",
            Value::U32(0),
            "lfm2.embedding_length is 0",
        ),
    ] {
        let err = model_config_error(with_metadata(LFM2_F32, &[(key, value)]));
        let message = err.strip_prefix("edited.gguf: ");
        assert!(
            message.is_some_and(|m| m.starts_with(expected)),
            "{key}: {err}"
        );
    }
}

#[test]
fn block_count_must_match_the_blocks() {
    let kv_heads = |n: usize| {
        let all = open(LFM2_F32)
            .get_u32_array("lfm2.attention.head_count_kv")
            .unwrap();
        let items = all.into_iter().take(n).map(Value::U32).collect();
        (
            "lfm2.attention.head_count_kv",
            Value::Array(ValueType::U32, items),
        )
    };
    for (n, expected) in [
        (0, "lfm2.block_count is 0, must be in 1..=1024"),
        (
            5,
            "lfm2.block_count is 5, the tensors hold 6 layers (blk.0 to blk.5)",
        ),
    ] {
        let bytes = with_metadata(
            LFM2_F32,
            &[("lfm2.block_count", Value::U32(n)), kv_heads(n as usize)],
        );
        assert_eq!(
            model_config_error(bytes),
            format!("edited.gguf: {expected}")
        );
    }
}

/// A FIFO would block opening it until a writer came; it is refused at once.
#[test]
fn a_fifo_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipe.gguf");
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    assert!(made.unwrap().success());
    let (sender, receiver) = std::sync::mpsc::channel();
    let opened = path.clone();
    std::thread::spawn(move || sender.send(GgufFile::open(&opened).err().map(|e| e.to_string())));
    let err = receiver
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("GgufFile::open still waiting on a FIFO after 20 s")
        .expect("a FIFO opened as a GGUF file");
    assert_eq!(err, format!("{}: not a regular file", path.display()));
}

/// A broken template embedded in a GGUF file is reported against that file (this test
/// runs the command line, on the GPU).
#[test]
fn chat_template_errors_name_the_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("templated.gguf");
    let template = Value::String("{% for m in messages %}".into());
    std::fs::write(
        &path,
        with_metadata(LFM2_F32, &[("tokenizer.chat_template", template)]),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args([
            "generate",
            "--chat",
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
            "--model",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: chat_template: syntax error", path.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("tokenizer_config.json"), "{stderr}");
}
