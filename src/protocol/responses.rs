//! The OpenAI Responses API (`POST /v1/responses`): where requests carry text and tools, and a
//! default-deny schema for responses and their typed stream events.
//!
//! Output items kept: `message` (`output_text` and `refusal` parts), `function_call`, and
//! `reasoning` (summaries and reasoning text); other item types (built-in tool calls) are
//! dropped and the `output_index` of the rest renumbered, so clients that index their snapshot
//! by it stay consistent. Text arrives on channels `<item>.<part>` (message parts),
//! `<item>.args` (function arguments), `<item>.s<n>` (summaries) and `<item>.r<n>` (reasoning
//! text). The `.done` events and `response.completed` repeat the whole text; it is redacted in
//! one shot, which equals the streamed deltas joined (the redactor's streaming guarantee).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::sse::SseEvent;
use super::wire::{self, count, counters, int, model_json, one_of, Speaker, Wire};
use super::wire::{Flow, ModelOutput, Pick, StreamSchema};

pub struct Responses;

/// Statuses of a response and of its items.
const STATUSES: &[&str] = &[
    "completed",
    "failed",
    "in_progress",
    "cancelled",
    "queued",
    "incomplete",
];

impl Wire for Responses {
    fn path(&self) -> &'static str {
        "/v1/responses"
    }

    fn system_fields(&self) -> &'static [&'static str] {
        &["instructions"]
    }

    fn messages_field(&self) -> &'static str {
        "input"
    }

    fn speaker(&self, role: &str) -> Speaker {
        match role {
            "system" | "developer" => Speaker::System,
            "assistant" => Speaker::Assistant,
            _ => Speaker::User,
        }
    }

    fn message_structural(&self, field: &str) -> bool {
        matches!(field, "role" | "type" | "id" | "call_id" | "status")
    }

    fn structural(&self, field: &str) -> bool {
        matches!(
            field,
            "type"
                | "role"
                | "id"
                | "call_id"
                | "status"
                | "cache_control"
                | "media_type"
                | "previous_response_id"
                | "encrypted_content"
        )
    }

    fn tool_result_block(&self, block_type: &str) -> bool {
        matches!(block_type, "function_call_output" | "tool_result")
    }

    fn tool_lists(&self) -> &'static [&'static str] {
        &["tools"]
    }

    fn tool_name<'v>(&self, tool: &'v Value) -> Option<&'v str> {
        // Function tools by name; built-in tools (web_search, file_search, ...) by their type.
        tool.get("name")
            .or_else(|| tool.get("type"))
            .and_then(Value::as_str)
    }

    fn forced_tool<'v>(&self, choice: &'v Value) -> Option<&'v str> {
        choice.get("name").and_then(Value::as_str)
    }

    fn completion_limit_fields(&self) -> &'static [&'static str] {
        &["max_output_tokens"]
    }

    fn prompt_fields(&self) -> &'static [&'static str] {
        &["input", "instructions", "tools"]
    }

    fn stream_usage_option(&self) -> bool {
        // `response.completed` always carries the usage.
        false
    }

    fn stream_schema(&self) -> Box<dyn StreamSchema> {
        Box::new(ResponsesStream::default())
    }

    fn filter_body(&self, body: Value, m: &mut dyn ModelOutput) -> Option<Value> {
        let Value::Object(src) = body else {
            return None;
        };
        if !src.get("output").is_some_and(Value::is_array) {
            return None;
        }
        Some(Value::Object(response(src, m, &mut BTreeMap::new())))
    }

    fn usage_tokens(&self, u: &Value) -> Option<u32> {
        let total = count(u, "total_tokens")
            .or_else(|| Some(count(u, "input_tokens").unwrap_or(0) + count(u, "output_tokens")?))?;
        u32::try_from(total).ok()
    }

    fn error_event(&self, code: &str, message: &str) -> SseEvent {
        SseEvent::named(
            "error",
            json!({"type": "error", "code": code, "message": message, "param": Value::Null})
                .to_string(),
        )
    }
}

/// Redacts a whole text in one shot (a `.done` event's or a completed item's).
fn once(m: &mut dyn ModelOutput, channel: &str, text: &str) -> String {
    let mut o = m.stream(channel, text);
    o.push_str(&m.finish(channel).0);
    o
}

/// An object and its `type` (empty when it has none); anything else is dropped.
fn typed(v: Value, path: &str, m: &mut dyn ModelOutput) -> Option<(String, Map<String, Value>)> {
    let Value::Object(src) = v else {
        m.dropped(path);
        return None;
    };
    let kind = src
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((kind, src))
}

