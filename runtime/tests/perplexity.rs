//! `perplexity`: llama.cpp's chunking and statistics held to HF transformers
//! (fixtures/perplexity/reference.json, scripts/make_perplexity_reference.py), its
//! baseline file format read and written bit-exactly, and clean errors for a short
//! text, a context too large and a baseline that does not belong.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::{fixture, gpu};
use lfm_edge::perplexity::{
    self, quantize_row, Baseline, BaselineHeader, BaselineReader, BaselineWriter, Chunking,
    PerplexityOptions, Report,
};
use lfm_edge::{KvDtype, Model, Session, SessionOptions};
use serde_json::Value;

const BASE: &str = "lfm2-tiny-conv-first";
const VARIANT: &str = "gguf/lfm2-tiny-conv-first-Q4_0.gguf";
/// The reference's context.
const CONTEXT: usize = 64;

fn text_path() -> PathBuf {
    fixture("perplexity/twelfth_night.txt")
}

fn text() -> String {
    std::fs::read_to_string(text_path()).unwrap()
}

fn reference() -> Value {
    let json = std::fs::read_to_string(fixture("perplexity/reference.json")).unwrap();
    serde_json::from_str(&json).unwrap()
}

fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

fn load(name: &str) -> Arc<Model> {
    Arc::new(Model::load(&fixture(name), gpu()).unwrap())
}

fn options(chunks: Option<usize>) -> PerplexityOptions {
    PerplexityOptions {
        context: CONTEXT,
        chunks,
        batch: None,
        session: SessionOptions {
            kv_dtype: KvDtype::F32,
            ..SessionOptions::default()
        },
    }
}

fn evaluate(model: &Arc<Model>, text: &str, chunks: Option<usize>, baseline: Baseline) -> Report {
    perplexity::evaluate(model, text, &options(chunks), baseline, &mut |_| {}).unwrap()
}

fn assert_relative(what: &str, got: f64, want: f64, tolerance: f64) {
    let error = (got - want).abs() / want.abs();
    assert!(
        error <= tolerance,
        "{what}: {got} vs {want} ({error:.2e} apart)"
    );
}

#[test]
fn chunking_is_llama_cpps() {
    let c = Chunking::new(1100, 512, None).unwrap();
    assert_eq!((c.chunks, c.first(), c.scored_per_chunk()), (2, 256, 255));
    assert_eq!(c.tokens_scored(), 510);
    assert_eq!(Chunking::new(5000, 512, Some(3)).unwrap().chunks, 3);
    assert_eq!(Chunking::new(5000, 512, Some(30)).unwrap().chunks, 9);
    assert_eq!(Chunking::new(10, 5, None).unwrap().scored_per_chunk(), 2);
    let short = Chunking::new(1023, 512, None).unwrap_err().to_string();
    assert!(short.contains("too short for 2 chunks"), "{short}");
    let input = c.input(&(0..1100).collect::<Vec<u32>>(), 1, Some(1));
    assert_eq!((input.len(), input[0], input[1]), (512, 1, 513));
}

