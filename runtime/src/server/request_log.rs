//! One log line per request, written when its response has been sent (a stream's at
//! its end) or the client left before: method, path, status, the answer's tokens,
//! milliseconds.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::api::Usage;

/// The tokens of a request's answer, for its log line.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<Option<Usage>>>);

impl Tokens {
    pub fn set(&self, usage: Usage) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(usage);
        }
    }
}

/// One line per request once its response has been sent (a stream's included), or the
/// client went away: method, path, status, tokens, milliseconds.
pub async fn log_request(mut request: Request, next: Next) -> Response {
    let mut line = LogLine {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        status: StatusCode::OK,
        tokens: Tokens::default(),
        started: Instant::now(),
        sent: false,
    };
    request.extensions_mut().insert(line.tokens.clone());
    let response = next.run(request).await;
    line.status = response.status();
    response.map(|inner| Body::new(LoggedBody { inner, line }))
}

struct LogLine {
    method: Method,
    path: String,
    status: StatusCode,
    tokens: Tokens,
    started: Instant,
    /// The whole response went out (else the client left before its end).
    sent: bool,
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let tokens = match self.tokens.0.lock().ok().and_then(|t| *t) {
            Some(u) => format!(
                " {} prompt ({} cached) + {} completion tokens",
                u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens
            ),
            None => String::new(),
        };
        let left = if self.sent { "" } else { ", the client left" };
        log::info!(
            "{} {} {}{tokens} {} ms{left}",
            self.method,
            self.path,
            self.status.as_u16(),
            self.started.elapsed().as_millis()
        );
    }
}

/// A response body that logs its request when dropped: after its last byte, or when
/// the connection closes before.
struct LoggedBody {
    inner: Body,
    line: LogLine,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.line.sent |= self.inner.is_end_stream();
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.line.sent = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