/// A text part of a message (`output_text` or `refusal`), judged whole.
fn part(v: Value, ch: &str, m: &mut dyn ModelOutput) -> Option<Value> {
    let (kind, src) = typed(v, "content[]", m)?;
    let mut p = Pick::new(src, "content[]");
    match kind.as_str() {
        "output_text" => {
            p.check("type", one_of(&["output_text"]), m);
            if let Some(Value::String(t)) = p.take("text") {
                p.put("text", Value::String(once(m, ch, &t)));
                // Log-probabilities of the whole text: sent only for text that passed unchanged.
                if let Some(Value::Array(lp)) = p.take("logprobs") {
                    p.put("logprobs", Value::Array(m.logprobs(ch, lp)));
                }
            }
            if let Some(a) = p.take("annotations") {
                p.put("annotations", annotations(a, m));
            }
        }
        "refusal" => {
            p.check("type", one_of(&["refusal"]), m);
            if let Some(Value::String(t)) = p.take("refusal") {
                p.put("refusal", Value::String(once(m, ch, &t)));
            }
        }
        _ => {
            m.dropped("content[].type");
            return None;
        }
    }
    Some(Value::Object(p.done(m)))
}

/// URL and file citations: positions pass, text is judged whole.
fn annotations(v: Value, m: &mut dyn ModelOutput) -> Value {
    let Value::Array(list) = v else {
        return Value::Array(Vec::new());
    };
    Value::Array(
        list.into_iter()
            .filter_map(|a| {
                let Value::Object(src) = a else {
                    return None;
                };
                let mut p = Pick::new(src, "annotations[]");
                p.check(
                    "type",
                    one_of(&[
                        "url_citation",
                        "file_citation",
                        "container_file_citation",
                        "file_path",
                    ]),
                    m,
                );
                for k in ["start_index", "end_index", "index"] {
                    p.check(k, int, m);
                }
                for k in ["url", "title", "file_id", "filename", "container_id"] {
                    p.whole(k, m);
                }
                Some(Value::Object(p.done(m)))
            })
            .collect(),
    )
}

/// One output item, judged whole; `None` when its type is outside the schema or its tool is
/// refused. `key` names its channels.
fn item(v: Value, key: &str, m: &mut dyn ModelOutput) -> Option<Value> {
    let (kind, src) = typed(v, "output[]", m)?;
    let mut p = Pick::new(src, "output[]");
    p.check(
        "type",
        one_of(&["message", "function_call", "reasoning"]),
        m,
    );
    p.whole("id", m);
    p.check("status", one_of(STATUSES), m);
    match kind.as_str() {
        "message" => {
            p.check("role", one_of(&["assistant"]), m);
            if let Some(Value::Array(parts)) = p.take("content") {
                let kept: Vec<Value> = parts
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, x)| part(x, &format!("{key}.{i}"), m))
                    .collect();
                p.put("content", Value::Array(kept));
            }
        }
        "function_call" => {
            p.whole("call_id", m);
            match p.take("name") {
                Some(Value::String(n)) => {
                    if !m.tool(&n) {
                        return None;
                    }
                    p.put("name", Value::String(m.whole(&n)));
                }
                Some(_) => m.dropped("output[].name"),
                None => {}
            }
            if let Some(Value::String(a)) = p.take("arguments") {
                p.put(
                    "arguments",
                    Value::String(once(m, &format!("{key}.args"), &a)),
                );
            }
        }
        "reasoning" => {
            p.whole("encrypted_content", m);
            for (field, tag) in [("summary", "s"), ("content", "r")] {
                if let Some(Value::Array(parts)) = p.take(field) {
                    let kept: Vec<Value> = parts
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, x)| {
                            let Value::Object(src) = x else { return None };
                            let mut pp = Pick::new(src, "reasoning part");
                            pp.check("type", one_of(&["summary_text", "reasoning_text"]), m);
                            if let Some(Value::String(t)) = pp.take("text") {
                                let ch = format!("{key}.{tag}{i}");
                                pp.put("text", Value::String(once(m, &ch, &t)));
                            }
                            Some(Value::Object(pp.done(m)))
                        })
                        .collect();
                    p.put(field, Value::Array(kept));
                }
            }
        }
        _ => return None,
    }
    Some(Value::Object(p.done(m)))
}

