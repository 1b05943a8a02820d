//! What the proxy decides without touching the network: which route a request takes, which
//! headers cross the gateway in each direction, and strict parsing of request bodies.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api_error::ApiError;

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
    let known = match path {
        "/healthz" => Some((Route::Health, "GET")),
        "/v1/chat/completions" => Some((Route::Inspect(Protocol::OpenAiChat), "POST")),
        "/v1/messages" => Some((Route::Inspect(Protocol::AnthropicMessages), "POST")),
        _ => None,
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

/// Parses a JSON request body strictly: size and nesting caps, no duplicate keys, an object at
/// the top. What is forwarded is the re-serialization of exactly what was inspected.
pub fn parse_body(
    body: &[u8],
    max_bytes: usize,
    max_depth: usize,
) -> Result<Map<String, Value>, ApiError> {
    if body.len() > max_bytes {
        return Err(ApiError::too_large(max_bytes));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "The request body is empty.",
        ));
    }
    let depth = json_depth(body);
    if depth > max_depth {
        return Err(ApiError::bad_request(
            "json_too_deep",
            format!("The request body nests deeper than {max_depth} levels."),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "The request body is not UTF-8."))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("The request body is not valid JSON: {e}"),
            )
        })?;
    match v.0 {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "invalid_json",
            "The request body must be a JSON object.",
        )),
    }
}

/// Maximum bracket nesting, outside strings; linear, no recursion.
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in body {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A JSON value that refuses duplicate object keys (a classic way to show a scanner one value
/// and the origin another).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let Strict(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
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

    #[test]
    fn strict_parsing() {
        assert!(parse_body(br#"{"a":1}"#, 100, 4).is_ok());
        assert_eq!(
            parse_body(br#"{"a":1,"a":2}"#, 100, 4).unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(
            parse_body(b"[[[[[[1]]]]]]", 100, 4).unwrap_err().code,
            "json_too_deep"
        );
        assert_eq!(parse_body(b"{\"a\":1}", 3, 4).unwrap_err().status, 413);
        assert_eq!(parse_body(b"[1]", 100, 4).unwrap_err().code, "invalid_json");
        assert_eq!(
            parse_body(b"{\"a\":1} x", 100, 4).unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(json_depth(br#"{"a":"[[[[","b":[{}]}"#), 3);
    }

    #[test]
    fn deep_input_does_not_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            parse_body(deep.as_bytes(), 1 << 20, 32).unwrap_err().code,
            "json_too_deep"
        );
    }
}
