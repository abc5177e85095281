//! `lfm-edge chat`: an interactive conversation in the terminal through the model's
//! chat template. Each turn renders the whole conversation and `Session::prefill`
//! feeds only what the cache does not hold yet. Ctrl-C stops the answer being written;
//! at the prompt it quits, as do Ctrl-D and /exit. `/tools FILE` lists tools the model
//! may call from then on (a call it opens is constrained to the tools' schemas, and the
//! calls it makes are printed to stderr as JSON); `/tool TEXT` answers a call with its
//! result, as a `tool` message.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lfm_edge::tools::{calls_to_json, ToolUse};
use lfm_edge::{
    generate, ChatTemplate, Error, Flow, GenerateOptions, Message, Result, StopReason, ToolChoice,
};

use super::model::ModelArgs;

/// Set by Ctrl-C while an answer is being written; cleared before each answer.
struct Interrupt {
    answering: AtomicBool,
    stop: AtomicBool,
}

fn install_interrupt() -> Result<Arc<Interrupt>> {
    let interrupt = Arc::new(Interrupt {
        answering: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let handler = interrupt.clone();
    ctrlc::set_handler(move || {
        if handler.answering.load(Ordering::Acquire) {
            handler.stop.store(true, Ordering::Release);
        } else {
            // The prompt's line ends; nothing can be done if stdout is gone.
            let _ = super::output::write("\n");
            std::process::exit(130);
        }
    })
    .map_err(|e| Error::Input(format!("cannot catch Ctrl-C: {e}")))?;
    Ok(interrupt)
}

pub fn run(
    args: &ModelArgs,
    system: Option<String>,
    generate_options: &GenerateOptions,
) -> Result<()> {
    let model = args.load()?;
    if let Some(constraint) = &generate_options.constraint {
        constraint.check(&model.tokenizer)?;
    }
    let template = ChatTemplate::for_model(&model)?;
    let mut session = args.session(&model, false)?;
    let base: Vec<Message> = system
        .into_iter()
        .map(|s| Message::new("system", s))
        .collect();
    if !base.is_empty() {
        // A context shift keeps the system prompt.
        let text = template.render(&base, false)?;
        session.set_shift_keep(model.tokenizer.encode_with(&text, false)?.len());
    }
    let mut messages = base.clone();
    // `/tools` lists them, the model choosing when to call one.
    let mut tools: Option<ToolUse> = None;
    let interrupt = install_interrupt()?;
    eprintln!(
        "chatting with {} ({} tokens of context); Ctrl-C stops an answer, Ctrl-D or /exit quits, /reset starts over, /tools FILE lists tools, /tool TEXT answers a call",
        model.path.display(),
        session.max_context()
    );
    let mut stdin = std::io::stdin().lock();
    loop {
        super::output::write("> ")?;
        let mut bytes = Vec::new();
        let read = stdin
            .read_until(b'\n', &mut bytes)
            .map_err(|e| Error::io("standard input", e))?;
        if read == 0 {
            return outln!();
        }
        let Ok(line) = String::from_utf8(bytes) else {
            eprintln!("(that line is not UTF-8 text; type it again)");
            continue;
        };
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages = base.clone();
                continue;
            }
            _ => {}
        }
        if let Some(path) = line.strip_prefix("/tools ") {
            match super::sampling::tools(std::path::Path::new(path.trim()))
                .and_then(|t| ToolUse::new(t, ToolChoice::Auto, &model.tokenizer))
            {
                Ok(listed) => {
                    eprintln!("({} tools from now on)", listed.tools().0.len());
                    tools = Some(listed);
                }
                Err(e) => eprintln!("{e}"),
            }
            continue;
        }
        match line.strip_prefix("/tool ") {
            Some(result) => messages.push(Message::new("tool", result.trim())),
            None => messages.push(Message::new("user", line)),
        }
        let text =
            template.render_with_tools(&messages, tools.as_ref().map(ToolUse::tools), true)?;
        // A schema for every answer stays; tool calls are constrained otherwise.
        let mut options = generate_options.clone();
        if let Some(tools) = &tools {
            tools.constrain(&mut options)?;
        }
        let started = Instant::now();
        let before = session.tokens().to_vec();
        let logits = match session.prefill_text(&text) {
            Ok(logits) => logits,
            Err(e @ Error::ContextFull { .. }) => {
                eprintln!("{e}; /reset starts over (or run with --context-overflow shift)");
                messages.pop();
                continue;
            }
            Err(e) => return Err(e),
        };
        let prompt_tokens = session.position();
        let reused = (before.iter().zip(session.tokens()))
            .take_while(|(a, b)| a == b)
            .count();
        interrupt.stop.store(false, Ordering::Release);
        interrupt.answering.store(true, Ordering::Release);
        let mut written = Ok(());
        let answer = generate(&mut session, logits, &options, |chunk| {
            written = super::output::write(chunk.text);
            if written.is_err() || interrupt.stop.load(Ordering::Acquire) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        interrupt.answering.store(false, Ordering::Release);
        let answer = answer?;
        written?;
        outln!()?;
        if answer.stop == StopReason::ContextFull {
            eprintln!("(context full: /reset starts over, or run with --context-overflow shift)");
        }
        log::info!(
            "{} prompt tokens ({} reused from the cache), {} generated in {:.2}s",
            prompt_tokens,
            reused,
            answer.tokens.len(),
            started.elapsed().as_secs_f32()
        );
        let mut content = answer.text;
        if let Some(tools) = tools.as_ref().filter(|t| !t.tools().is_empty()) {
            // With its tool-call markers, which are special tokens the stream leaves out.
            let read = tools.answer(&answer.tokens, &model.tokenizer)?;
            if !read.calls.is_empty() {
                eprintln!("(tool calls: {})", calls_to_json(&read.calls));
            }
            if let Some(why) = read.unparsed {
                eprintln!("({why})");
            }
            content = read.text;
        }
        // An interrupted answer joins the conversation as far as it got.
        messages.push(Message::new("assistant", content));
    }
}