/// A response object (a whole body, or the one `response.*` lifecycle events carry). `seen`
/// maps the origin's output indices to the client's, for items already announced.
fn response(
    src: Map<String, Value>,
    m: &mut dyn ModelOutput,
    renumber: &mut BTreeMap<u64, u64>,
) -> Map<String, Value> {
    let mut p = Pick::new(src, "response");
    p.whole("id", m);
    p.check("object", one_of(&["response"]), m);
    p.check("created_at", |v| v.is_number(), m);
    p.check("status", one_of(STATUSES), m);
    p.whole("model", m);
    p.whole("previous_response_id", m);
    p.whole("instructions", m);
    p.check("store", |v| v.is_boolean(), m);
    p.check("parallel_tool_calls", |v| v.is_boolean(), m);
    p.check("temperature", |v| v.is_number(), m);
    p.check("top_p", |v| v.is_number(), m);
    p.check("max_output_tokens", int, m);
    if let Some(u) = p.take("usage") {
        p.put("usage", counters(u, "usage", m).unwrap_or(Value::Null));
    }
    match p.take("incomplete_details") {
        Some(Value::Object(d)) => {
            let mut dp = Pick::new(d, "incomplete_details");
            dp.check(
                "reason",
                one_of(&["max_output_tokens", "content_filter"]),
                m,
            );
            p.put("incomplete_details", Value::Object(dp.done(m)));
        }
        Some(Value::Null) => p.put("incomplete_details", Value::Null),
        Some(_) => m.dropped("response.incomplete_details"),
        None => {}
    }
    match p.take("error") {
        Some(Value::Object(e)) => {
            let mut ep = Pick::new(e, "error");
            ep.whole("code", m);
            ep.whole("message", m);
            p.put("error", Value::Object(ep.done(m)));
        }
        Some(Value::Null) => p.put("error", Value::Null),
        Some(_) => m.dropped("response.error"),
        None => {}
    }
    if let Some(Value::Array(items)) = p.take("output") {
        let mut out = Vec::new();
        for (i, x) in items.into_iter().enumerate() {
            if let Some(v) = item(x, &format!("w{i}"), m) {
                renumber.insert(i as u64, out.len() as u64);
                out.push(v);
            }
            if m.blocked() {
                break;
            }
        }
        p.put("output", Value::Array(out));
    }
    if let Some(md) = p.take("metadata") {
        p.put("metadata", model_json(md, m));
    }
    p.done(m)
}

/// What an output item streams: which kinds of delta it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Message,
    FunctionCall,
    Reasoning,
}

/// The state of one streamed response.
#[derive(Default)]
pub struct ResponsesStream {
    /// Origin output index -> (client output index, kind) for items kept.
    items: BTreeMap<u64, (u64, ItemKind)>,
    /// Origin output indices of items dropped.
    dropped_items: Vec<u64>,
    /// Per kept item: origin content index -> client content index, for message parts kept.
    parts: BTreeMap<(u64, u64), u64>,
    next_item: u64,
    /// Sequence numbers of the events the client receives.
    seq: u64,
    /// The id and model of the response, for the ending the gateway writes itself.
    id: Option<Value>,
    model: Option<Value>,
    usage: Option<Value>,
}

impl ResponsesStream {
    fn write(&mut self, mut v: Map<String, Value>, out: &mut Vec<u8>) {
        v.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        let name = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_string();
        SseEvent::named(&name, Value::Object(v).to_string()).write(out);
    }

    /// Ends a blocked stream: `response.incomplete` with `content_filter` as the reason.
    fn block(&mut self, out: &mut Vec<u8>) -> Flow {
        let mut resp = Map::new();
        if let Some(id) = &self.id {
            resp.insert("id".into(), id.clone());
        }
        resp.insert("object".into(), json!("response"));
        resp.insert("status".into(), json!("incomplete"));
        resp.insert(
            "incomplete_details".into(),
            json!({"reason": "content_filter"}),
        );
        if let Some(model) = &self.model {
            resp.insert("model".into(), model.clone());
        }
        resp.insert("output".into(), json!([]));
        let mut ev = Map::new();
        ev.insert("type".into(), json!("response.incomplete"));
        ev.insert("response".into(), Value::Object(resp));
        self.write(ev, out);
        Flow::Blocked
    }

