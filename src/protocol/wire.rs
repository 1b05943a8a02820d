//! What every layer needs to know about a protocol's requests and responses, as one trait with
//! one implementation per protocol file.

use serde_json::Value;

use super::sse::SseEvent;
use super::Protocol;

/// Who a piece of request text claims to come from. A claim, not trust: the input layer
/// decides what each speaker's text weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    System,
    User,
    Assistant,
    /// Tool or function results, retrieved documents.
    Tool,
}

/// Where a protocol's requests and responses carry text, tools, token limits and usage.
pub trait Wire: Sync {
    /// The path the protocol is served on.
    fn path(&self) -> &'static str;

    // Requests.

    /// Top-level request fields that carry system text.
    fn system_fields(&self) -> &'static [&'static str];
    /// The speaker a message's `role` claims.
    fn speaker(&self, role: &str) -> Speaker;
    /// Message fields that carry no prose (not scanned).
    fn message_structural(&self, field: &str) -> bool;
    /// Fields anywhere inside message content that carry no prose.
    fn structural(&self, field: &str) -> bool;
    /// A content block of this `type` inside a message is indirect content (a tool result).
    fn tool_result_block(&self, block_type: &str) -> bool;
    /// Request fields that list tools offered to the model.
    fn tool_lists(&self) -> &'static [&'static str];
    /// The name of one offered tool.
    fn tool_name<'v>(&self, tool: &'v Value) -> Option<&'v str>;
    /// The tool a `tool_choice` value forces, if it names one.
    fn forced_tool<'v>(&self, choice: &'v Value) -> Option<&'v str>;
    /// Request fields limiting completion tokens, in the order the origin reads them.
    fn completion_limit_fields(&self) -> &'static [&'static str];
    /// Request fields whose text counts towards the prompt's token estimate.
    fn prompt_fields(&self) -> &'static [&'static str];
    /// Whether a streamed request must ask the origin for a final usage chunk.
    fn stream_usage_option(&self) -> bool;

    // Responses.

    /// Names of the tools a whole response calls.
    fn called_tools<'v>(&self, body: &'v Value) -> Vec<&'v str>;
    /// Applies `f` to every model-written string of a whole response that the output filter
    /// redacts.
    fn response_texts(&self, body: &mut Value, f: &mut dyn FnMut(&mut String));
    /// Tokens a `usage` object reports.
    fn usage_tokens(&self, usage: &Value) -> Option<u32>;
    /// The error event that ends a stream the gateway cut off.
    fn error_event(&self, code: &str, message: &str) -> SseEvent;
}

impl Protocol {
    /// Every protocol the gateway speaks.
    pub const ALL: [Protocol; 2] = [Protocol::OpenAiChat, Protocol::AnthropicMessages];

    /// The protocol's wire description.
    pub fn wire(self) -> &'static dyn Wire {
        match self {
            Protocol::OpenAiChat => &super::openai_chat::OpenAiChat,
            Protocol::AnthropicMessages => &super::anthropic::Anthropic,
        }
    }
}

/// Applies `f` to every string inside `v` (object keys excluded).
pub(crate) fn each_string(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| each_string(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| each_string(x, f)),
        _ => {}
    }
}

/// A whole number in a usage object.
pub(crate) fn count(u: &Value, k: &str) -> Option<u64> {
    u.get(k).and_then(Value::as_u64)
}
