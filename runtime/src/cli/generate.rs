//! `lfm-edge generate`: a prompt (text, ids, or a chat turn) and its continuation,
//! streamed to stdout.

use lfm_edge::{ChatTemplate, Chunk, Error, Flow, GenerateOptions, Message, Result, StopReason};

use super::model::ModelArgs;
use super::{ids, output};

/// What to continue.
pub enum Prompt {
    Text(String),
    /// A user turn in the model's chat template, after an optional system prompt.
    Chat {
        user: String,
        system: Option<String>,
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
    let prompt_ids = match prompt {
        Prompt::Chat { user, system } => {
            let turns: Vec<_> = system
                .map(|s| Message::new("system", s))
                .into_iter()
                .chain([Message::new("user", user)])
                .collect();
            let rendered = ChatTemplate::for_model(&model)?.render(&turns, true)?;
            model.tokenizer.encode_with(&rendered, false)?
        }
        Prompt::Text(text) => model.tokenizer.encode(&text)?,
        Prompt::Ids(text) => ids::parse(&text)?,
    };
    let mut session = args.session(&model, false)?;
    let logits = session.feed(&prompt_ids)?;
    // A failed write (a closed pipe) stops the generation before the next token.
    let mut written = Ok(());
    let generated = lfm_edge::generate(&mut session, logits, options, |chunk: Chunk| {
        written = output::write(chunk.text);
        match written {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    })?;
    written?;
    if print_ids {
        outln!("\n{}", ids::join(&generated.tokens))?;
    } else {
        outln!()?;
    }
    if generated.stop == StopReason::ContextFull {
        eprintln!(
            "stopped after {} tokens: the context of {} tokens is full (--context-overflow shift keeps going)",
            generated.tokens.len(),
            session.max_context()
        );
    }
    Ok(())
}
