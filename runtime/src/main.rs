//! The `lfm-edge` command line. Results go to stdout; progress, the adapter choice and
//! errors go to stderr; any failure exits with status 1.

mod cli;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cli::memory::MemoryArgs;
use cli::sampling::SamplingArgs;
use lfm_edge::budget::format_size;
use lfm_edge::{
    generate, npy, Backend, ChatTemplate, Chunk, Error, Flow, Gpu, GpuOptions, Message, Model,
    Result, Session, StopReason, VramBudget,
};

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

#[derive(Args)]
struct ModelArgs {
    /// A model directory (config.json, model.safetensors or shards, tokenizer.json), a
    /// .gguf file, or hf:OWNER/REPO[:FILE] to fetch from the Hugging Face hub into its
    /// cache. [default: the bundled demo model, models/lfm2-demo-Q8_0.gguf]
    #[arg(long)]
    model: Option<String>,
    /// GPU backend: auto, vulkan, metal, dx12, gl (auto also honours WGPU_BACKEND).
    #[arg(long, default_value = "auto")]
    backend: Backend,
    #[command(flatten)]
    memory: MemoryArgs,
}

impl ModelArgs {
    /// The model on disk: fetched first for hf: specs, the bundled one by default.
    fn path(&self) -> Result<PathBuf> {
        lfm_edge::hub::resolve(self.model.as_deref())
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// The whole prompt in one pass.
    Prefill,
    /// One token at a time through the cache.
    Decode,
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
        mode: Mode,
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
        #[arg(long, requires = "prompt")]
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
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,lfm_edge=info"),
    )
    .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_ids(text: &str) -> Result<Vec<u32>> {
    let ids = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::Input(format!("--tokens: {s:?} is not a token id")))
        })
        .collect::<Result<Vec<u32>>>()?;
    if ids.is_empty() {
        return Err(Error::Input("--tokens is empty".into()));
    }
    Ok(ids)
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn load(args: &ModelArgs) -> Result<Arc<Model>> {
    let dir = args.path()?;
    // A missing or bad model directory fails before paying for GPU start-up.
    if !dir.is_file() {
        lfm_edge::ModelConfig::from_file(&dir.join("config.json"))?;
    }
    args.memory.check_before_load(&dir)?;
    let gpu = Gpu::new(&GpuOptions {
        backend: args.backend,
        max_binding_size: args.memory.max_binding,
        max_buffer_size: args.memory.max_buffer,
        ..GpuOptions::default()
    })?;
    Ok(Arc::new(match args.memory.vram_budget {
        Some(budget) => Model::load_within(&dir, gpu, &VramBudget::new(budget))?,
        None => Model::load(&dir, gpu)?,
    }))
}