    /// Flushes the held text of a channel as one more delta event of `delta_type`.
    fn flush(
        &mut self,
        ch: &str,
        delta_type: &str,
        base: &Map<String, Value>,
        m: &mut dyn ModelOutput,
        out: &mut Vec<u8>,
    ) {
        let (o, lp) = m.finish(ch);
        if o.is_empty() && lp.is_empty() || m.blocked() {
            return;
        }
        let mut ev = base.clone();
        ev.insert("type".into(), json!(delta_type));
        ev.insert("delta".into(), Value::String(o));
        if delta_type == "response.output_text.delta" {
            ev.insert("logprobs".into(), Value::Array(lp));
        }
        self.write(ev, out);
    }

    fn announce(&mut self, origin: u64, kind: ItemKind) -> u64 {
        let client = self.next_item;
        self.next_item += 1;
        self.items.insert(origin, (client, kind));
        client
    }
}

impl StreamSchema for ResponsesStream {
    fn event(&mut self, ev: SseEvent, m: &mut dyn ModelOutput, out: &mut Vec<u8>) -> Flow {
        let Ok(Value::Object(src)) = serde_json::from_str::<Value>(&ev.data) else {
            return Flow::Malformed("The AI origin sent an event the gateway cannot parse.");
        };
        let kind = src
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let origin_index = src.get("output_index").and_then(Value::as_u64);
        if origin_index.is_some_and(|i| self.dropped_items.contains(&i)) {
            return Flow::Open;
        }
        let mut p = Pick::new(src, "event");
        p.check("type", |v| v.is_string(), m);
        p.take("sequence_number");
        let mut flow = Flow::Open;
        match kind.as_str() {
            "response.created"
            | "response.in_progress"
            | "response.completed"
            | "response.incomplete"
            | "response.failed"
            | "response.queued" => {
                match p.take("response") {
                    Some(Value::Object(r)) => {
                        let mut renumber = BTreeMap::new();
                        let r = response(r, m, &mut renumber);
                        if let Some(id) = r.get("id") {
                            self.id = Some(id.clone());
                        }
                        if let Some(model) = r.get("model") {
                            self.model = Some(model.clone());
                        }
                        if let Some(u) = r.get("usage").filter(|u| !u.is_null()) {
                            self.usage = Some(u.clone());
                        }
                        p.put("response", Value::Object(r));
                    }
                    _ => {
                        return Flow::Malformed("The AI origin sent an event without its response.")
                    }
                }
                if m.blocked() {
                    return self.block(out);
                }
                if kind != "response.created"
                    && kind != "response.in_progress"
                    && kind != "response.queued"
                {
                    flow = if kind == "response.completed" {
                        Flow::Complete
                    } else {
                        Flow::UpstreamError
                    };
                }
                let ev = p.done(m);
                self.write(ev, out);
                return flow;
            }
            "response.output_item.added" | "response.output_item.done" => {
                let Some(oi) = origin_index else {
                    return Flow::Malformed("The AI origin sent an item without its index.");
                };
                let raw = p.take("item").unwrap_or(Value::Null);
                let item_kind = match raw.get("type").and_then(Value::as_str) {
                    Some("message") => Some(ItemKind::Message),
                    Some("function_call") => Some(ItemKind::FunctionCall),
                    Some("reasoning") => Some(ItemKind::Reasoning),
                    _ => None,
                };
                let Some(item_kind) = item_kind else {
                    m.dropped("output_item.type");
                    self.dropped_items.push(oi);
                    return Flow::Open;
                };
                let client = match self.items.get(&oi) {
                    Some((c, _)) => *c,
                    None => self.announce(oi, item_kind),
                };
                // An added item is judged on channels of its own; the streamed text follows on
                // the item's delta channels.
                let tag = if kind.ends_with("added") { "a" } else { "d" };
                match item(raw, &format!("{tag}{oi}"), m) {
                    Some(v) => p.put("item", v),
                    None => return self.block(out),
                }
                p.put("output_index", json!(client));
            }
            "response.content_part.added" | "response.content_part.done" => {
                let (Some(oi), Some(ci)) = (
                    origin_index,
                    p.take("content_index").and_then(|v| v.as_u64()),
                ) else {
                    return Flow::Malformed("The AI origin sent a part without its indices.");
                };
                let Some((client, _)) = self.items.get(&oi).copied() else {
                    return Flow::Malformed("The AI origin sent a part for no item.");
                };
                let raw = p.take("part").unwrap_or(Value::Null);
                if !matches!(
                    raw.get("type").and_then(Value::as_str),
                    Some("output_text" | "refusal")
                ) {
                    m.dropped("content_part.type");
                    return Flow::Open;
                }
                let next = self.parts.keys().filter(|(i, _)| *i == oi).count() as u64;
                let client_part = *self.parts.entry((oi, ci)).or_insert(next);
                let tag = if kind.ends_with("added") { "pa" } else { "pd" };
                if let Some(v) = part(raw, &format!("{tag}{oi}.{ci}"), m) {
                    p.put("part", v);
                }
                p.whole("item_id", m);
                p.put("output_index", json!(client));
                p.put("content_index", json!(client_part));
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let (Some(oi), Some(ci)) = (
                    origin_index,
                    p.take("content_index").and_then(|v| v.as_u64()),
                ) else {
                    return Flow::Malformed("The AI origin sent a delta without its indices.");
                };
                let (Some((client, ItemKind::Message)), Some(cp)) = (
                    self.items.get(&oi).copied(),
                    self.parts.get(&(oi, ci)).copied(),
                ) else {
                    m.dropped("delta without its part");
                    return Flow::Open;
                };
                let ch = format!("{oi}.{ci}");
                p.whole("item_id", m);
                p.put("output_index", json!(client));
                p.put("content_index", json!(cp));
                let text = match p.take("delta") {
                    Some(Value::String(t)) => t,
                    _ => return Flow::Malformed("The AI origin sent a delta without text."),
                };
                let o = m.stream(&ch, &text);
                let lp = match p.take("logprobs") {
                    Some(Value::Array(entries)) => m.logprobs(&ch, entries),
                    _ => Vec::new(),
                };
                if m.blocked() {
                    if !o.is_empty() {
                        p.put("delta", Value::String(o));
                        let ev = p.done(m);
                        self.write(ev, out);
                    }
                    return self.block(out);
                }
                if o.is_empty() && lp.is_empty() {
                    p.done(m);
                    return Flow::Open;
                }
                p.put("delta", Value::String(o));
                if kind == "response.output_text.delta" {
                    p.put("logprobs", Value::Array(lp));
                }
            }
            "response.output_text.done" | "response.refusal.done" => {
                let (Some(oi), Some(ci)) = (
                    origin_index,
                    p.take("content_index").and_then(|v| v.as_u64()),
                ) else {
                    return Flow::Malformed("The AI origin sent a done event without its indices.");
                };
                let (Some((client, _)), Some(cp)) = (
                    self.items.get(&oi).copied(),
                    self.parts.get(&(oi, ci)).copied(),
                ) else {
                    m.dropped("done without its part");
                    return Flow::Open;
                };
                p.whole("item_id", m);
                p.put("output_index", json!(client));
                p.put("content_index", json!(cp));
                let ch = format!("{oi}.{ci}");
                let delta_type = if kind == "response.output_text.done" {
                    "response.output_text.delta"
                } else {
                    "response.refusal.delta"
                };
                let base = p.out.clone();
                self.flush(&ch, delta_type, &base, m, out);
                if m.blocked() {
                    return self.block(out);
                }
                let field = if kind == "response.output_text.done" {
                    "text"
                } else {
                    "refusal"
                };
                if let Some(Value::String(t)) = p.take(field) {
                    p.put(field, Value::String(once(m, &format!("done{oi}.{ci}"), &t)));
                }
                if let Some(Value::Array(_)) = p.take("logprobs") {
                    p.put("logprobs", json!([]));
                }
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                let Some(oi) = origin_index else {
                    return Flow::Malformed("The AI origin sent arguments without their index.");
                };
                let Some((client, ItemKind::FunctionCall)) = self.items.get(&oi).copied() else {
                    m.dropped("arguments without their item");
                    return Flow::Open;
                };
                p.whole("item_id", m);
                p.put("output_index", json!(client));
                let ch = format!("{oi}.args");
                if kind.ends_with("delta") {
                    let text = match p.take("delta") {
                        Some(Value::String(t)) => t,
                        _ => return Flow::Malformed("The AI origin sent a delta without text."),
                    };
                    let o = m.stream(&ch, &text);
                    if o.is_empty() && !m.blocked() {
                        p.done(m);
                        return Flow::Open;
                    }
                    p.put("delta", Value::String(o));
                } else {
                    let base = p.out.clone();
                    self.flush(&ch, "response.function_call_arguments.delta", &base, m, out);
                    if let Some(Value::String(a)) = p.take("arguments") {
                        p.put(
                            "arguments",
                            Value::String(once(m, &format!("done{oi}.args"), &a)),
                        );
                    }
                    if let Some(Value::String(n)) = p.take("name") {
                        p.put("name", Value::String(m.whole(&n)));
                    }
                }
            }
            "response.reasoning_summary_text.delta"
            | "response.reasoning_summary_text.done"
            | "response.reasoning_text.delta"
            | "response.reasoning_text.done"
            | "response.reasoning_summary_part.added"
            | "response.reasoning_summary_part.done" => {
                let Some(oi) = origin_index else {
                    return Flow::Malformed("The AI origin sent reasoning without its index.");
                };
                let Some((client, ItemKind::Reasoning)) = self.items.get(&oi).copied() else {
                    m.dropped("reasoning without its item");
                    return Flow::Open;
                };
                p.whole("item_id", m);
                p.put("output_index", json!(client));
                let summary = kind.contains("summary");
                let idx_field = if summary {
                    "summary_index"
                } else {
                    "content_index"
                };
                let idx = p.take(idx_field).and_then(|v| v.as_u64()).unwrap_or(0);
                p.put(idx_field, json!(idx));
                let ch = format!("{oi}.{}{idx}", if summary { "s" } else { "r" });
                if kind.ends_with("part.added") || kind.ends_with("part.done") {
                    if let Some(Value::Object(pt)) = p.take("part") {
                        let mut pp = Pick::new(pt, "summary part");
                        pp.check("type", one_of(&["summary_text"]), m);
                        if let Some(Value::String(t)) = pp.take("text") {
                            let tag = if kind.ends_with("added") { "sa" } else { "sd" };
                            pp.put(
                                "text",
                                Value::String(once(m, &format!("{tag}{oi}.{idx}"), &t)),
                            );
                        }
                        p.put("part", Value::Object(pp.done(m)));
                    }
                } else if kind.ends_with("delta") {
                    let text = match p.take("delta") {
                        Some(Value::String(t)) => t,
                        _ => return Flow::Malformed("The AI origin sent a delta without text."),
                    };
                    let o = m.stream(&ch, &text);
                    if o.is_empty() && !m.blocked() {
                        p.done(m);
                        return Flow::Open;
                    }
                    p.put("delta", Value::String(o));
                } else {
                    let delta_type = kind.replace(".done", ".delta");
                    let base = p.out.clone();
                    self.flush(&ch, &delta_type, &base, m, out);
                    if let Some(Value::String(t)) = p.take("text") {
                        p.put("text", Value::String(once(m, &format!("done{ch}"), &t)));
                    }
                }
            }
            "response.output_text.annotation.added" => {
                let Some(oi) = origin_index else {
                    return Flow::Open;
                };
                let Some((client, _)) = self.items.get(&oi).copied() else {
                    return Flow::Open;
                };
                p.whole("item_id", m);
                p.put("output_index", json!(client));
                for k in ["content_index", "annotation_index"] {
                    p.check(k, int, m);
                }
                if let Some(a) = p.take("annotation") {
                    if let Value::Array(mut list) = annotations(Value::Array(vec![a]), m) {
                        if let Some(a) = list.pop() {
                            p.put("annotation", a);
                        }
                    }
                }
            }
            "error" => {
                p.whole("code", m);
                p.whole("message", m);
                p.whole("param", m);
                let ev = p.done(m);
                self.write(ev, out);
                return Flow::UpstreamError;
            }
            other => {
                m.dropped(&format!("event.type={}", wire::type_name(other)));
                return Flow::Open;
            }
        }
        if m.blocked() {
            // Text released before the blocked value still goes out, then the ending.
            let released = p
                .out
                .get("delta")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.is_empty());
            if released && kind.ends_with(".delta") {
                let ev = p.done(m);
                self.write(ev, out);
            }
            return self.block(out);
        }
        let ev = p.done(m);
        self.write(ev, out);
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
    fn request_view() {
        let w = Responses;
        assert_eq!(
            w.tool_name(&json!({"type": "function", "name": "f"})),
            Some("f")
        );
        assert_eq!(
            w.tool_name(&json!({"type": "web_search"})),
            Some("web_search")
        );
        assert_eq!(
            w.forced_tool(&json!({"type": "function", "name": "f"})),
            Some("f")
        );
        assert_eq!(w.forced_tool(&json!("auto")), None);
        assert_eq!(
            w.usage_tokens(&json!({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7})),
            Some(7)
        );
        assert!(w.tool_result_block("function_call_output"));
    }
}
