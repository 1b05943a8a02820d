//! The tools layer: which tools a key may offer to the model and which tool calls a response
//! may carry. One glob matcher serves tool and model allow-lists.

use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::protocol::Protocol;

/// What to do with tools outside a key's allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolPolicy {
    /// Refuse the request (400 `tool_not_allowed`).
    Refuse,
    /// Remove the tools the key may not offer and forward the rest.
    Strip,
}

/// Whether `name` is allowed by the key's globs (`None`: every tool is).
pub fn tool_allowed(allowed: Option<&[String]>, name: &str) -> bool {
    allowed.is_none_or(|globs| globs.iter().any(|g| glob_match(g, name)))
}

/// Enforces the key's allow-list on the tools a request offers and forces. Returns the names of
/// the tools removed under [`ToolPolicy::Strip`].
pub fn check_offered(
    protocol: Protocol,
    body: &mut Map<String, Value>,
    policy: ToolPolicy,
    allowed: Option<&[String]>,
) -> Result<Vec<String>, ApiError> {
    let wire = protocol.wire();
    let refuse = || {
        ApiError::bad_request(
            "tool_not_allowed",
            "This API key may not offer one or more of the requested tools.",
        )
    };
    if let Some(choice) = body.get("tool_choice") {
        if wire
            .forced_tool(choice)
            .is_some_and(|n| !tool_allowed(allowed, n))
        {
            return Err(refuse());
        }
    }
    let mut stripped = Vec::new();
    for key in wire.tool_lists() {
        let Some(Value::Array(list)) = body.get_mut(*key) else {
            continue;
        };
        let mut kept = Vec::with_capacity(list.len());
        for t in list.drain(..) {
            let name = wire.tool_name(&t).unwrap_or_default().to_string();
            if tool_allowed(allowed, &name) {
                kept.push(t);
            } else if policy == ToolPolicy::Strip {
                stripped.push(name);
            } else {
                return Err(refuse());
            }
        }
        *list = kept;
    }
    Ok(stripped)
}

/// `true` if `name` matches the glob (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("get_?eather", "get_weather"));
        assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
        assert!(!glob_match("a*b", "acd"));
    }

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn offered_tools_refused_or_stripped() {
        let allowed = vec!["get_*".to_string()];
        let v = json!({"tools": [
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "function", "function": {"name": "delete_files"}}]});
        let mut m = body(v.clone());
        let e = check_offered(
            Protocol::OpenAiChat,
            &mut m,
            ToolPolicy::Refuse,
            Some(&allowed),
        );
        assert_eq!(e.unwrap_err().code, "tool_not_allowed");
        let mut m = body(v.clone());
        let stripped = check_offered(
            Protocol::OpenAiChat,
            &mut m,
            ToolPolicy::Strip,
            Some(&allowed),
        )
        .unwrap();
        assert_eq!(stripped, vec!["delete_files"]);
        assert_eq!(m["tools"].as_array().unwrap().len(), 1);
        let mut m = body(v);
        assert!(check_offered(Protocol::OpenAiChat, &mut m, ToolPolicy::Refuse, None).is_ok());
        let mut m =
            body(json!({"tools": [{"name": "rm"}], "tool_choice": {"type": "tool", "name": "rm"}}));
        let e = check_offered(
            Protocol::AnthropicMessages,
            &mut m,
            ToolPolicy::Strip,
            Some(&allowed),
        );
        assert_eq!(e.unwrap_err().code, "tool_not_allowed");
    }

    #[test]
    fn refused_calls() {
        let allowed = vec!["get_*".to_string()];
        assert!(tool_allowed(Some(&allowed), "get_a"));
        assert!(!tool_allowed(Some(&allowed), "rm"));
        assert!(tool_allowed(None, "rm"));
    }
}