#[test]
fn matches_hf_transformers() {
    let reference = reference();
    let text = text();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("base.kld");
    let base = evaluate(&load(BASE), &text, None, Baseline::Save(&saved));
    let chunks = number(&reference, "chunks") as usize;
    assert_eq!(base.chunking.chunks, chunks);
    assert_eq!(base.text_tokens, number(&reference, "text_tokens") as usize);
    // llama.cpp scores n_ctx − 1 − n_ctx/2 positions a chunk.
    assert_eq!(base.tokens_scored(), chunks * (CONTEXT - 1 - CONTEXT / 2));
    assert_eq!(
        base.tokens_scored(),
        number(&reference, "tokens_scored") as usize
    );
    assert_eq!(
        base.bytes_scored,
        number(&reference, "bytes_scored") as usize
    );
    let hf = &reference["base"];
    assert_relative("PPL", base.perplexity.ppl.value, number(hf, "ppl"), 1e-3);
    let bpb = number(hf, "bits_per_byte");
    assert_relative("bits per byte", base.bits_per_byte(), bpb, 1e-3);

    let variant = evaluate(&load(VARIANT), &text, None, Baseline::Compare(&saved));
    let hf = &reference["variant"];
    assert_relative(
        "PPL(Q4_0)",
        variant.perplexity.ppl.value,
        number(hf, "ppl"),
        1e-3,
    );
    let k = variant.comparison.as_ref().unwrap();
    let kld = number(hf, "kld_mean");
    assert!(
        (k.kld.value - kld).abs() <= 2e-3,
        "KLD {} vs {kld}",
        k.kld.value
    );
    let top1 = number(hf, "top1_agree");
    let agree = k.top1_agree.value;
    assert!((agree - top1).abs() <= 0.01, "top-1 {agree} vs {top1}");
    let rms = number(hf, "delta_p_rms");
    assert!(
        (k.delta_p_rms.value - rms).abs() <= 1e-3,
        "Δp RMS {} vs {rms}",
        k.delta_p_rms.value
    );
    // The baseline's own numbers come from its file, the same as the first run's.
    assert_relative(
        "PPL(base)",
        k.base.ppl.value,
        base.perplexity.ppl.value,
        1e-2,
    );
    assert_eq!(variant.tokens.len(), base.tokens.len());
}

/// The logits `model` gives at the scored positions of chunk `i` of `tokens`.
fn scored_logits(model: &Arc<Model>, tokens: &[u32], c: &Chunking, i: usize) -> Vec<Vec<f32>> {
    let options = SessionOptions {
        max_context: c.context,
        batch: c.context,
        all_logits: true,
        kv_dtype: KvDtype::F32,
        snapshot_interval: c.context,
        ..SessionOptions::default()
    };
    let mut session = Session::new(model.clone(), &options).unwrap();
    let bos = perplexity::added_bos(&model.tokenizer).unwrap();
    let logits = session.feed(&c.input(tokens, i, bos)).unwrap();
    let vocab = model.config.vocab_size;
    (c.first()..c.context - 1)
        .map(|p| logits[p * vocab..(p + 1) * vocab].to_vec())
        .collect()
}

fn lfm_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `perplexity` on the fixture text at CONTEXT tokens a chunk, with `extra` arguments.
fn run(model: &str, chunks: usize, extra: &[&str]) -> Output {
    let model = fixture(model).display().to_string();
    let file = text_path().display().to_string();
    let (context, chunks) = (CONTEXT.to_string(), chunks.to_string());
    let mut args = vec![
        "perplexity",
        "--model",
        &model,
        "--file",
        &file,
        "--context",
        &context,
        "--chunks",
        &chunks,
        "--kv-cache",
        "f32",
    ];
    args.extend(extra);
    lfm_edge(&args)
}

