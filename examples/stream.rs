//! An app embedding lfm-edge: open a model once within a VRAM budget, open a session,
//! stream a reply, then a second turn that feeds only its new tokens.
//!
//! cargo run --release --example stream -- fixtures/lfm2-tiny-conv-first "Return the array"
//! MODEL is a model folder, a .gguf file or hf:OWNER/REPO[:FILE].

use std::io::Write;

use lfm_edge::units::parse_size;
use lfm_edge::{
    generate, ChatTemplate, Flow, GenerateOptions, LoadOptions, Message, Model, SamplerConfig,
    Session, SessionOptions,
};

fn main() -> lfm_edge::Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args
        .next()
        .unwrap_or_else(|| "fixtures/lfm2-tiny-conv-first".into());
    let prompt = args.next().unwrap_or_else(|| "Return the array".into());

    // One GPU device and one copy of the weights, shared by every session, within
    // 1 GiB of VRAM for everything.
    let options = LoadOptions {
        vram_budget: Some(parse_size("1GiB")?),
        ..LoadOptions::default()
    };
    let model = Model::open(&spec, &options)?;

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
