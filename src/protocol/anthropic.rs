//! Anthropic messages (`POST /v1/messages`): where requests carry text and tools, and where
//! whole responses carry model text, tool inputs and usage.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::sse::SseEvent;
use super::wire::{self, Wire};
use super::wire::{
    counters, int, label, model_json, one_of, Flow, ModelOutput, Pick, StreamSchema,
};

/// Why a message stopped.
const STOP_REASONS: &[&str] = &[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
];
/// Where a citation points.
const CITATION_TYPES: &[&str] = &[
    "char_location",
    "page_location",
    "content_block_location",
    "web_search_result_location",
    "search_result_location",
];

pub struct Anthropic;

impl Wire for Anthropic {
    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn origin(&self) -> &'static str {
        "anthropic"
    }

    fn stream_usage_option(&self) -> bool {
        // Anthropic streams always report usage (`message_start`, `message_delta`).
        false
    }

    fn stream_schema(&self) -> Box<dyn StreamSchema> {
        Box::new(AnthropicStream::default())
    }

    fn filter_body(&self, body: Value, m: &mut dyn ModelOutput) -> Option<Value> {
        filter_message(body, m)
    }

    fn error_event(&self, _code: &str, message: &str) -> SseEvent {
        SseEvent::named(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": message}})
                .to_string(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Responses, default-deny. Each content block is one channel of model text (`b<index>`);
// structural fields pass with the expected type; unknown events, blocks, deltas and fields are
// dropped.

/// What a content block carries, which decides how its held text is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
    /// `input_json_delta` of a tool call.
    ToolJson,
    /// No streamed text (`redacted_thinking`): passes as it came.
    Opaque,
    /// A block type outside the schema: its start, deltas and stop are dropped.
    Dropped,
}

impl Kind {
    /// The delta type and field that carry this block's text.
    fn delta(self) -> Option<(&'static str, &'static str)> {
        match self {
            Kind::Text => Some(("text_delta", "text")),
            Kind::Thinking => Some(("thinking_delta", "thinking")),
            Kind::ToolJson => Some(("input_json_delta", "partial_json")),
            Kind::Opaque | Kind::Dropped => None,
        }
    }
}

fn channel(index: u64) -> String {
    format!("b{index}")
}

/// Fields of a citation: positions and ids pass, text is judged whole.
fn citation(v: Value, m: &mut dyn ModelOutput) -> Option<Value> {
    let Value::Object(src) = v else {
        m.dropped("citations[]");
        return None;
    };
    let mut p = Pick::new(src, "citations[]");
    p.check("type", one_of(CITATION_TYPES), m);
    for k in [
        "document_index",
        "start_char_index",
        "end_char_index",
        "start_page_number",
        "end_page_number",
        "start_block_index",
        "end_block_index",
        "search_result_index",
    ] {
        p.check(k, int, m);
    }
    for k in [
        "file_id",
        "encrypted_index",
        "cited_text",
        "document_title",
        "url",
        "title",
        "source",
    ] {
        p.whole(k, m);
    }
    Some(Value::Object(p.done(m)))
}

fn citations(v: Value, m: &mut dyn ModelOutput) -> Value {
    match v {
        Value::Array(list) => {
            Value::Array(list.into_iter().filter_map(|c| citation(c, m)).collect())
        }
        Value::Null => Value::Null,
        _ => {
            m.dropped("citations");
            Value::Null
        }
    }
}

/// Filters a content block (whole, or the start of a streamed one). Text starts the block's
/// channel; `whole` also finishes it. `None` when the block is dropped or its tool refused.
fn block(v: Value, index: u64, m: &mut dyn ModelOutput, whole: bool) -> Option<(Kind, Value)> {
    let Value::Object(src) = v else {
        m.dropped("content[]");
        return None;
    };
    let kind = match src.get("type").and_then(Value::as_str) {
        Some("text") => Kind::Text,
        Some("thinking") => Kind::Thinking,
        Some("tool_use") | Some("server_tool_use") => Kind::ToolJson,
        Some("redacted_thinking") => Kind::Opaque,
        Some(other) => {
            m.dropped(&format!("content[].type={}", wire::type_name(other)));
            return Some((Kind::Dropped, Value::Null));
        }
        None => {
            m.dropped("content[]");
            return Some((Kind::Dropped, Value::Null));
        }
    };
    let mut p = Pick::new(src, "content[]");
    p.check("type", label, m);
    let stream = |p: &mut Pick<'_>, field: &str, m: &mut dyn ModelOutput| match p.take(field) {
        Some(Value::String(t)) => {
            let ch = channel(index);
            let mut o = m.stream(&ch, &t);
            if whole {
                o.push_str(&m.finish(&ch).0);
            }
            p.put(field, Value::String(o));
        }
        Some(_) => m.dropped(&format!("content[].{field}")),
        None => {}
    };
    match kind {
        Kind::Text => {
            stream(&mut p, "text", m);
            if let Some(c) = p.take("citations") {
                let c = citations(c, m);
                p.put("citations", c);
            }
        }
        Kind::Thinking => {
            stream(&mut p, "thinking", m);
            // The signature is opaque to the client and verified by the origin; judged whole
            // like any string a response carries.
            p.whole("signature", m);
        }
        Kind::Opaque => p.whole("data", m),
        Kind::ToolJson => {
            p.whole("id", m);
            match p.take("name") {
                Some(Value::String(n)) => {
                    if !m.tool(&n) {
                        return None;
                    }
                    p.put("name", Value::String(m.whole(&n)));
                }
                Some(_) => m.dropped("content[].name"),
                None => {}
            }
            if let Some(input) = p.take("input") {
                p.put("input", model_json(input, m));
            }
        }
        Kind::Dropped => {}
    }
    Some((kind, Value::Object(p.done(m))))
}

/// The message envelope (a whole response, or `message_start`'s message).
fn message(src: Map<String, Value>, m: &mut dyn ModelOutput, whole: bool) -> Map<String, Value> {
    let mut p = Pick::new(src, "message");
    p.whole("id", m);
    p.check("type", one_of(&["message"]), m);
    p.check("role", one_of(&["assistant"]), m);
    p.whole("model", m);
    p.check("stop_reason", one_of(STOP_REASONS), m);
    p.whole("stop_sequence", m);
    if let Some(u) = p.take("usage") {
        p.put("usage", counters(u, "usage", m).unwrap_or(Value::Null));
    }
    match p.take("content") {
        Some(Value::Array(blocks)) => {
            let mut out = Vec::new();
            for (i, b) in blocks.into_iter().enumerate() {
                // Blocks in a message_start are complete: judged whole on channels of their own.
                let index = if whole {
                    i as u64
                } else {
                    1_000_000 + i as u64
                };
                if let Some((kind, v)) = block(b, index, m, true) {
                    if kind != Kind::Dropped {
                        out.push(v);
                    }
                }
                if m.blocked() {
                    break;
                }
            }
            p.put("content", Value::Array(out));
        }
        Some(_) => m.dropped("message.content"),
        None => {}
    }
    p.done(m)
}

/// Filters a whole Messages response.
fn filter_message(body: Value, m: &mut dyn ModelOutput) -> Option<Value> {
    let Value::Object(src) = body else {
        return None;
    };
    if !src.get("content").is_some_and(Value::is_array) {
        return None;
    }
    Some(Value::Object(message(src, m, true)))
}

/// The state of one streamed Messages response.
#[derive(Default)]
pub struct AnthropicStream {
    kinds: BTreeMap<u64, Kind>,
    usage: Option<Value>,
}

fn write(name: &str, v: &Value, out: &mut Vec<u8>) {
    SseEvent::named(name, v.to_string()).write(out);
}

impl AnthropicStream {
    /// Writes a block's held text as a delta of the block's own kind.
    fn flush(&mut self, index: u64, m: &mut dyn ModelOutput, out: &mut Vec<u8>) {
        let Some((delta_type, field)) = self.kinds.get(&index).and_then(|k| k.delta()) else {
            return;
        };
        let (o, _) = m.finish(&channel(index));
        if !o.is_empty() && !m.blocked() {
            write(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": delta_type, field: o}}),
                out,
            );
        }
    }

    /// Ends the message cleanly after a block: the open block stops, `stop_reason: refusal`.
    fn block(&mut self, index: Option<u64>, out: &mut Vec<u8>) -> Flow {
        if let Some(index) = index {
            write(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
                out,
            );
        }
        write(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": "refusal", "stop_sequence": Value::Null},
                    "usage": {"output_tokens": 0}}),
            out,
        );
        write("message_stop", &json!({"type": "message_stop"}), out);
        Flow::Blocked
    }

    fn delta(&mut self, index: u64, d: Value, m: &mut dyn ModelOutput, out: &mut Vec<u8>) {
        let kind = self.kinds.get(&index).copied();
        let Value::Object(src) = d else {
            m.dropped("content_block_delta.delta");
            return;
        };
        let dtype = src
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let expected = kind.and_then(Kind::delta);
        let mut p = Pick::new(src, "content_block_delta.delta");
        match (dtype.as_str(), expected) {
            (t, Some((want, field))) if t == want => {
                p.check("type", label, m);
                match p.take(field) {
                    Some(Value::String(s)) => {
                        let o = m.stream(&channel(index), &s);
                        if o.is_empty() {
                            // Everything is held: an empty delta carries nothing.
                            p.done(m);
                            return;
                        }
                        p.put(field, Value::String(o));
                    }
                    _ => m.dropped(&format!("content_block_delta.delta.{field}")),
                }
            }
            ("signature_delta", Some(_)) if kind == Some(Kind::Thinking) => {
                // The held end of the thinking goes out as thinking, before its signature.
                self.flush(index, m, out);
                if m.blocked() {
                    return;
                }
                p.check("type", label, m);
                p.whole("signature", m);
            }
            ("citations_delta", Some(_)) if kind == Some(Kind::Text) => {
                p.check("type", label, m);
                if let Some(c) = p.take("citation") {
                    match citation(c, m) {
                        Some(c) => p.put("citation", c),
                        None => return,
                    }
                }
            }
            _ => {
                m.dropped(&format!(
                    "content_block_delta.delta.type={}",
                    wire::type_name(&dtype)
                ));
                return;
            }
        }
        let delta = p.done(m);
        write(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            out,
        );
    }
}

