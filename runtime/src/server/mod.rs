//! `lfm-edge serve`: an OpenAI-compatible HTTP server over the library's sessions, for
//! the editors, chat UIs, agents and scripts that speak OpenAI's API.
//!
//! `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (streamed
//! as server-sent events or whole), `GET /health`. A request flows:
//!
//! 1. **HTTP** (`http.rs`, `routes.rs`): hyper's HTTP/1 server on tokio, axum's router;
//!    the API key, the body's size and time limits, JSON whose wrong-typed fields are
//!    named in OpenAI's error object (`error.rs`), one log line per request
//!    (`request_log.rs`).
//! 2. **Preparation** (`prepare.rs`, `api.rs`): the conversation rendered through the
//!    model's chat template, sampling options in OpenAI's ranges, `response_format`
//!    and `tools` as constraints: a [`job::Task`].
//! 3. **A session** (`slots.rs`): `parallel` sessions share one KV pool. The task waits
//!    for an idle one (503 with `Retry-After` when too many wait), and takes the one
//!    whose cache shares the longest prefix with its prompt.
//! 4. **The GPU** (`job.rs`): on a blocking thread, the session feeds what it does not
//!    hold yet and streams the answer back over a channel; before every forward pass it
//!    checks that the client is still there and the server is not stopping, and takes
//!    a KV block from the least recently used idle session when the pool has none.
//!    Sessions run on their own threads: the GPU queue serves their passes in turn.
//! 5. **The answer** (`sse.rs`): whole, or chunk by chunk ending in `data: [DONE]`.

mod api;
mod error;
mod http;
mod job;
mod prepare;
mod request_log;
mod routes;
mod slots;
mod sse;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::budget::fit_shared_pool;
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::kv_pool::{blocks_for, BLOCK_TOKENS};
use crate::model::Model;
use crate::session::{Session, SessionOptions};
use api::Header;
use slots::Slots;

/// A request body may hold this many bytes besides its prompt's…
const BODY_BASE_BYTES: usize = 64 << 10;
/// …and this many per token of context (text in JSON, escapes included).
const BODY_BYTES_PER_TOKEN: usize = 32;

/// Time and count limits of the HTTP side.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A request's headers must arrive within this time of its first byte.
    pub header_time: Duration,
    /// A request's body must arrive within this time.
    pub body_time: Duration,
    /// Requests that may wait for a session beyond those being answered.
    pub queue: usize,
    /// The longest a request waits for a session.
    pub queue_time: Duration,
    /// Connections open at once; more are closed as they come.
    pub connections: usize,
    /// At shutdown, how long connections get to finish.
    pub shutdown_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_time: Duration::from_secs(10),
            body_time: Duration::from_secs(30),
            queue: 64,
            queue_time: Duration::from_secs(120),
            connections: 256,
            shutdown_time: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The model's name in `/v1/models` and in every response.
    pub model_id: String,
    /// Sessions answering at once.
    pub parallel: usize,
    /// Each session's: its context, KV type, what it does when full. Within the model's
    /// VRAM budget the context is at most what the budget holds for `parallel`
    /// sessions sharing a pool.
    pub session: SessionOptions,
    /// Tokens of the shared KV pool; `None`: a whole context per session, or within a
    /// budget as many as it has room for (sessions then take blocks from idle ones).
    pub kv_pool_tokens: Option<usize>,
    /// Required as `Authorization: Bearer KEY` on `/v1/` when set.
    pub api_key: Option<String>,
    pub limits: Limits,
}

