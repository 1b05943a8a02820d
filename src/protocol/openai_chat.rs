//! OpenAI chat completions (`POST /v1/chat/completions`): where requests carry text and tools,
//! and where whole responses carry model text, tool calls and usage.

use serde_json::{json, Value};

use super::sse::SseEvent;
use super::wire::{count, each_string, Speaker, Wire};

pub struct OpenAiChat;

impl Wire for OpenAiChat {
    fn path(&self) -> &'static str {
        "/v1/chat/completions"
    }

    fn system_fields(&self) -> &'static [&'static str] {
        // `instructions` is not an OpenAI chat field, but origins that accept it read it as
        // system text, so it is scanned like one.
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
        tool.pointer("/function/name")
            .or_else(|| tool.get("name"))
            .and_then(Value::as_str)
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
        true
    }

    fn called_tools<'v>(&self, body: &'v Value) -> Vec<&'v str> {
        body.get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/message/tool_calls").and_then(Value::as_array))
            .flatten()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
            .collect()
    }

    fn response_texts(&self, body: &mut Value, f: &mut dyn FnMut(&mut String)) {
        let Some(Value::Array(choices)) = body.get_mut("choices") else {
            return;
        };
        for c in choices {
            if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
                f(s);
            }
            if let Some(Value::Array(calls)) = c.pointer_mut("/message/tool_calls") {
                for call in calls {
                    if let Some(a) = call.pointer_mut("/function/arguments") {
                        if a.is_string() {
                            each_string(a, f);
                        }
                    }
                }
            }
        }
    }

    fn usage_tokens(&self, u: &Value) -> Option<u32> {
        let total = count(u, "total_tokens")
            .or_else(|| Some(count(u, "prompt_tokens")? + count(u, "completion_tokens")?))
            .or_else(|| Some(count(u, "input_tokens").unwrap_or(0) + count(u, "output_tokens")?))?;
        u32::try_from(total).ok()
    }

    fn error_event(&self, code: &str, message: &str) -> SseEvent {
        SseEvent::data(
            json!({"error": {"message": message, "type": "upstream_error", "code": code}})
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_shapes() {
        let w = OpenAiChat;
        assert_eq!(w.usage_tokens(&json!({"total_tokens": 7})), Some(7));
        assert_eq!(
            w.usage_tokens(&json!({"prompt_tokens": 3, "completion_tokens": 4})),
            Some(7)
        );
        assert_eq!(w.usage_tokens(&json!({"prompt_tokens": 3})), None);
        assert_eq!(w.usage_tokens(&json!({"total_tokens": 1u64 << 40})), None);
    }

    #[test]
    fn tools_and_roles() {
        let w = OpenAiChat;
        let tool = json!({"type": "function", "function": {"name": "get_weather"}});
        assert_eq!(w.tool_name(&tool), Some("get_weather"));
        assert_eq!(w.tool_name(&json!({"name": "legacy"})), Some("legacy"));
        assert_eq!(
            w.forced_tool(&json!({"type": "function", "function": {"name": "rm"}})),
            Some("rm")
        );
        assert_eq!(w.forced_tool(&json!("auto")), None);
        assert_eq!(w.speaker("developer"), Speaker::System);
        assert_eq!(w.speaker("tool"), Speaker::Tool);
        assert_eq!(w.speaker("anything"), Speaker::User);
        let body = json!({"choices": [{"message": {"tool_calls": [{"function": {"name": "a", "arguments": "{}"}}]}}]});
        assert_eq!(w.called_tools(&body), vec!["a"]);
    }
}
