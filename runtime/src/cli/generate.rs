//! `lfm-edge generate`: a prompt (text, ids, or a chat turn) and its continuation,
//! streamed to stdout; under a constraint (`--json-schema`, `--regex`, `--grammar`), or
//! with tools the model may call (`--tools`), whose parsed calls `--print-tool-calls`
//! prints as one JSON array on the last line.

use lfm_edge::tools::{calls_to_json, ToolUse};
use lfm_edge::{ChatTemplate, Chunk, Error, Flow, GenerateOptions, Message, Result, StopReason};

use super::model::ModelArgs;
use super::sampling::ToolArgs;
use super::{ids, output};

/// What to continue.
pub enum Prompt {
    Text(String),
    /// A user turn in the model's chat template, after an optional system prompt, with
    /// the tools the model may call.
    Chat {
        user: String,
        system: Option<String>,
        tools: Option<ToolArgs>,
    },
    Ids(String),
}

pub fn run(
    args: &ModelArgs,
    prompt: Prompt,
    options: &GenerateOptions,
    print_ids: bool,
) -> Result<()> {
    if let Prompt::Text(text) | Prompt::Chat { user: text, .. } = &prompt {
        if text.is_empty() {
            return Err(Error::Input("--prompt is empty".into()));
        }
    }
    let model = args.load()?;
    let mut options = options.clone();
    let mut tools = None;
    let prompt_ids = match prompt {
        Prompt::Chat {
            user,
            system,
            tools: with_tools,
        } => {
            let turns: Vec<_> = system
                .map(|s| Message::new("system", s))
                .into_iter()
                .chain([Message::new("user", user)])
                .collect();
            if let Some(t) = with_tools {
                let tool_use = ToolUse::new(t.tools, t.choice, &model.tokenizer)?;
                tool_use.constrain(&mut options)?;
                tools = Some((tool_use, t.print_calls));
            }
            let listed = tools.as_ref().map(|(t, _)| t.tools());
            let rendered =
                ChatTemplate::for_model(&model)?.render_with_tools(&turns, listed, true)?;
            model.tokenizer.encode_with(&rendered, false)?
        }
        Prompt::Text(text) => model.tokenizer.encode(&text)?,
        Prompt::Ids(text) => ids::parse(&text)?,
    };
    // A bad schema or grammar is an error before the prompt is fed.
    if let Some(constraint) = &options.constraint {
        constraint.check(&model.tokenizer)?;
    }
    let mut session = args.session(&model, false)?;
    let logits = session.feed(&prompt_ids)?;
    // A failed write (a closed pipe) stops the generation before the next token.
    let mut written = Ok(());
    let generated = lfm_edge::generate(&mut session, logits, &options, |chunk: Chunk| {
        written = output::write(chunk.text);
        match written {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    })?;
    written?;
    outln!()?;
    if print_ids {
        outln!("{}", ids::join(&generated.tokens))?;
    }
    if let Some((tool_use, print_calls)) = tools {
        let answer = tool_use.answer(&generated.tokens, &model.tokenizer)?;
        if let Some(why) = answer.unparsed {
            eprintln!("no tool calls read from the answer: {why}");
        }
        if print_calls {
            outln!("{}", calls_to_json(&answer.calls))?;
        }
    }
    match generated.stop {
        StopReason::ContextFull => eprintln!(
            "stopped after {} tokens: the context of {} tokens is full (--context-overflow shift keeps going)",
            generated.tokens.len(),
            session.max_context()
        ),
        StopReason::MaxTokens if generated.grammar_complete == Some(false) => eprintln!(
            "stopped at --max-tokens {} (length) before the output was complete",
            options.max_tokens
        ),
        _ => {}
    }
    Ok(())
}
