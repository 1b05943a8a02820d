//! What every layer needs to know about a protocol's requests and responses, as one trait with
//! one implementation per protocol file.

use serde_json::{Map, Value};

use super::sse::SseEvent;
use super::Protocol;

/// A provider-written name (an event or content type) as it may appear in the dropped-field
/// counts of the audit record and logs: short identifier-like names as they are, anything else
/// as `?`, so a model cannot write free text into the logs through a type name.
pub fn type_name(s: &str) -> &str {
    if s.len() <= 60
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        s
    } else {
        "?"
    }
}

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
    /// Which configured origin serves it (`ORIGINS` key).
    fn origin(&self) -> &'static str {
        "openai"
    }

    // Requests. The defaults describe chat-style requests (OpenAI chat, Anthropic messages);
    // a protocol overrides what differs.

    /// Top-level request fields that carry system text.
    fn system_fields(&self) -> &'static [&'static str] {
        &["system", "instructions"]
    }
    /// The request field holding the conversation (a list of messages or items; for some
    /// protocols also a plain string).
    fn messages_field(&self) -> &'static str {
        "messages"
    }
    /// The speaker a message's `role` claims.
    fn speaker(&self, role: &str) -> Speaker {
        match role {
            "system" | "developer" => Speaker::System,
            "assistant" | "model" => Speaker::Assistant,
            "tool" | "function" | "ipython" => Speaker::Tool,
            _ => Speaker::User,
        }
    }
    /// Message fields that carry no prose (not scanned).
    fn message_structural(&self, field: &str) -> bool {
        matches!(field, "role" | "tool_call_id")
    }
    /// Fields anywhere inside a request that carry no prose.
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
    /// A content block of this `type` inside a message is indirect content (a tool result).
    fn tool_result_block(&self, block_type: &str) -> bool {
        block_type == "tool_result"
    }
    /// Request fields that list tools offered to the model.
    fn tool_lists(&self) -> &'static [&'static str] {
        &["tools", "functions"]
    }
    /// The name of one offered tool.
    fn tool_name<'v>(&self, tool: &'v Value) -> Option<&'v str> {
        tool.pointer("/function/name")
            .or_else(|| tool.get("name"))
            .and_then(Value::as_str)
    }
    /// The tool a `tool_choice` value forces, if it names one.
    fn forced_tool<'v>(&self, choice: &'v Value) -> Option<&'v str> {
        choice
            .pointer("/function/name")
            .or_else(|| choice.get("name"))
            .and_then(Value::as_str)
    }
    /// Request fields limiting completion tokens, in the order the origin reads them.
    fn completion_limit_fields(&self) -> &'static [&'static str] {
        &["max_completion_tokens", "max_tokens"]
    }
    /// Request fields whose text counts towards the prompt's token estimate.
    fn prompt_fields(&self) -> &'static [&'static str] {
        &["messages", "system", "instructions", "tools"]
    }
    /// Whether a streamed request must ask the origin for a final usage chunk.
    fn stream_usage_option(&self) -> bool;

    // Responses.

    /// Tokens a `usage` object reports (OpenAI and Anthropic shapes alike).
    fn usage_tokens(&self, u: &Value) -> Option<u32> {
        let total = count(u, "total_tokens")
            .or_else(|| Some(count(u, "prompt_tokens")? + count(u, "completion_tokens")?))
            .or_else(|| Some(count(u, "input_tokens").unwrap_or(0) + count(u, "output_tokens")?))?;
        u32::try_from(total).ok()
    }
    /// A fresh filter state for one streamed response.
    fn stream_schema(&self) -> Box<dyn StreamSchema>;
    /// Filters a whole response body through the schema; `None` when it is not the protocol's
    /// response shape at all.
    fn filter_body(&self, body: Value, m: &mut dyn ModelOutput) -> Option<Value>;
    /// The error event that ends a stream the gateway cut off.
    fn error_event(&self, code: &str, message: &str) -> SseEvent;
}

/// What a stream schema says after one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Open,
    /// The origin finished the answer.
    Complete,
    /// A block ended the stream; the protocol's content-filter ending has been written.
    Blocked,
    /// The origin reported an error mid-stream (passed on, filtered).
    UpstreamError,
    /// The event cannot be read: the stream is cut off with this message.
    Malformed(&'static str),
}

/// One streamed response's filter state, per protocol.
pub trait StreamSchema {
    /// Filters one origin event, writing what may be sent to `out`.
    fn event(&mut self, ev: SseEvent, m: &mut dyn ModelOutput, out: &mut Vec<u8>) -> Flow;
    /// Keeps usage-only events (asked for by the gateway, not the client) from the client.
    fn hide_usage(&mut self);
    /// The usage the origin reported.
    fn usage(&self) -> Option<&Value>;
}

impl Protocol {
    /// Every protocol the gateway speaks.
    pub const ALL: [Protocol; 3] = [
        Protocol::OpenAiChat,
        Protocol::AnthropicMessages,
        Protocol::OpenAiResponses,
    ];

    /// The protocol's wire description.
    pub fn wire(self) -> &'static dyn Wire {
        match self {
            Protocol::OpenAiChat => &super::openai_chat::OpenAiChat,
            Protocol::AnthropicMessages => &super::anthropic::Anthropic,
            Protocol::OpenAiResponses => &super::responses::Responses,
        }
    }
}

/// A whole number in a usage object.
pub(crate) fn count(u: &Value, k: &str) -> Option<u64> {
    u.get(k).and_then(Value::as_u64)
}