fn save_baseline(dir: &Path, chunks: usize) -> PathBuf {
    let path = dir.join(format!("base-{chunks}.kld"));
    let out = run(BASE, chunks, &["--save-logits", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !path.with_extension("kld.partial").exists(),
        "the partial file is left"
    );
    path
}

/// A baseline file as the reader sees it, written out again.
fn reserialize(reader: &mut BaselineReader) -> Vec<u8> {
    let h = reader.header.clone();
    let mut bytes = b"_logits_".to_vec();
    for n in [h.context, h.vocab, h.chunks] {
        bytes.extend((n as i32).to_le_bytes());
    }
    for &t in &h.tokens {
        bytes.extend((t as i32).to_le_bytes());
    }
    for _ in 0..h.chunks {
        reader.next_chunk().unwrap();
        for r in 0..h.rows_per_chunk() {
            let row = reader.row(r).unwrap();
            bytes.extend(row.scale().to_le_bytes());
            bytes.extend(row.min_log_prob().to_le_bytes());
            for i in 0..h.vocab + h.vocab % 2 {
                bytes.extend(row.quantized(i).to_le_bytes());
            }
        }
    }
    bytes
}

#[test]
fn a_saved_baseline_reads_back_bit_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = save_baseline(dir.path(), 3);
    let file = std::fs::read(&path).unwrap();
    let mut reader = BaselineReader::open(&path).unwrap();
    let model = load(BASE);
    let tokens = perplexity::tokenize(&model.tokenizer, &text()).unwrap();
    let c = Chunking::new(tokens.len(), CONTEXT, Some(3)).unwrap();
    let h = &reader.header;
    assert_eq!((h.context, h.vocab, h.chunks), (CONTEXT, 1024, 3));
    assert_eq!(h.tokens, c.covered(&tokens));
    assert_eq!(reserialize(&mut reader), file);
    // Its rows are the model's logits at the scored positions, quantized as llama.cpp.
    let mut expected = file[..20 + 4 * 3 * CONTEXT].to_vec();
    for i in 0..3 {
        for row in scored_logits(&model, &tokens, &c, i) {
            quantize_row(&row, &mut expected);
        }
    }
    assert!(
        expected == file,
        "the rows are not the model's quantized logits"
    );
}

