//! Errors as OpenAI's API writes them: an HTTP status and
//! `{"error": {"message", "type", "param", "code"}}`, which the official clients raise
//! as their typed exceptions (`BadRequestError`, `AuthenticationError`, …).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// Seconds a client is told to wait before trying again after a 503.
const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Object<'a>,
}

#[derive(Serialize)]
struct Object<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 400 naming the field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        Self::bad_request(message).param(param)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, message).code("invalid_api_key")
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message).code("unknown_url")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        let message = format!("the request body is larger than this server's {limit} bytes");
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message).code("request_too_large")
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::REQUEST_TIMEOUT, message)
    }

    /// A 503 with `Retry-After`: every session busy, or the KV cache full.
    pub fn busy(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message).code("server_busy")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_owned());
        self
    }

    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body: the response's, or a stream's last event after an error.
    pub fn json(&self) -> String {
        let body = Body {
            error: Object {
                message: &self.message,
                kind: self.kind(),
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.json(),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<Error> for ApiError {
    /// The library's errors: what the request asked for that cannot be done is a 400,
    /// a full KV cache a 503, anything else the server's fault.
    fn from(e: Error) -> ApiError {
        match e {
            Error::Input(message) => ApiError::bad_request(message),
            e @ Error::ContextFull { .. } => {
                ApiError::bad_request(e.to_string()).code("context_length_exceeded")
            }
            e @ Error::KvPoolFull { .. } => ApiError::busy(e.to_string()),
            e => ApiError::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openais_shape() {
        let e = ApiError::invalid("temperature", "temperature 3 is above 2");
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["error"]["message"], "temperature 3 is above 2");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "temperature");
        assert_eq!(v["error"]["code"], serde_json::Value::Null);
        let busy = ApiError::busy("every session is busy").into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let full = ApiError::from(Error::KvPoolFull {
            blocks: 4,
            block_tokens: 16,
        });
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
