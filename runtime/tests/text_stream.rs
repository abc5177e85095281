//! Streaming text: what `TextStream` yields piece by piece, and what it lets go at the
//! end, is the full decode of the same ids, for every kind of tokenizer the runtime loads, on random ids (special
//! tokens, and byte tokens that end mid-character, included).

mod common;

use std::path::PathBuf;

use common::{fixture, Rng};
use lfm_edge::{TextStream, Tokenizer};

fn tokenizers() -> Vec<(String, Tokenizer)> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        fixture("lfm2-tiny-conv-first"),
        repo.join("models/lfm2-demo"),
        repo.join("models/lfm2-demo-Q8_0.gguf"),
    ]
    .into_iter()
    .map(|path| {
        let tokenizer = Tokenizer::load(&path).unwrap();
        (path.display().to_string(), tokenizer)
    })
    .collect()
}

#[test]
fn streamed_pieces_join_into_the_full_decode() {
    for (name, tokenizer) in tokenizers() {
        let vocab = tokenizer.vocab_size() as u64;
        let mut rng = Rng(7);
        for _ in 0..20 {
            let ids: Vec<u32> = (0..300).map(|_| (rng.next_u64() % vocab) as u32).collect();
            let mut stream = TextStream::new();
            let mut streamed = String::new();
            for &id in &ids {
                let piece = stream.push(&tokenizer, id).unwrap();
                assert!(!piece.ends_with('\u{FFFD}'), "{name}: {piece:?}");
                streamed.push_str(&piece);
            }
            let full = tokenizer.decode(&ids, true).unwrap();
            // What is still held back comes out at the end: then nothing is lost.
            streamed.push_str(&stream.finish(&tokenizer).unwrap());
            assert_eq!(streamed, full, "{name}");
            assert_eq!(stream.finish(&tokenizer).unwrap(), "", "{name}: twice");
        }
    }
}