fn session(model: &Arc<Model>, args: &ModelArgs, all_logits: bool) -> Result<Session> {
    let options = args.memory.session_options(all_logits);
    let session = Session::new(model.clone(), &options)?;
    if let Some(budget) = model.vram_budget() {
        log::info!(
            "VRAM budget {}: {} in use, context {} tokens",
            format_size(budget.total()),
            format_size(budget.used()),
            session.max_context()
        );
    }
    Ok(session)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Logits {
            model,
            tokens,
            out,
            mode,
        } => {
            let ids = parse_ids(&tokens)?;
            let m = load(&model)?;
            let vocab = m.config.vocab_size;
            let logits = match mode {
                Mode::Prefill => session(&m, &model, true)?.feed(&ids)?,
                Mode::Decode => {
                    let mut s = session(&m, &model, false)?;
                    let mut all = Vec::with_capacity(ids.len() * vocab);
                    for &id in &ids {
                        all.extend(s.step(id)?);
                    }
                    all
                }
            };
            npy::write_f32(&out, ids.len(), vocab, &logits)
        }
        Command::Trace {
            model,
            tokens,
            out,
            reference,
        } => {
            let ids = parse_ids(&tokens)?;
            let m = load(&model)?;
            let mut s = session(&m, &model, false)?;
            cli::trace::run(&mut s, &ids, &out, reference.as_deref())
        }
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
        } => {
            let options = sampling.options(max_tokens, ignore_eos)?;
            if prompt.as_deref() == Some("") {
                return Err(Error::Input("--prompt is empty".into()));
            }
            let m = load(&model)?;
            let prompt_ids = match (prompt, tokens) {
                (Some(text), _) if chat => {
                    let system = system.map(|s| Message::new("system", s));
                    let turns: Vec<_> = system
                        .into_iter()
                        .chain([Message::new("user", text)])
                        .collect();
                    let rendered = ChatTemplate::for_model(&m)?.render(&turns, true)?;
                    m.tokenizer.encode_with(&rendered, false)?
                }
                (Some(text), _) => m.tokenizer.encode(&text)?,
                (None, Some(ids)) => parse_ids(&ids)?,
                (None, None) => return Err(Error::Input("give --prompt or --tokens".into())),
            };
            let mut s = session(&m, &model, false)?;
            let logits = s.feed(&prompt_ids)?;
            let mut stdout = std::io::stdout().lock();
            let generated = generate(&mut s, logits, &options, |chunk: Chunk| {
                let _ = stdout
                    .write_all(chunk.text.as_bytes())
                    .and_then(|_| stdout.flush());
                Flow::Continue
            })?;
            if print_ids {
                println!("\n{}", join_ids(&generated.tokens));
            } else {
                println!();
            }
            if generated.stop == StopReason::ContextFull {
                eprintln!(
                    "stopped after {} tokens: the context of {} tokens is full (--context-overflow shift keeps going)",
                    generated.tokens.len(),
                    s.max_context()
                );
            }
            Ok(())
        }
        Command::Chat {
            model,
            system,
            max_tokens,
            sampling,
        } => {
            let options = sampling.options(max_tokens, false)?;
            let m = load(&model)?;
            let session_options = model.memory.session_options(false);
            cli::chat::run(m, &session_options, system, &options)
        }
        Command::Tokenize { model, text } => {
            let tokenizer = lfm_edge::Tokenizer::load(&model.path()?)?;
            println!("{}", join_ids(&tokenizer.encode(&text)?));
            Ok(())
        }
        Command::Info { model } => {
            let m = load(&model)?;
            info(&m.path, &m, &model.memory)
        }
        Command::Bench {
            model,
            prompt_tokens,
            gen_tokens,
            repeat,
        } => {
            let options = lfm_edge::bench::BenchOptions {
                prompt_tokens,
                gen_tokens,
                repeat,
                kv_dtype: model.memory.kv_cache,
            };
            cli::bench::run(&load(&model)?, &options)
        }
    }
}

fn info(dir: &Path, model: &Model, memory: &MemoryArgs) -> Result<()> {
    let c = &model.config;
    let gpu = &model.gpu;
    println!("model: {}", dir.display());
    println!("architecture: {}", c.architecture());
    println!(
        "layers: {} ({}; c = conv, A = attention)",
        c.n_layers(),
        c.layer_pattern()
    );
    println!(
        "hidden: {}, ff: {}, heads: {} / kv {}, head_dim: {}, vocab: {}",
        c.hidden_size, c.ff_size, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size
    );
    println!("parameters: {}", model.parameter_count());
    if let Some(moe) = &c.moe {
        println!(
            "experts: {} per MoE layer, top {} per token, {} dense layers first",
            moe.n_experts, moe.top_k, moe.n_dense_layers
        );
        println!(
            "active parameters per token: {}",
            model.active_parameter_count()
        );
    }
    println!("weight bytes: {}", model.weight_bytes());
    for (dtype, tensors, bytes) in model.bytes_by_dtype() {
        println!("  {dtype}: {tensors} tensors, {bytes} bytes");
    }
    for line in memory.describe(model)? {
        println!("{line}");
    }
    println!(
        "adapter: {} ({:?}, {:?})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type
    );
    println!(
        "limits: max_buffer_size {}, max_storage_buffer_binding_size {}, max_compute_workgroup_size_x {}, max_compute_workgroups_per_dimension {}",
        gpu.limits.max_buffer_size,
        gpu.limits.max_storage_buffer_binding_size,
        gpu.limits.max_compute_workgroup_size_x,
        gpu.limits.max_compute_workgroups_per_dimension
    );
    Ok(())
}
