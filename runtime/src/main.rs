//! The `lfm-edge` command line: its arguments, and which command of `cli/` runs. Results
//! go to stdout; progress, the adapter choice and errors go to stderr; any failure exits
//! with status 1.

#[macro_use]
mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::generate::Prompt;
use cli::model::ModelArgs;
use cli::sampling::{ConstraintArgs, SamplingArgs, ToolArgs};
use lfm_edge::Result;

#[derive(Parser)]
#[command(
    name = "lfm-edge",
    version,
    about = "Run LFM2 models on any GPU through wgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the logits of every position as a .npy array (<f4, [n_tokens, vocab_size]).
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated token ids.
        #[arg(long)]
        tokens: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "prefill")]
        mode: cli::logits::Mode,
    },
    /// Write the named intermediates of one forward pass (embedding, each layer's
    /// residual stream after its operator and after its feed-forward, final norm) as
    /// <name>.npy arrays (<f4, [n_tokens, hidden]) named after their HF modules; with
    /// --reference, print how far each is from the array of the same name there.
    Trace {
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated token ids, fed as one batch.
        #[arg(long)]
        tokens: String,
        /// Folder for the arrays (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Folder of reference arrays, e.g. HF transformers' (fixtures/*/trace).
        #[arg(long)]
        reference: Option<PathBuf>,
    },
    /// Stream a continuation of a prompt.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, conflicts_with = "tokens", required_unless_present = "tokens")]
        prompt: Option<String>,
        /// Comma-separated token ids instead of a text prompt.
        #[arg(long)]
        tokens: Option<String>,
        #[arg(long)]
        max_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Wrap the prompt in the model's chat template as a user turn.
        #[arg(long, requires = "prompt", conflicts_with = "tokens")]
        chat: bool,
        /// A system prompt for --chat.
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// Keep generating past end-of-sequence tokens.
        #[arg(long)]
        ignore_eos: bool,
        /// Also print the generated ids, comma-separated, as the last line.
        #[arg(long)]
        print_ids: bool,
        #[command(flatten)]
        constraint: ConstraintArgs,
        /// Tools the model may call, a JSON array in OpenAI's shape
        /// ([{"type": "function", "function": {"name", "description", "parameters"}}]).
        #[arg(
            long,
            value_name = "FILE",
            requires = "chat",
            conflicts_with = "constraint"
        )]
        tools: Option<PathBuf>,
        /// auto: the model chooses (a call it opens is constrained); required: it calls
        /// tools; none: it is not constrained; NAME: it calls that tool.
        #[arg(
            long,
            value_name = "auto|required|none|NAME",
            default_value = "auto",
            requires = "tools"
        )]
        tool_choice: String,
        /// Print the parsed tool calls as one JSON array on the last line.
        #[arg(long, requires = "tools", conflicts_with = "print_ids")]
        print_tool_calls: bool,
    },
    /// Chat in the terminal through the model's chat template.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens per answer.
        #[arg(long, default_value_t = 1024)]
        max_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Every answer a JSON value valid against the JSON schema in FILE.
        #[arg(long, value_name = "FILE")]
        json_schema: Option<PathBuf>,
    },
    /// Print the ids tokenizer.json gives for a text, comma-separated.
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        text: String,
    },
    /// Describe a model and the GPU adapter it runs on.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Perplexity and bits per byte of a text, as llama-perplexity chunks it (--context
    /// tokens a chunk, default 512; the second half of each scored); with --kl-base, the
    /// KL divergence, top-1 agreement and Δp against a baseline's saved log-probabilities.
    Perplexity {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        options: cli::perplexity::Options,
    },
    /// Measure prefill and decode speed as llama-bench does, and the adapter's bandwidth.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Tokens of the prompt, fed from an empty cache.
        #[arg(long, default_value_t = 512)]
        prompt_tokens: usize,
        /// Tokens generated one at a time from an empty cache.
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        /// Measured runs of each, after one warm-up.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Tokens already in the cache when each run starts, as llama-bench's -d: the
        /// prompt and the generated tokens then see a long context.
        #[arg(long, default_value_t = 0)]
        depth: usize,
        /// Also time each dispatch of --gen-tokens decoded tokens: time per kernel
        /// family per token, and the fixed cost of a token outside its kernels.
        #[arg(long)]
        profile: bool,
    },
    /// Serve the model over HTTP with OpenAI's API (/v1/chat/completions,
    /// /v1/completions, /v1/models, /health) until SIGINT or SIGTERM: --parallel
    /// sessions share one KV cache, and a request continues the session that already
    /// holds the most of its prompt.
    #[cfg(feature = "server")]
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        options: cli::serve::Options,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,lfm_edge=info"),
    )
    .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing left to do or say.
        Err(e) if cli::output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Logits {
            model,
            tokens,
            out,
            mode,
        } => cli::logits::run(&model, &tokens, &out, mode),
        Command::Trace {
            model,
            tokens,
            out,
            reference,
        } => cli::trace::run(&model, &tokens, &out, reference.as_deref()),
        Command::Generate {
            model,
            prompt,
            tokens,
            max_tokens,
            sampling,
            chat,
            system,
            ignore_eos,
            print_ids,
            constraint,
            tools,
            tool_choice,
            print_tool_calls,
        } => {
            let mut options = sampling.options(max_tokens, ignore_eos)?;
            options.constraint = constraint.constraint()?;
            let Ok(choice) = tool_choice.parse();
            let tools = match tools {
                Some(path) => Some(ToolArgs {
                    tools: cli::sampling::tools(&path)?,
                    choice,
                    print_calls: print_tool_calls,
                }),
                None => None,
            };
            let prompt = match (prompt, tokens) {
                (Some(user), _) if chat => Prompt::Chat {
                    user,
                    system,
                    tools,
                },
                (Some(text), _) => Prompt::Text(text),
                (None, Some(ids)) => Prompt::Ids(ids),
                (None, None) => {
                    return Err(lfm_edge::Error::Input("give --prompt or --tokens".into()))
                }
            };
            cli::generate::run(&model, prompt, &options, print_ids)
        }
        Command::Chat {
            model,
            system,
            max_tokens,
            sampling,
            json_schema,
        } => {
            let mut options = sampling.options(max_tokens, false)?;
            if let Some(path) = json_schema {
                options.constraint = Some(cli::sampling::json_schema(&path)?);
            }
            cli::chat::run(&model, system, &options)
        }
        Command::Tokenize { model, text } => {
            let tokenizer = lfm_edge::Tokenizer::load(&model.path()?)?;
            outln!("{}", cli::ids::join(&tokenizer.encode(&text)?))?;
            Ok(())
        }
        Command::Info { model } => cli::info::run(&model),
        Command::Perplexity { model, options } => cli::perplexity::run(&model, &options),
        Command::Bench {
            model,
            prompt_tokens,
            gen_tokens,
            repeat,
            depth,
            profile,
        } => {
            let options = lfm_edge::bench::BenchOptions {
                prompt_tokens,
                gen_tokens,
                repeat,
                depth,
                kv_dtype: model.memory.kv_cache,
            };
            cli::bench::run(&model.load()?, &options, profile)
        }
        #[cfg(feature = "server")]
        Command::Serve { model, options } => cli::serve::run(&model, &options),
    }
}
