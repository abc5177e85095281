//! An app embedding lfm-edge: load a model once within a VRAM budget, open a session,
//! stream a reply, then a second turn that feeds only its new tokens.
//!
//! cargo run --release --example stream -- fixtures/lfm2-tiny-conv-first "Return the array"

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use lfm_edge::budget::parse_size;
use lfm_edge::{
    generate, ChatTemplate, Flow, GenerateOptions, Gpu, GpuOptions, Message, Model, SamplerConfig,
    Session, SessionOptions, VramBudget,
};

fn main() -> lfm_edge::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "fixtures/lfm2-tiny-conv-first".into()),
    );
    let prompt = args.next().unwrap_or_else(|| "Return the array".into());

    // One GPU device and one copy of the weights, shared by every session, within
    // 1 GiB of VRAM for everything.
    let gpu = Gpu::new(&GpuOptions::default())?;
    let budget = VramBudget::new(parse_size("1GiB")?);
    let model = Arc::new(Model::load_within(&path, gpu, &budget)?);

    // The session's cache gets what the weights leave, up to 4096 tokens.
    let mut session = Session::new(model.clone(), &SessionOptions::default())?;

    let options = GenerateOptions {
        max_tokens: 48,
        sampler: SamplerConfig {
            temperature: 0.7,
            top_p: 0.95,
            seed: 42,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    let stream = |chunk: lfm_edge::Chunk| {
        print!("{}", chunk.text);
        std::io::stdout().flush().ok();
        Flow::Continue
    };

    // A chat when the model has a template, plain text otherwise.
    let Ok(template) = ChatTemplate::for_model(&model) else {
        let logits = session.feed(&model.tokenizer.encode(&prompt)?)?;
        print!("{prompt}");
        generate(&mut session, logits, &options, stream)?;
        println!();
        return Ok(());
    };
    let mut messages = vec![Message::new("user", prompt)];
    for turn in 0..2 {
        let text = template.render(&messages, true)?;
        // What the cache already holds is kept: turn 2 feeds only its new part.
        let logits = session.prefill_text(&text)?;
        println!(
            "[turn {}, {} tokens of context]",
            turn + 1,
            session.position()
        );
        let reply = generate(&mut session, logits, &options, stream)?;
        println!();
        messages.push(Message::new("assistant", reply.text));
        messages.push(Message::new("user", "And then?"));
    }
    Ok(())
}
