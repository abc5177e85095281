//! The endpoints, and what every request goes through: the API key, a body read
//! within its size and time limits, JSON whose wrong-typed fields are named, a wait
//! for a session, and one log line (`request_log.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::OwnedSemaphorePermit;

use super::api::{ChatCompletion, ModelCard, ModelList, TextChoice, TextCompletion, Usage};
use super::error::ApiError;
use super::job::{self, Event, Started, Task};
use super::request_log::{self, Tokens};
use super::{prepare, sse, Shared};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .layer(middleware::from_fn(request_log::log_request))
        .with_state(shared)
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let (sessions, busy) = shared.slots.counts();
    let pool = shared.slots.pool();
    let mut body = serde_json::json!({
        "status": "ok",
        "sessions": sessions,
        "sessions_busy": busy,
        "kv_blocks": pool.blocks(),
        "kv_blocks_free": pool.free_blocks(),
    });
    if let Some(budget) = shared.model.vram_budget() {
        body["vram_budget_bytes"] = budget.total().into();
        body["vram_used_bytes"] = budget.used().into();
    }
    Json(body).into_response()
}

fn card(shared: &Shared) -> ModelCard {
    ModelCard {
        id: shared.model_id.clone(),
        object: "model",
        created: shared.created,
        owned_by: "lfm-edge",
    }
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    let list = ModelList {
        object: "list",
        data: vec![card(&shared)],
    };
    Json(list).into_response()
}

async fn model(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if id != shared.model_id {
        return ApiError::not_found(format!("The model '{id}' does not exist"))
            .code("model_not_found")
            .param("model")
            .into_response();
    }
    Json(card(&shared)).into_response()
}

async fn not_found(method: Method, request: Request) -> ApiError {
    let path = request.uri().path();
    ApiError::not_found(format!("Unknown request URL: {method} {path}."))
}

async fn method_not_allowed(method: Method, request: Request) -> ApiError {
    let path = request.uri().path();
    ApiError::method_not_allowed(format!("{path} does not take {method} requests"))
}

/// With `--api-key`, every `/v1/` request carries `Authorization: Bearer KEY`.
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(key) = &shared.api_key else {
        return next.run(request).await;
    };
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let given = (request.headers().get(header::AUTHORIZATION))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        Some(given) if same(given.trim().as_bytes(), key.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("Incorrect API key provided.").into_response(),
        None => ApiError::unauthorized(
            "You didn't provide an API key: send it as the header Authorization: Bearer KEY.",
        )
        .into_response(),
    }
}

/// Compares keys in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request's body, refused past the size limit (at once when its Content-Length
/// says so) or when it does not arrive in time.
async fn read_body(shared: &Shared, request: Request) -> Result<Bytes, ApiError> {
    let limit = shared.body_bytes;
    let declared = (request.headers().get(header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let mut stream = request.into_body().into_data_stream();
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    match tokio::time::timeout(shared.limits.body_time, read).await {
        Ok(body) => body,
        Err(_) => Err(ApiError::timeout(format!(
            "the request body did not arrive within {} s",
            shared.limits.body_time.as_secs()
        ))),
    }
}

/// A request's JSON object.
fn json_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    match value.is_object() {
        true => Ok(value),
        false => Err(ApiError::bad_request("the body is not a JSON object")),
    }
}

/// A request's fields; one of the wrong type, or one missing, is named.
fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing field is reported at its parent; name the field itself.
        let field = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let param = match field {
            Some(field) if path == "." => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        ApiError::invalid(&param, format!("invalid '{param}': {message}"))
    })
}

/// A session for one request: at once when one is idle, else after the requests
/// waiting before it, unless too many wait or none frees up in time.
async fn acquire(shared: &Shared) -> Result<OwnedSemaphorePermit, ApiError> {
    let permits = shared.slots.permits().clone();
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return Ok(permit);
    }
    let waiting = shared.waiting.fetch_add(1, Ordering::AcqRel);
    let _waited = Waiting(shared);
    let (sessions, _) = shared.slots.counts();
    if waiting >= shared.limits.queue {
        return Err(ApiError::busy(format!(
            "all {sessions} sessions are busy and {waiting} requests are waiting for one"
        )));
    }
    match tokio::time::timeout(shared.limits.queue_time, permits.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(ApiError::busy("the server is shutting down")),
        Err(_) => Err(ApiError::busy(format!(
            "all {sessions} sessions stayed busy for {} s",
            shared.limits.queue_time.as_secs()
        ))),
    }
}

struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a task on a thread of its own, which waits for the GPU, and waits until its
/// prompt is fed (or refused). Dropping what this returns (a client gone) ends the
/// answer before its next forward pass.
async fn start(shared: &Arc<Shared>, task: Task) -> Result<Started, ApiError> {
    let permit = acquire(shared).await?;
    let (sender, mut events) = unbounded_channel();
    let gpu = shared.clone();
    tokio::task::spawn_blocking(move || {
        job::run(&gpu.model, &gpu.slots, permit, task, sender, &gpu.stopping);
    });
    match events.recv().await {
        Some(Event::Started {
            prompt_tokens,
            cached_tokens,
        }) => Ok(Started {
            events,
            prompt_tokens,
            cached_tokens,
        }),
        Some(Event::Failed(e)) => Err(e),
        _ => Err(ApiError::internal("the answer ended before it began")),
    }
}

/// What a whole (not streamed) answer collects.
struct Collected {
    text: String,
    done: job::Done,
    usage: Usage,
}

async fn collect(mut started: Started, tokens: &Tokens) -> Result<Collected, ApiError> {
    let mut text = String::new();
    loop {
        match started.events.recv().await {
            Some(Event::Text(piece)) => text.push_str(&piece),
            Some(Event::Done(done)) => {
                let usage = Usage::new(
                    started.prompt_tokens,
                    started.cached_tokens,
                    done.completion_tokens,
                );
                tokens.set(usage);
                return Ok(Collected { text, done, usage });
            }
            Some(Event::Failed(e)) => return Err(e),
            Some(Event::Started { .. }) => {}
            None => return Err(ApiError::internal("the answer ended without its end")),
        }
    }
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    Extension(tokens): Extension<Tokens>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = json_object(&read_body(&shared, request).await?)?;
    let plan = prepare::chat(&shared, parse(&body)?, parse(&body)?)?;
    let header = shared.header("chatcmpl", "chat.completion");
    let started = start(&shared, plan.task).await?;
    if plan.stream {
        return Ok(sse::chat(started, header, plan.include_usage, tokens));
    }
    let answer = collect(started, &tokens).await?;
    Ok(Json(ChatCompletion {
        header,
        choices: [sse::chat_choice(answer.text, answer.done)],
        usage: answer.usage,
    })
    .into_response())
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    Extension(tokens): Extension<Tokens>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = json_object(&read_body(&shared, request).await?)?;
    let plan = prepare::completion(parse(&body)?, parse(&body)?)?;
    let header = shared.header("cmpl", "text_completion");
    let started = start(&shared, plan.task).await?;
    if plan.stream {
        return Ok(sse::completion(started, header, plan.include_usage, tokens));
    }
    let answer = collect(started, &tokens).await?;
    Ok(Json(TextCompletion {
        header,
        choices: vec![TextChoice {
            index: 0,
            text: answer.text,
            logprobs: None,
            finish_reason: Some(answer.done.finish),
        }],
        usage: Some(answer.usage),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::api::{ChatRequest, Sampling};
    use axum::http::StatusCode;

    #[test]
    fn a_wrong_type_or_a_missing_field_is_named() {
        let param = |body: &[u8]| {
            let value = json_object(body)?;
            parse::<ChatRequest>(&value)?;
            parse::<Sampling>(&value).map(|_| ())
        };
        let named = |body: &[u8]| param(body).err().and_then(|e| e.param);
        assert_eq!(
            named(br#"{"messages": [], "temperature": "hot"}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            named(br#"{"messages": [], "stop": 5}"#).as_deref(),
            Some("stop")
        );
        assert_eq!(named(br#"{"model": "m"}"#).as_deref(), Some("messages"));
        let role = br#"{"messages": [{"content": "hi"}]}"#;
        assert_eq!(named(role).as_deref(), Some("messages[0].role"));
        for garbage in [&b"{\"messages\": ["[..], b"[]", b"\xff\xfe", b""] {
            let e = param(garbage).err().unwrap();
            assert_eq!((e.status, e.param), (StatusCode::BAD_REQUEST, None));
        }
        assert!(param(br#"{"messages": [], "unknown": {"x": 1}}"#).is_ok());
        assert!(same(b"key", b"key") && !same(b"key", b"kex") && !same(b"key", b"keys"));
    }
}
