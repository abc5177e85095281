//! The accept loop: hyper's HTTP/1 server on each connection (axum's router as its
//! service), at most `connections` open at once, a time limit on each request's
//! headers (slow clients hold a connection only that long), and a graceful shutdown:
//! no new connections, answers in progress cut before their next forward pass and
//! their streams closed properly, waiting requests refused, idle connections closed.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use super::{routes, Shared};
use crate::error::{Error, Result};

pub async fn serve(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("the listener", e))?;
    let io = |e| Error::io(address.to_string(), e);
    listener.set_nonblocking(true).map_err(io)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(io)?;
    let limits = shared.limits.clone();
    let router = routes::router(shared.clone());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_time)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors, say: let some close first.
                    log::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            log::warn!(
                "{peer}: refused, {} connections are open",
                limits.connections
            );
            continue;
        };
        // Each chunk of a stream goes out as soon as it is written.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("{peer}: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    shared.stopping.store(true, Ordering::Release);
    shared.slots.permits().close();
    let (_, busy) = shared.slots.counts();
    log::info!("shutting down: {busy} answers in progress are cut short");
    let grace = limits.shutdown_time;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!(
            "connections still open {} s after shutdown began are dropped",
            grace.as_secs()
        );
    }
    Ok(())
}
