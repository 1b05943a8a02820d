//! The wire protocols: which route a request takes, which headers cross the gateway, the shape
//! of a chat request, and one file per protocol ([`openai_chat`], [`anthropic`]) saying where
//! its requests and responses carry text, tools, token limits and usage. Every layer reads the
//! wire through this module, so a new protocol is one new file here.

pub mod anthropic;
pub mod json;
pub mod openai_chat;
pub mod responses;
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
    OpenAiResponses,
}

impl Protocol {
    /// The protocol's name in logs and audit events.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::OpenAiChat => "openai_chat",
            Protocol::AnthropicMessages => "anthropic_messages",
            Protocol::OpenAiResponses => "openai_responses",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    /// An inspected AI endpoint.
    Inspect(Protocol),
    /// Forwarded without inspection because the policy lists the path.
    PassThrough,
}

/// A path forwarded without inspection (after authentication), and the methods it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassThrough {
    pub path: String,
    pub methods: Vec<String>,
}

impl PassThrough {
    /// Reads `"/v1/models"` (GET and HEAD) or `"GET,POST /v1/files"`.
    pub fn parse(entry: &str) -> Result<PassThrough, String> {
        let entry = entry.trim();
        let (methods, path) = match entry.split_once(' ') {
            Some((m, p)) => (
                m.split(',')
                    .map(|x| x.trim().to_ascii_uppercase())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>(),
                p.trim(),
            ),
            None => (vec!["GET".to_string(), "HEAD".to_string()], entry),
        };
        if !path.starts_with('/') {
            return Err(format!("path {path:?} must start with /"));
        }
        const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
        if methods.is_empty() || methods.iter().any(|m| !KNOWN.contains(&m.as_str())) {
            return Err(format!(
                "{entry:?}: methods must be among {}",
                KNOWN.join(", ")
            ));
        }
        Ok(PassThrough {
            path: path.to_string(),
            methods,
        })
    }
}

/// Routes a request. Unknown paths are refused unless listed for pass-through; a known path
/// with another method gets 405 naming the methods it accepts.
pub fn route(method: &str, path: &str, pass_through: &[PassThrough]) -> Result<Route, ApiError> {
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
        Some((_, m)) => Err(ApiError::method_not_allowed(&[m])),
        None => match pass_through.iter().find(|p| p.path == path) {
            Some(p) if p.methods.iter().any(|m| m == method) => Ok(Route::PassThrough),
            Some(p) => {
                let allow: Vec<&str> = p.methods.iter().map(String::as_str).collect();
                Err(ApiError::method_not_allowed(&allow))
            }
            None => Err(ApiError::not_found()),
        },
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
    let field = protocol.wire().messages_field();
    match body.get(field) {
        Some(Value::Array(a)) if !a.is_empty() => {}
        // The Responses API also takes its input as one string.
        Some(Value::String(s)) if field == "input" && !s.is_empty() => {}
        Some(Value::Array(_)) | Some(Value::String(_)) => {
            return Err(ApiError::bad_request(
                "invalid_messages",
                format!("`{field}` must not be empty."),
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_messages",
                format!("`{field}` must be an array."),
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

/// Request fields that are counts: each must be absent, `null`, or an integer in its range.
/// (`null` means absent for every one of them.)
pub const COUNT_FIELDS: &[(&str, u64, u64)] = &[
    ("max_tokens", 1, 1 << 31),
    ("max_completion_tokens", 1, 1 << 31),
    ("max_output_tokens", 1, 1 << 31),
    ("n", 1, 128),
    ("top_logprobs", 0, 20),
    ("top_k", 0, 1 << 20),
];

/// Checks the count fields: integers in range, or `null`/absent. `100.0`, `"100"`, negative
/// and out-of-range values are refused, so no spelling reaches the origin unchecked.
pub fn check_counts(body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, lo, hi) in COUNT_FIELDS {
        match body.get(*field) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some_and(|n| (*lo..=*hi).contains(&n)) => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_count",
                    format!("`{field}` must be an integer from {lo} to {hi}, or null."),
                ))
            }
        }
    }
    if let Some(v) = body
        .get("logprobs")
        .filter(|v| !v.is_null() && !v.is_boolean())
    {
        let _ = v;
        return Err(ApiError::bad_request(
            "invalid_count",
            "`logprobs` must be a boolean.",
        ));
    }
    Ok(())
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
        let models = [PassThrough::parse("/v1/models").unwrap()];
        let files = [PassThrough::parse("GET,POST /v1/files").unwrap()];
        assert_eq!(route("GET", "/healthz", &[]).unwrap(), Route::Health);
        assert_eq!(
            route("POST", "/v1/chat/completions", &[]).unwrap(),
            Route::Inspect(Protocol::OpenAiChat)
        );
        let e = route("GET", "/v1/chat/completions", &[]).unwrap_err();
        assert_eq!((e.status, e.allow.as_deref()), (405, Some("POST")));
        let e = route("POST", "/healthz", &[]).unwrap_err();
        assert_eq!(e.allow.as_deref(), Some("GET"));
        assert_eq!(route("GET", "/v1/models", &[]).unwrap_err().status, 404);
        assert_eq!(
            route("GET", "/v1/models", &models).unwrap(),
            Route::PassThrough
        );
        assert_eq!(
            route("HEAD", "/v1/models", &models).unwrap(),
            Route::PassThrough
        );
        for m in ["DELETE", "POST", "PUT"] {
            let e = route(m, "/v1/models", &models).unwrap_err();
            assert_eq!((e.status, e.allow.as_deref()), (405, Some("GET, HEAD")));
        }
        assert_eq!(
            route("POST", "/v1/files", &files).unwrap(),
            Route::PassThrough
        );
        assert!(PassThrough::parse("v1/x").is_err());
        assert!(PassThrough::parse("FETCH /v1/x").is_err());
    }
}