/// What every request handler sees.
pub(crate) struct Shared {
    model: Arc<Model>,
    model_id: String,
    /// When the server started, as `created` of its model card.
    created: u64,
    /// The model's chat template, or why it has none.
    template: std::result::Result<ChatTemplate, String>,
    slots: Arc<Slots>,
    api_key: Option<String>,
    /// Set at shutdown: answers stop before their next forward pass.
    stopping: AtomicBool,
    /// Requests waiting for a session.
    waiting: AtomicUsize,
    /// Bytes a request body may have.
    body_bytes: usize,
    limits: Limits,
    next_id: AtomicU64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// A new response's id and time.
    fn header(&self, prefix: &str, object: &'static str) -> Header {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Header {
            id: format!("{prefix}-{:x}{n:06x}", self.created),
            object,
            created: now(),
            model: self.model_id.clone(),
            system_fingerprint: concat!("lfm-edge-", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A model with its sessions, ready to serve.
pub struct Server {
    shared: Arc<Shared>,
    context: usize,
}

impl Server {
    /// Allocates the KV pool and `options.parallel` sessions now, within the model's
    /// VRAM budget if it has one.
    pub fn new(model: Arc<Model>, options: ServerOptions) -> Result<Server> {
        let parallel = options.parallel;
        if parallel == 0 {
            return Err(Error::Input("--parallel must be at least 1".into()));
        }
        let c = &model.config;
        let requested = options.session.max_context.min(c.max_position_embeddings);
        let (session, blocks) = match (options.kv_pool_tokens, model.vram_budget()) {
            (Some(tokens), _) => {
                let session = SessionOptions {
                    max_context: requested.min(tokens),
                    ..options.session.clone()
                };
                (session, blocks_for(tokens))
            }
            (None, Some(budget)) => fit_shared_pool(c, &options.session, budget, parallel)?,
            (None, None) => (options.session.clone(), parallel * blocks_for(requested)),
        };
        let pool = model.kv_pool(session.kv_dtype, blocks)?;
        let sessions = (0..parallel)
            .map(|_| Session::new_in(&pool, model.clone(), &session))
            .collect::<Result<Vec<_>>>()?;
        let context = sessions.first().map_or(0, Session::max_context);
        log::info!(
            "{parallel} sessions of {context} tokens sharing a KV pool of {} tokens",
            blocks * BLOCK_TOKENS
        );
        let template = ChatTemplate::for_model(&model).map_err(|e| e.to_string());
        let shared = Shared {
            model_id: options.model_id,
            created: now(),
            template,
            slots: Arc::new(Slots::new(pool, sessions)),
            api_key: options.api_key.filter(|key| !key.is_empty()),
            stopping: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            body_bytes: BODY_BASE_BYTES + BODY_BYTES_PER_TOKEN * context,
            limits: options.limits,
            next_id: AtomicU64::new(0),
            model,
        };
        Ok(Server {
            shared: Arc::new(shared),
            context,
        })
    }

    /// Tokens each session holds.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Tokens the sessions' shared KV pool holds.
    pub fn kv_pool_tokens(&self) -> usize {
        self.shared.slots.pool().blocks() * BLOCK_TOKENS
    }

    /// Serves on `listener` until SIGINT or SIGTERM (Ctrl-C on Windows), then shuts
    /// down gracefully.
    pub fn run(self, listener: std::net::TcpListener) -> Result<()> {
        self.serve_until(listener, signal())
    }

    /// Serves on `listener` from a thread of its own, until [`Running::stop`].
    pub fn spawn(self, listener: std::net::TcpListener) -> Result<Running> {
        let address = listener
            .local_addr()
            .map_err(|e| Error::io("the listener", e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lfm-edge-serve".into())
            .spawn(move || {
                self.serve_until(listener, async {
                    let _ = stopped.await;
                })
            })
            .map_err(|e| Error::io("a server thread", e))?;
        Ok(Running {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn serve_until(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lfm-edge-http")
            .enable_all()
            .build()
            .map_err(|e| Error::io("the server's runtime", e))?;
        let served = runtime.block_on(http::serve(self.shared, listener, shutdown));
        // Answers cut at shutdown end at their next forward pass.
        runtime.shutdown_timeout(Duration::from_secs(10));
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            log::warn!("cannot catch Ctrl-C ({e}): stop the server with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    () = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(e) => {
                log::warn!("cannot catch SIGTERM ({e})");
                interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    interrupt.await;
}

/// A server running on a thread of its own ([`Server::spawn`]); dropping it stops it.
pub struct Running {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Running {
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Shuts the server down gracefully and waits for it.
    pub fn stop(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(served)) => served,
            Some(Err(_)) => Err(Error::Gpu("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("the server stopped with an error: {e}");
        }
    }
}
