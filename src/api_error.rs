//! Errors the gateway itself returns, in the OpenAI error format
//! `{"error":{"message","type","code"}}` (also understood by Anthropic-style clients, which
//! read `error.type` and `error.message`).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// The methods a 405 names in its `Allow` header.
    pub allow: Option<String>,
    /// Seconds a 429 or 503 names in its `Retry-After` header.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    param: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` of `seconds` (at least 1).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "invalid_request_error", "invalid_api_key", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", code, message)
    }

    pub fn not_found() -> Self {
        Self::new(
            404,
            "invalid_request_error",
            "unknown_url",
            "This path is not served by the gateway.",
        )
    }

    /// 405 naming the methods the path accepts.
    pub fn method_not_allowed(allow: &[&str]) -> Self {
        let mut e = Self::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            "This method is not allowed on this path.",
        );
        e.allow = Some(allow.join(", "));
        e
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than the gateway's limit of {limit} bytes."),
        )
    }

    pub fn too_large_text() -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "text_too_large",
            "The request carries more text than the gateway accepts.",
        )
    }

    /// A generic 500 that names nothing internal; the cause goes to the log only.
    pub fn internal() -> Self {
        Self::new(
            500,
            "server_error",
            "gateway_misconfigured",
            "The gateway cannot serve requests right now.",
        )
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, "upstream_error", "upstream_failed", message)
    }

    pub fn gateway_timeout() -> Self {
        Self::new(
            504,
            "upstream_error",
            "upstream_timeout",
            "The AI origin did not answer in time.",
        )
    }

    pub fn content_filtered() -> Self {
        Self::new(
            400,
            "invalid_request_error",
            "content_filter",
            "The response was withheld by the gateway's output policy.",
        )
    }

    /// Headers the error response carries besides its content type.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(a) = &self.allow {
            h.push(("allow", a.clone()));
        }
        if let Some(s) = self.retry_after {
            h.push(("retry-after", s.to_string()));
        }
        h
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                param: None,
            },
        })
        .unwrap_or_else(|_| {
            String::from(r#"{"error":{"message":"error","type":"server_error","code":"internal"}}"#)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_openai_format() {
        let v: serde_json::Value =
            serde_json::from_str(&ApiError::unauthorized("no").to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["message"], "no");
    }
}
