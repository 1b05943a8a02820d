//! The wire protocols: which route a request takes, which headers cross the gateway, the shape
//! of a chat request, and one file per protocol ([`openai_chat`], [`anthropic`]) saying where
//! its requests and responses carry text, tools, token limits and usage. Every layer reads the
//! wire through this module, so a new protocol is one new file here.

pub mod anthropic;
pub mod json;
pub mod openai_chat;
pub mod sse;

use serde_json::{Map, Value};

use crate::api_error::ApiError;
pub use json::{json_depth, parse_body};
pub use wire::{Speaker, Wire};

pub mod wire;

/// The wire protocol of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAiChat,
    AnthropicMessages,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    /// An inspected AI endpoint.
    Inspect(Protocol),
    /// Forwarded without inspection because the policy lists the path.
    PassThrough,
}

/// Routes a request. Unknown paths are refused unless listed for pass-through.
pub fn route(method: &str, path: &str, pass_through: &[String]) -> Result<Route, ApiError> {
    let known = if path == "/healthz" {
        Some((Route::Health, "GET"))
    } else {
        Protocol::ALL
            .into_iter()
            .find(|p| p.wire().path() == path)
            .map(|p| (Route::Inspect(p), "POST"))
    };
    match known {
        Some((r, m)) if method == m => Ok(r),
        Some(_) => Err(ApiError::method_not_allowed()),
        None if pass_through.iter().any(|p| p == path) => Ok(Route::PassThrough),
        None => Err(ApiError::not_found()),
    }
}

/// Request headers forwarded to the origin; everything else (cookies, client addresses,
/// forwarding chains, the client's credential, hop-by-hop headers) stays behind.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "idempotency-key",
];

/// Response headers passed back to the client. Length and encoding are dropped because the
/// body may be rewritten; cookies and hop-by-hop headers are never passed.
pub fn forward_response_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "content-type"
            | "openai-processing-ms"
            | "openai-version"
            | "retry-after"
            | "anthropic-ratelimit-requests-limit"
    ) || n.starts_with("x-ratelimit-")
}

/// Checks the shape of a chat request enough to route, limit and inspect it.
pub fn check_chat_request(
    protocol: Protocol,
    body: &Map<String, Value>,
) -> Result<ChatMeta, ApiError> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= 256 => m.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_model",
                "`model` must be a non-empty string.",
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "missing_model",
                "`model` is required.",
            ))
        }
    };
    match body.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(
                "invalid_messages",
                "`messages` must not be empty.",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_messages",
                "`messages` must be an array.",
            ))
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_stream",
                "`stream` must be a boolean.",
            ))
        }
    };
    let _ = protocol;
    Ok(ChatMeta { model, stream })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMeta {
    pub model: String,
    pub stream: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/healthz", &[]).unwrap(), Route::Health);
        assert_eq!(
            route("POST", "/v1/chat/completions", &[]).unwrap(),
            Route::Inspect(Protocol::OpenAiChat)
        );
        assert_eq!(
            route("GET", "/v1/chat/completions", &[])
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(route("GET", "/v1/models", &[]).unwrap_err().status, 404);
        assert_eq!(
            route("GET", "/v1/models", &["/v1/models".to_string()]).unwrap(),
            Route::PassThrough
        );
    }
}
