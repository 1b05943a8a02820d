//! Anthropic messages (`POST /v1/messages`): where requests carry text and tools, and where
//! whole responses carry model text, tool inputs and usage.

use serde_json::{json, Value};

use super::sse::SseEvent;
use super::wire::{count, each_string, Speaker, Wire};

pub struct Anthropic;

impl Wire for Anthropic {
    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn system_fields(&self) -> &'static [&'static str] {
        &["system", "instructions"]
    }

    fn speaker(&self, role: &str) -> Speaker {
        match role {
            "system" | "developer" => Speaker::System,
            "assistant" | "model" => Speaker::Assistant,
            "tool" | "function" | "ipython" => Speaker::Tool,
            _ => Speaker::User,
        }
    }

    fn message_structural(&self, field: &str) -> bool {
        matches!(field, "role" | "tool_call_id" | "name")
    }

    fn structural(&self, field: &str) -> bool {
        matches!(
            field,
            "type"
                | "role"
                | "id"
                | "tool_call_id"
                | "tool_use_id"
                | "cache_control"
                | "media_type"
        )
    }

    fn tool_result_block(&self, block_type: &str) -> bool {
        block_type == "tool_result"
    }

    fn tool_lists(&self) -> &'static [&'static str] {
        &["tools", "functions"]
    }

    fn tool_name<'v>(&self, tool: &'v Value) -> Option<&'v str> {
        tool.get("name").and_then(Value::as_str)
    }

    fn forced_tool<'v>(&self, choice: &'v Value) -> Option<&'v str> {
        choice
            .pointer("/function/name")
            .or_else(|| choice.get("name"))
            .and_then(Value::as_str)
    }

    fn completion_limit_fields(&self) -> &'static [&'static str] {
        &["max_completion_tokens", "max_tokens"]
    }

    fn prompt_fields(&self) -> &'static [&'static str] {
        &["messages", "system", "instructions", "tools"]
    }

    fn stream_usage_option(&self) -> bool {
        // Anthropic streams always report usage (`message_start`, `message_delta`).
        false
    }

    fn called_tools<'v>(&self, body: &'v Value) -> Vec<&'v str> {
        body.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            .filter_map(|b| b.get("name").and_then(Value::as_str))
            .collect()
    }

    fn response_texts(&self, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
        let Some(Value::Array(blocks)) = body.get_mut("content") else {
            return;
        };
        for b in blocks {
            if let Some(Value::String(s)) = b.get_mut("text") {
                f(s);
            }
            if let Some(input) = b.get_mut("input") {
                each_string(input, f);
            }
        }
    }

    fn usage_tokens(&self, u: &Value) -> Option<u32> {
        let total = count(u, "total_tokens")
            .or_else(|| Some(count(u, "prompt_tokens")? + count(u, "completion_tokens")?))
            .or_else(|| Some(count(u, "input_tokens").unwrap_or(0) + count(u, "output_tokens")?))?;
        u32::try_from(total).ok()
    }

    fn error_event(&self, _code: &str, message: &str) -> SseEvent {
        SseEvent::named(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_tools() {
        let w = Anthropic;
        assert_eq!(
            w.usage_tokens(&json!({"input_tokens": 3, "output_tokens": 4})),
            Some(7)
        );
        assert_eq!(w.usage_tokens(&json!({"output_tokens": 4})), Some(4));
        let body = json!({"content": [{"type": "text", "text": "x"}, {"type": "tool_use", "name": "t", "input": {}}]});
        assert_eq!(w.called_tools(&body), vec!["t"]);
        assert_eq!(w.tool_name(&json!({"name": "t"})), Some("t"));
    }
}