impl StreamSchema for AnthropicStream {
    fn event(&mut self, ev: SseEvent, m: &mut dyn ModelOutput, out: &mut Vec<u8>) -> Flow {
        let Ok(Value::Object(src)) = serde_json::from_str::<Value>(&ev.data) else {
            return Flow::Malformed("The AI origin sent an event the gateway cannot parse.");
        };
        let kind = src
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let index = src.get("index").and_then(Value::as_u64);
        let mut p = Pick::new(src, "event");
        p.check("type", label, m);
        p.check("index", int, m);
        let mut flow = Flow::Open;
        match kind.as_str() {
            "message_start" => {
                match p.take("message") {
                    Some(Value::Object(msg)) => {
                        let msg = message(msg, m, false);
                        if let Some(u) = msg.get("usage") {
                            self.usage = Some(u.clone());
                        }
                        p.put("message", Value::Object(msg));
                    }
                    _ => {
                        return Flow::Malformed(
                            "The AI origin sent a message_start without a message.",
                        )
                    }
                }
                if m.blocked() {
                    return self.block(None, out);
                }
                write("message_start", &Value::Object(p.done(m)), out);
            }
            "content_block_start" => {
                let Some(index) = index else {
                    return Flow::Malformed("The AI origin sent a block without an index.");
                };
                let b = p.take("content_block").unwrap_or(Value::Null);
                match block(b, index, m, false) {
                    None => return self.block(Some(index), out),
                    Some((Kind::Dropped, _)) => {
                        self.kinds.insert(index, Kind::Dropped);
                        return Flow::Open;
                    }
                    Some((k, v)) => {
                        self.kinds.insert(index, k);
                        p.put("content_block", v);
                    }
                }
                if m.blocked() {
                    return self.block(Some(index), out);
                }
                write("content_block_start", &Value::Object(p.done(m)), out);
            }
            "content_block_delta" => {
                let Some(index) = index else {
                    return Flow::Malformed("The AI origin sent a delta without an index.");
                };
                match self.kinds.get(&index) {
                    None => return Flow::Malformed("The AI origin sent a delta for no block."),
                    Some(Kind::Dropped) => return Flow::Open,
                    Some(_) => {}
                }
                let d = p.take("delta").unwrap_or(Value::Null);
                p.done(m);
                self.delta(index, d, m, out);
                if m.blocked() {
                    return self.block(Some(index), out);
                }
            }
            "content_block_stop" => {
                let Some(index) = index else {
                    return Flow::Malformed("The AI origin sent a block stop without an index.");
                };
                if self.kinds.get(&index) == Some(&Kind::Dropped) {
                    return Flow::Open;
                }
                self.flush(index, m, out);
                if m.blocked() {
                    return self.block(Some(index), out);
                }
                write("content_block_stop", &Value::Object(p.done(m)), out);
            }
            "message_delta" => {
                match p.take("delta") {
                    Some(Value::Object(d)) => {
                        let mut dp = Pick::new(d, "message_delta.delta");
                        dp.check("stop_reason", one_of(STOP_REASONS), m);
                        dp.whole("stop_sequence", m);
                        let d = dp.done(m);
                        p.put("delta", Value::Object(d));
                    }
                    Some(_) => m.dropped("message_delta.delta"),
                    None => {}
                }
                if let Some(u) = p.take("usage") {
                    let u = counters(u, "usage", m).unwrap_or(Value::Null);
                    if !u.is_null() {
                        self.usage = Some(u.clone());
                    }
                    p.put("usage", u);
                }
                if m.blocked() {
                    return self.block(None, out);
                }
                write("message_delta", &Value::Object(p.done(m)), out);
            }
            "message_stop" => {
                write("message_stop", &Value::Object(p.done(m)), out);
                flow = Flow::Complete;
            }
            "ping" => write("ping", &Value::Object(p.done(m)), out),
            "error" => {
                if let Some(e) = p.take("error") {
                    let e = match e {
                        Value::Object(e) => {
                            let mut ep = Pick::new(e, "error");
                            ep.whole("type", m);
                            ep.whole("message", m);
                            Value::Object(ep.done(m))
                        }
                        _ => {
                            json!({"type": "api_error", "message": "The AI origin reported an error."})
                        }
                    };
                    p.put("error", e);
                }
                write("error", &Value::Object(p.done(m)), out);
                flow = Flow::UpstreamError;
            }
            other => {
                m.dropped(&format!("event.type={}", wire::type_name(other)));
            }
        }
        flow
    }

    fn hide_usage(&mut self) {}

    fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
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
        assert_eq!(w.tool_name(&json!({"name": "t"})), Some("t"));
    }
}
