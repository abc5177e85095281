//! An app embedding lfm-edge: load a model once, open a session, stream a reply.
//!
//! cargo run --release --example stream -- fixtures/lfm2-tiny-conv-first "Return the array"

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use lfm_edge::{Gpu, GpuOptions, Model, Sampler, Session, SessionOptions, TextStream};

fn main() -> lfm_edge::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "fixtures/lfm2-tiny-conv-first".into()),
    );
    let prompt = args.next().unwrap_or_else(|| "Return the array".into());

    // One GPU device and one copy of the weights, shared by every session.
    let gpu = Gpu::new(&GpuOptions::default())?;
    let model = Arc::new(Model::load(&dir, gpu)?);
    let mut session = Session::new(model.clone(), &SessionOptions::default())?;

    let mut sampler = Sampler::new(0.7, 42);
    let mut text = TextStream::new(&model.tokenizer);
    let mut logits = session.feed(&model.tokenizer.encode(&prompt)?)?;
    print!("{prompt}");
    for _ in 0..48 {
        let token = sampler.sample(&logits);
        if model.config.eos_token_ids.contains(&token) {
            break;
        }
        print!("{}", text.push(token)?);
        std::io::stdout().flush().ok();
        logits = session.feed(&[token])?;
    }
    println!();
    Ok(())
}
