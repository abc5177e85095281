//! `lfm-edge serve`: the model behind OpenAI's API over HTTP (`lfm_edge::server`), on
//! loopback unless told otherwise. Prints `listening on http://ADDRESS` on stdout
//! once it accepts connections (with `--port 0`, the port the system chose); one log
//! line per request on stderr; SIGINT or SIGTERM shut it down gracefully.

use std::path::Path;

use clap::Args;
use lfm_edge::server::{Limits, Server, ServerOptions};
use lfm_edge::{Error, Result};

use super::model::ModelArgs;

#[derive(Args)]
pub struct Options {
    /// Address to listen on; the default, loopback, lets only this machine connect.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free one, printed when listening).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sessions answering at once, sharing one KV cache; more requests wait for one.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests to /v1/ must carry the header `Authorization: Bearer KEY`.
    #[arg(long)]
    pub api_key: Option<String>,
}

pub fn run(args: &ModelArgs, options: &Options) -> Result<()> {
    let model = args.load()?;
    let positions = model.config.max_position_embeddings;
    if let Some(context) = args.memory.context.filter(|&n| n > positions) {
        return Err(Error::Input(format!(
            "--context {context} is above the model's max_position_embeddings of {positions}"
        )));
    }
    let server = Server::new(
        model,
        ServerOptions {
            model_id: model_id(args.model.as_deref()),
            parallel: options.parallel,
            session: args.memory.session_options(false),
            kv_pool_tokens: None,
            api_key: options.api_key.clone(),
            limits: Limits::default(),
        },
    )?;
    let at = format!("{}:{}", options.host, options.port);
    let listener = std::net::TcpListener::bind((options.host.as_str(), options.port))
        .map_err(|e| Error::io(&at, e))?;
    let address = listener.local_addr().map_err(|e| Error::io(&at, e))?;
    if !address.ip().is_loopback() {
        let open = match options.api_key {
            Some(_) => "",
            None => ", and without --api-key anyone who reaches it can use it",
        };
        log::warn!("{address} is reachable from other machines{open}");
    }
    outln!(
        "listening on http://{address} ({} sessions of {} tokens, a KV cache of {} tokens)",
        options.parallel,
        server.context(),
        server.kv_pool_tokens()
    )?;
    server.run(listener)
}

/// The model's name in the API: the demo model's, an `hf:` name as written, else the
/// file or folder name.
fn model_id(spec: Option<&str>) -> String {
    match spec {
        None => "lfm2-demo-Q8_0".into(),
        Some(spec) if spec.starts_with("hf:") => spec["hf:".len()..].into(),
        Some(spec) => {
            let path = Path::new(spec.trim_end_matches('/'));
            let name = match path.extension().is_some_and(|e| e == "gguf") {
                true => path.file_stem(),
                false => path.file_name(),
            };
            name.map_or_else(|| spec.into(), |n| n.to_string_lossy().into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_named_as_its_file_or_its_hub_name() {
        assert_eq!(model_id(None), "lfm2-demo-Q8_0");
        assert_eq!(model_id(Some("models/LFM2-350M/")), "LFM2-350M");
        assert_eq!(model_id(Some("/m/LFM2-1.2B-Q4_0.gguf")), "LFM2-1.2B-Q4_0");
        let hub = "hf:LiquidAI/LFM2-1.2B-GGUF:LFM2-1.2B-Q4_0.gguf";
        assert_eq!(
            model_id(Some(hub)),
            "LiquidAI/LFM2-1.2B-GGUF:LFM2-1.2B-Q4_0.gguf"
        );
    }
}