/// llama.cpp's `nearest_int`: the float rounding of a magic sum.
fn nearest_int(x: f32) -> i32 {
    let bits = (x + 12582912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// One row as llama.cpp's `log_softmax(n_vocab, logits, log_prob, tok)` writes it,
/// transcribed from its C: two floats, then the u16 values padded to even.
fn llama_cpp_row(logits: &[f32]) -> Vec<u8> {
    let mut max_logit = logits[0];
    let mut min_logit = logits[0];
    for &l in &logits[1..] {
        max_logit = max_logit.max(l);
        min_logit = min_logit.min(l);
    }
    min_logit = min_logit.max(max_logit - 16.0);
    let mut sum_exp = 0.0f64;
    for &l in logits {
        sum_exp += (l - max_logit).exp() as f64;
    }
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min_logit - max_logit - log_sum_exp;
    let scale = (max_logit - min_logit) / 65535.0;
    let mut row = [scale.to_le_bytes(), min_log_prob.to_le_bytes()].concat();
    let inv_scale = 1.0 / scale;
    for &l in logits {
        let q = match scale != 0.0 && l > min_logit {
            true => nearest_int(inv_scale * (l - min_logit)) as u16,
            false => 0,
        };
        row.extend(q.to_le_bytes());
    }
    row.resize(2 * (2 * logits.len().div_ceil(2) + 4), 0);
    row
}

/// A file in llama.cpp's layout: magic, n_ctx, n_vocab, n_chunk, tokens, rows.
fn llama_cpp_file(n_ctx: i32, n_vocab: i32, tokens: &[u32], rows: &[Vec<u8>]) -> Vec<u8> {
    let n_chunk = tokens.len() as i32 / n_ctx;
    let mut bytes = b"_logits_".to_vec();
    for n in [n_ctx, n_vocab, n_chunk] {
        bytes.extend(n.to_le_bytes());
    }
    for &t in tokens {
        bytes.extend((t as i32).to_le_bytes());
    }
    for row in rows {
        bytes.extend(row);
    }
    bytes
}

#[test]
fn reads_a_file_in_llama_cpps_layout() {
    // n_ctx 8 scores positions 4..=6: 3 rows a chunk; an odd vocabulary is padded.
    let tokens: Vec<u32> = (0..16).map(|i| i % 5).collect();
    let rows: Vec<Vec<u8>> = (0..6)
        .map(|r| llama_cpp_row(&[r as f32, 0.5, -3.0, 2.0 - r as f32, -40.0]))
        .collect();
    assert!(rows.iter().all(|row| row.len() == 2 * 10));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama.kld");
    std::fs::write(&path, llama_cpp_file(8, 5, &tokens, &rows)).unwrap();
    let mut reader = BaselineReader::open(&path).unwrap();
    let h = reader.header.clone();
    assert_eq!(
        (h.context, h.vocab, h.chunks, h.rows_per_chunk()),
        (8, 5, 2, 3)
    );
    assert_eq!(h.tokens, tokens);
    for chunk in 0..2 {
        reader.next_chunk().unwrap();
        for r in 0..3 {
            let bytes = &rows[chunk * 3 + r];
            let f = |i: usize| f32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
            let (scale, min) = (f(0), f(4));
            let row = reader.row(r).unwrap();
            assert_eq!(row.scale().to_bits(), scale.to_bits());
            assert_eq!(row.min_log_prob().to_bits(), min.to_bits());
            for i in 0..5 {
                let q = u16::from_le_bytes([bytes[8 + 2 * i], bytes[9 + 2 * i]]);
                assert_eq!(row.quantized(i), q);
                assert_eq!(
                    row.log_prob(i).to_bits(),
                    (scale * q as f32 + min).to_bits()
                );
            }
            // The 16-nat floor: -40 is stored as the row's minimum.
            assert_eq!(row.quantized(4), 0);
        }
    }
    // The library writes the same rows.
    for (r, row) in rows.iter().enumerate() {
        let mut ours = Vec::new();
        quantize_row(&[r as f32, 0.5, -3.0, 2.0 - r as f32, -40.0], &mut ours);
        assert_eq!(&ours, row);
    }
}

#[test]
fn compares_with_a_llama_cpp_file_built_here() {
    let model = load(BASE);
    let text = text();
    let tokens = perplexity::tokenize(&model.tokenizer, &text).unwrap();
    let c = Chunking::new(tokens.len(), CONTEXT, Some(4)).unwrap();
    let rows: Vec<Vec<u8>> = (0..c.chunks)
        .flat_map(|i| scored_logits(&model, &tokens, &c, i))
        .map(|logits| llama_cpp_row(&logits))
        .collect();
    let bytes = llama_cpp_file(CONTEXT as i32, 1024, c.covered(&tokens), &rows);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama.kld");
    std::fs::write(&path, bytes).unwrap();
    // The model against its own log-probabilities: nothing lost but the u16 steps and
    // the 16-nat floor, which leave the stored probabilities summing to about 1.
    let report = evaluate(&model, &text, None, Baseline::Compare(&path));
    assert_eq!(report.chunking.chunks, 4, "the baseline's chunk count");
    let k = report.comparison.unwrap();
    let kld = (k.kld.value, k.kld_max);
    assert!(
        kld.0.abs() < 1e-5 && kld.1.abs() < 1e-4,
        "KLD mean, max {kld:?}"
    );
    assert!(k.top1_agree.value >= 0.99, "top-1 {:?}", k.top1_agree);
    assert!(k.delta_p_rms.value < 1e-4, "Δp RMS {:?}", k.delta_p_rms);
}

#[test]
fn json_summary_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_baseline(dir.path(), 2);
    let out = run(VARIANT, 2, &["--kl-base", base.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("mean KLD:"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let json: Value = serde_json::from_str(last).unwrap();
    for key in [
        "ppl",
        "tokens_scored",
        "bits_per_byte",
        "ppl_base",
        "kld_mean",
        "delta_p_rms",
    ] {
        assert!(json[key].is_number(), "{key} in {last}");
    }
    assert_eq!(json["tokens_scored"], 2 * (CONTEXT - 1 - CONTEXT / 2));
    let agree = json["top1_agree"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agree), "top1_agree {agree}");

    let out = run(BASE, 2, &["--json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        json["ppl"].is_number() && json.get("kld_mean").is_none(),
        "{json}"
    );
}

/// Runs `perplexity` expecting a failure whose message has `expected` in it.
fn fails_with(out: Output, expected: &str) {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expected), "{expected:?} not in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn refuses_a_baseline_that_does_not_belong() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_baseline(dir.path(), 2);
    let kl_base = |path: &Path| vec!["--kl-base".to_string(), path.display().to_string()];
    let args = kl_base(&base);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Another context, another chunk count.
    let model = fixture(BASE).display().to_string();
    let file = text_path().display().to_string();
    let common = ["perplexity", "--model", &model, "--file", &file];
    fails_with(
        lfm_edge(&[&common[..], &["--context", "32"], &args].concat()),
        "made with a context of 64 tokens, this run uses 32",
    );
    fails_with(run(BASE, 3, &args), "holds 2 chunks, this run evaluates 3");

    // Other tokens: the text with one word changed in its first chunk.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, text().replacen("Duke", "Dike", 1)).unwrap();
    let other = other.display().to_string();
    let other_text = [
        "perplexity",
        "--model",
        &model,
        "--file",
        &other,
        "--context",
        "64",
    ];
    fails_with(
        lfm_edge(&[&other_text[..], &args].concat()),
        "made from other tokens: token",
    );

    // Another vocabulary, in a file otherwise whole.
    let model_tokens = {
        let reader = BaselineReader::open(&base).unwrap();
        reader.header.tokens
    };
    let vocab_file = dir.path().join("vocab.kld");
    let header = BaselineHeader {
        context: CONTEXT,
        vocab: 1000,
        chunks: 2,
        tokens: model_tokens,
    };
    let mut writer = BaselineWriter::create(&vocab_file, &header).unwrap();
    for _ in 0..2 * header.rows_per_chunk() {
        writer.write_row(&[0.0; 1000]).unwrap();
    }
    writer.finish().unwrap();
    fails_with(
        run(
            BASE,
            2,
            &kl_base(&vocab_file)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
        "made with a vocabulary of 1000 tokens, this model has 1024",
    );

    // Truncated, too long, foreign, too short for a header.
    let bytes = std::fs::read(&base).unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", bytes[..bytes.len() - 7].to_vec(), "truncated:"),
        ("long", [&bytes[..], &[0]].concat(), "too long:"),
        ("foreign", vec![b'x'; 4096], "no _logits_ magic"),
        ("tiny", b"_logi".to_vec(), "shorter than a baseline header"),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let args = kl_base(&path);
        fails_with(
            run(
                BASE,
                2,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
            expected,
        );
    }
}

#[test]
fn refuses_a_short_text_and_a_context_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, &text()[..300]).unwrap();
    let short = short.display().to_string();
    let model = fixture(BASE).display().to_string();
    // The default context of 512 tokens.
    fails_with(
        lfm_edge(&["perplexity", "--model", &model, "--file", &short]),
        "too short for 2 chunks of 512",
    );
    let file = text_path().display().to_string();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/lfm2-demo");
    let demo = demo.display().to_string();
    fails_with(
        lfm_edge(&[
            "perplexity",
            "--model",
            &demo,
            "--file",
            &file,
            "--context",
            "1024",
        ]),
        "above the model's max_position_embeddings of 512",
    );
    fails_with(
        lfm_edge(&[
            "perplexity",
            "--model",
            &model,
            "--file",
            &file,
            "--context",
            "1024",
            "--vram-budget",
            "3MB",
        ]),
        "a context of 1024 tokens does not fit: the VRAM budget holds",
    );
    fails_with(
        lfm_edge(&[
            "perplexity",
            "--model",
            &model,
            "--file",
            &file,
            "--context",
            "2",
        ]),
        "perplexity needs at least 4",
    );
    fails_with(
        lfm_edge(&[
            "perplexity",
            "--model",
            &model,
            "--file",
            &file,
            "--batch",
            "0",
        ]),
        "a batch of 0 tokens",
    );
}
