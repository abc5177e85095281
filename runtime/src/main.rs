//! The `lfm-edge` command line. Results go to stdout; progress, the adapter choice and
//! errors go to stderr; any failure exits with status 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lfm_edge::{
    npy, Backend, Error, Gpu, GpuOptions, Model, Result, Sampler, Session, SessionOptions,
    TextStream,
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
    /// Model directory: config.json, model.safetensors (or sharded), tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// GPU backend: auto, vulkan, metal, dx12, gl (auto also honours WGPU_BACKEND).
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Tokens the KV cache holds.
    #[arg(long, default_value_t = 4096)]
    context: usize,
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
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep generating past end-of-sequence tokens.
        #[arg(long)]
        ignore_eos: bool,
        /// Also print the generated ids, comma-separated, as the last line.
        #[arg(long)]
        print_ids: bool,
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
    // A missing or bad model fails before paying for GPU start-up.
    lfm_edge::ModelConfig::from_file(&args.model.join("config.json"))?;
    let gpu = Gpu::new(&GpuOptions {
        backend: args.backend,
    })?;
    Ok(Arc::new(Model::load(&args.model, gpu)?))
}

fn session(model: &Arc<Model>, args: &ModelArgs, all_logits: bool) -> Result<Session> {
    let options = SessionOptions {
        max_context: args.context,
        all_logits,
        ..SessionOptions::default()
    };
    Session::new(model.clone(), &options)
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
                        all.extend(s.feed(&[id])?);
                    }
                    all
                }
            };
            npy::write_f32(&out, ids.len(), vocab, &logits)
        }
        Command::Generate {
            model,
            prompt,
            tokens,
            max_tokens,
            temperature,
            seed,
            ignore_eos,
            print_ids,
        } => {
            if prompt.as_deref() == Some("") {
                return Err(Error::Input("--prompt is empty".into()));
            }
            let m = load(&model)?;
            let prompt_ids = match (prompt, tokens) {
                (Some(text), _) => m.tokenizer.encode(&text)?,
                (None, Some(ids)) => parse_ids(&ids)?,
                (None, None) => return Err(Error::Input("give --prompt or --tokens".into())),
            };
            let mut s = session(&m, &model, false)?;
            let generated = generate(
                &mut s,
                &prompt_ids,
                max_tokens,
                Sampler::new(temperature, seed),
                ignore_eos,
            )?;
            if print_ids {
                println!("\n{}", join_ids(&generated));
            } else {
                println!();
            }
            Ok(())
        }
        Command::Tokenize { model, text } => {
            let tokenizer = lfm_edge::Tokenizer::from_dir(&model.model)?;
            println!("{}", join_ids(&tokenizer.encode(&text)?));
            Ok(())
        }
        Command::Info { model } => info(&model.model, &*load(&model)?),
    }
}

/// Feeds the prompt, then samples up to `max_tokens`, streaming text to stdout.
fn generate(
    session: &mut Session,
    prompt: &[u32],
    max_tokens: usize,
    mut sampler: Sampler,
    ignore_eos: bool,
) -> Result<Vec<u32>> {
    let model = session.model().clone();
    let mut eos = model.config.eos_token_ids.clone();
    eos.extend(&model.tokenizer.eos_token_ids);
    let mut stream = TextStream::new(&model.tokenizer);
    let mut stdout = std::io::stdout().lock();
    let mut generated = Vec::new();
    let mut logits = session.feed(prompt)?;
    for _ in 0..max_tokens {
        let id = sampler.sample(&logits);
        generated.push(id);
        if !ignore_eos && eos.contains(&id) {
            break;
        }
        let text = stream.push(id)?;
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|_| stdout.flush());
        if generated.len() == max_tokens {
            break;
        }
        logits = session.feed(&[id])?;
    }
    Ok(generated)
}

fn info(dir: &Path, model: &Model) -> Result<()> {
    let c = &model.config;
    let gpu = &model.gpu;
    let kv_bytes_per_token = c
        .layers
        .iter()
        .filter(|k| **k == lfm_edge::LayerKind::Attention)
        .count()
        * 2
        * c.kv_dim()
        * 4;
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
    println!("kv cache bytes per token: {kv_bytes_per_token}");
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