/// The output layer's side of a response schema: what happens to each model-controlled value
/// the protocol finds. Streamed text travels on named channels (one per choice field, tool call
/// or content block), each with its own streaming redactor; everything else a response may carry
/// is either structural (checked here, in the protocol files) or dropped.
pub trait ModelOutput {
    /// Text the model wrote on `channel`; returns what may be sent now (the rest is held).
    fn stream(&mut self, channel: &str, text: &str) -> String;
    /// Log-probability entries describing exactly the text last streamed on `channel`; returns
    /// the entries that may be sent now (earlier held ones included). An entry is sent only once
    /// the text it spells has been released unchanged; entries over redacted or blocked text
    /// are dropped, as are entries that do not spell the text they claim to.
    fn logprobs(&mut self, channel: &str, entries: Vec<Value>) -> Vec<Value>;
    /// Ends a channel: the text still held, and the log-probability entries still held.
    fn finish(&mut self, channel: &str) -> (String, Vec<Value>);
    /// Whether text is held on `channel`.
    fn holding(&self, channel: &str) -> bool;
    /// A short model-written value judged whole (names, ids, URLs, titles, object keys).
    fn whole(&mut self, text: &str) -> String;
    /// A tool the model calls; `false` when the key may not call it (the response is cut).
    fn tool(&mut self, name: &str) -> bool;
    /// A field outside the schema was dropped (`path` names it, never its value).
    fn dropped(&mut self, path: &str);
    /// A `block` action fired: the protocol ends the response.
    fn blocked(&self) -> bool;
}

/// Builds a filtered copy of one JSON object: known fields are moved over (structural ones
/// only with the expected type and shape, model-written ones through [`ModelOutput`]); what is
/// left in the source when [`Pick::done`] is called is dropped and reported.
pub(crate) struct Pick<'p> {
    src: Map<String, Value>,
    pub out: Map<String, Value>,
    path: &'p str,
}

impl<'p> Pick<'p> {
    pub fn new(src: Map<String, Value>, path: &'p str) -> Self {
        Pick {
            src,
            out: Map::new(),
            path,
        }
    }

    /// Takes a field out for custom handling (`None` when absent).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.src.remove(key)
    }

    /// Moves `key` over if `ok` accepts it (`null` is always accepted); reports it otherwise.
    pub fn check(&mut self, key: &str, ok: impl Fn(&Value) -> bool, m: &mut dyn ModelOutput) {
        if let Some(v) = self.src.remove(key) {
            if v.is_null() || ok(&v) {
                self.out.insert(key.into(), v);
            } else {
                m.dropped(&format!("{}.{key}", self.path));
            }
        }
    }

    /// A short model-written string (or an origin-written label such as an id, or an opaque
    /// value such as a signature), judged whole; integers pass.
    pub fn whole(&mut self, key: &str, m: &mut dyn ModelOutput) {
        match self.src.remove(key) {
            Some(v) if int(&v) => {
                self.out.insert(key.into(), v);
            }
            Some(Value::String(s)) => {
                let f = m.whole(&s);
                self.out.insert(key.into(), Value::String(f));
            }
            Some(Value::Null) => {
                self.out.insert(key.into(), Value::Null);
            }
            Some(_) => m.dropped(&format!("{}.{key}", self.path)),
            None => {}
        }
    }

    /// Puts a value in the output.
    pub fn put(&mut self, key: &str, v: Value) {
        self.out.insert(key.into(), v);
    }

    /// Reports every field not moved over and returns the filtered object.
    pub fn done(self, m: &mut dyn ModelOutput) -> Map<String, Value> {
        for k in self.src.keys() {
            m.dropped(&format!("{}.{k}", self.path));
        }
        self.out
    }
}

/// A label an origin writes (ids, model names, fingerprints): printable ASCII without spaces or
/// quotes, at most 256 bytes.
pub(crate) fn label(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    })
}

/// One of a fixed set of strings (an enum of the protocol).
pub(crate) fn one_of(allowed: &'static [&'static str]) -> impl Fn(&Value) -> bool {
    move |v| v.as_str().is_some_and(|s| allowed.contains(&s))
}

pub(crate) fn int(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}

/// A usage or similar counters object: numbers, and objects of numbers one level down; short
/// labels (`service_tier`) pass as labels. Anything else is dropped.
pub(crate) fn counters(v: Value, path: &str, m: &mut dyn ModelOutput) -> Option<Value> {
    let Value::Object(src) = v else {
        if !v.is_null() {
            m.dropped(path);
        }
        return None;
    };
    let mut out = Map::new();
    for (k, v) in src {
        match v {
            Value::Number(_) | Value::Null => {
                out.insert(k, v);
            }
            Value::String(s) => {
                let f = m.whole(&s);
                out.insert(k, Value::String(f));
            }
            Value::Object(inner) => {
                let mut o = Map::new();
                for (ik, iv) in inner {
                    if iv.is_number() || iv.is_null() {
                        o.insert(ik, iv);
                    } else {
                        m.dropped(&format!("{path}.{k}.{ik}"));
                    }
                }
                out.insert(k, Value::Object(o));
            }
            _ => m.dropped(&format!("{path}.{k}")),
        }
    }
    Some(Value::Object(out))
}

/// Filters every key and string value of a model-written JSON object (tool inputs) whole.
pub(crate) fn model_json(v: Value, m: &mut dyn ModelOutput) -> Value {
    match v {
        Value::String(s) => Value::String(m.whole(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| model_json(x, m)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (m.whole(&k), model_json(x, m)))
                .collect(),
        ),
        other => other,
    }
}
