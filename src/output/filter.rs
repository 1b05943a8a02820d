//! Protocol-aware output filtering: OpenAI chat-completion chunks and Anthropic Messages events,
//! streamed or whole. Text moves through one [`StreamRedactor`] per choice (and per tool call),
//! so a value split across any number of events is caught, and held-back text moves into later
//! events. Everything is flushed before the final `finish_reason` / `content_block_stop`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::redact::{Finding, Scanner, StreamRedactor};
use crate::api_error::ApiError;
use crate::protocol::sse::{SseError, SseEvent, SseParser};
use crate::protocol::Protocol;
use crate::tools;

/// Largest single SSE event accepted from the origin.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// How a filtered stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Open,
    /// The origin finished the stream (`[DONE]` / `message_stop`).
    Complete,
    /// A `block` detector ended it cleanly.
    Blocked,
    /// The origin's stream could not be parsed; cut off with an error event.
    Malformed,
    /// The origin stopped before finishing; held text was discarded.
    Truncated,
}

/// A filter for one streamed response.
pub struct StreamFilter<'s> {
    scanner: &'s Scanner,
    protocol: Protocol,
    parser: SseParser,
    /// Per choice (OpenAI) or content block (Anthropic): the text redactor.
    text: BTreeMap<u64, StreamRedactor<'s>>,
    /// Per (choice, tool call index): the arguments redactor.
    args: BTreeMap<(u64, u64), StreamRedactor<'s>>,
    /// Fields copied into chunks the gateway synthesizes.
    template: Map<String, Value>,
    findings: Vec<Finding>,
    outcome: Outcome,
    usage: Option<Value>,
    events: Vec<SseEvent>,
    /// Usage-only chunks (asked for by the gateway, not the client) are read, not sent.
    hide_usage: bool,
    /// Tool names the model may call (globs); `None`: any.
    allowed_tools: Option<Vec<String>>,
}

impl<'s> StreamFilter<'s> {
    pub fn new(scanner: &'s Scanner, protocol: Protocol) -> Self {
        StreamFilter {
            scanner,
            protocol,
            parser: SseParser::new(MAX_EVENT_BYTES),
            text: BTreeMap::new(),
            args: BTreeMap::new(),
            template: Map::new(),
            findings: Vec::new(),
            outcome: Outcome::Open,
            usage: None,
            events: Vec::new(),
            hide_usage: false,
            allowed_tools: None,
        }
    }

    /// Blocks the stream at a tool call naming a tool outside `globs`, before any of its
    /// arguments are sent.
    pub fn allow_tools(&mut self, globs: Option<Vec<String>>) {
        self.allowed_tools = globs;
    }

    fn tool_refused(&mut self, name: &str) -> bool {
        if tools::tool_allowed(self.allowed_tools.as_deref(), name) {
            return false;
        }
        self.findings.push(tool_finding());
        true
    }

    /// Keeps usage-only chunks from the client (the gateway asked for them on its own).
    pub fn hide_usage_chunks(&mut self) {
        self.hide_usage = true;
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The `usage` object the origin reported, if any.
    pub fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }

    /// Feeds bytes from the origin; appends what may be sent to the client to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.outcome != Outcome::Open {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        let parsed = self.parser.feed(bytes, &mut events);
        for ev in events.drain(..) {
            if self.outcome != Outcome::Open {
                break;
            }
            match self.protocol {
                Protocol::OpenAiChat => self.openai_event(ev, out),
                Protocol::AnthropicMessages => self.anthropic_event(ev, out),
            }
        }
        self.events = events;
        if let Err(SseError::EventTooLarge(_)) = parsed {
            self.malformed(
                out,
                "The AI origin sent an event larger than the gateway accepts.",
            );
        }
    }

    /// The origin's byte stream ended. Anything held back is dropped unless the protocol said
    /// the answer was complete.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        if self.outcome == Outcome::Open {
            self.outcome = Outcome::Truncated;
            self.collect_findings();
            self.error_event(
                out,
                "upstream_incomplete",
                "The AI origin ended the stream before finishing.",
            );
        }
    }

    fn malformed(&mut self, out: &mut Vec<u8>, message: &str) {
        self.outcome = Outcome::Malformed;
        self.collect_findings();
        self.error_event(out, "upstream_malformed", message);
    }

    fn error_event(&self, out: &mut Vec<u8>, code: &str, message: &str) {
        self.protocol.wire().error_event(code, message).write(out);
    }

    fn collect_findings(&mut self) {
        for r in self.text.values_mut().chain(self.args.values_mut()) {
            self.findings.extend(r.take_findings());
        }
    }

    fn any_blocked(&self) -> bool {
        self.text
            .values()
            .chain(self.args.values())
            .any(StreamRedactor::blocked)
    }

    // --- OpenAI ------------------------------------------------------------------------------

    fn openai_event(&mut self, ev: SseEvent, out: &mut Vec<u8>) {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.openai_flush_all(out);
            if self.outcome == Outcome::Open {
                SseEvent::data("[DONE]").write(out);
                self.outcome = Outcome::Complete;
            }
            self.collect_findings();
            return;
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            self.malformed(out, "The AI origin sent an event the gateway cannot parse.");
            return;
        };
        if chunk.contains_key("error") {
            // An error from the origin mid-stream: pass it on, nothing held is released.
            SseEvent::data(Value::Object(chunk).to_string()).write(out);
            self.outcome = Outcome::Truncated;
            self.collect_findings();
            return;
        }
        for k in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(v) = chunk.get(k) {
                self.template.insert(k.to_string(), v.clone());
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
            let no_choices = chunk
                .get("choices")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if self.hide_usage && no_choices {
                return;
            }
        }
        let mut blocked = false;
        // A chunk whose only content is now held back carries nothing: it is not sent.
        let mut all_held = chunk.get("usage").is_none_or(Value::is_null);
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            all_held &= !choices.is_empty();
            for choice in choices.iter_mut() {
                let (b, held) = self.openai_choice(choice);
                blocked |= b;
                all_held &= held;
            }
        } else {
            all_held = false;
        }
        self.collect_findings();
        if blocked {
            self.openai_block(&mut chunk, out);
            return;
        }
        if !all_held {
            SseEvent::data(Value::Object(chunk).to_string()).write(out);
        }
    }

    /// Filters one choice of a chunk in place. Returns whether a block detector fired, and
    /// whether the choice's delta was only text that is now all held back.
    fn openai_choice(&mut self, choice: &mut Value) -> (bool, bool) {
        let idx = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
        let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
        let scanner = self.scanner;
        let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
            return (false, false);
        };
        let only_text = delta.len() == 1
            && delta
                .get("content")
                .and_then(Value::as_str)
                .is_some_and(|c| !c.is_empty());
        let mut blocked = false;
        if let Some(Value::String(s)) = delta.get("content") {
            let r = self.text.entry(idx).or_insert_with(|| scanner.stream());
            let mut o = String::new();
            r.push_str(s, &mut o);
            blocked |= r.blocked();
            delta.insert("content".into(), Value::String(o));
        }
        let names: Vec<String> = delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|c| c.pointer("/function/name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|n| self.tool_refused(n)) {
            delta.remove("tool_calls");
            return (true, false);
        }
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            for call in calls.iter_mut() {
                let ti = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(Value::String(a)) = call.pointer("/function/arguments") {
                    let r = self
                        .args
                        .entry((idx, ti))
                        .or_insert_with(|| scanner.stream());
                    let mut o = String::new();
                    r.push_str(a, &mut o);
                    blocked |= r.blocked();
                    if let Some(f) = call.get_mut("function").and_then(Value::as_object_mut) {
                        f.insert("arguments".into(), Value::String(o));
                    }
                }
            }
        }
        if finished && !blocked {
            // Flush this choice before its finish_reason goes out.
            if let Some(r) = self.text.get_mut(&idx) {
                let mut o = String::new();
                r.finish(&mut o);
                blocked |= r.blocked();
                if !o.is_empty() {
                    let prev = delta.get("content").and_then(Value::as_str).unwrap_or("");
                    delta.insert("content".into(), Value::String(format!("{prev}{o}")));
                }
            }
            let keys: Vec<(u64, u64)> = self
                .args
                .keys()
                .filter(|(c, _)| *c == idx)
                .copied()
                .collect();
            for key in keys {
                let Some(r) = self.args.get_mut(&key) else {
                    continue;
                };
                let mut o = String::new();
                r.finish(&mut o);
                blocked |= r.blocked();
                if !o.is_empty() {
                    append_tool_args(delta, key.1, &o);
                }
            }
        }
        let held = only_text
            && !finished
            && delta
                .get("content")
                .and_then(Value::as_str)
                .is_some_and(str::is_empty);
        (blocked, held)
    }

    fn openai_flush_all(&mut self, out: &mut Vec<u8>) {
        let mut choices: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
        for (idx, r) in self.text.iter_mut() {
            let mut o = String::new();
            r.finish(&mut o);
            if !o.is_empty() {
                choices
                    .entry(*idx)
                    .or_default()
                    .insert("content".into(), Value::String(o));
            }
        }
        for ((idx, ti), r) in self.args.iter_mut() {
            let mut o = String::new();
            r.finish(&mut o);
            if !o.is_empty() {
                append_tool_args(choices.entry(*idx).or_default(), *ti, &o);
            }
        }
        let blocked = self.any_blocked();
        self.collect_findings();
        if !choices.is_empty() {
            let mut chunk = self.template.clone();
            let list: Vec<Value> = choices
                .into_iter()
                .map(|(i, d)| json!({"index": i, "delta": d, "finish_reason": Value::Null}))
                .collect();
            chunk.insert("choices".into(), Value::Array(list));
            if blocked {
                self.openai_block(&mut chunk, out);
                return;
            }
            SseEvent::data(Value::Object(chunk).to_string()).write(out);
        } else if blocked {
            let mut chunk = self.template.clone();
            chunk.insert("choices".into(), json!([]));
            self.openai_block(&mut chunk, out);
        }
    }

    /// Sends what was released before the blocked value, then a `content_filter` finish.
    fn openai_block(&mut self, chunk: &mut Map<String, Value>, out: &mut Vec<u8>) {
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for c in choices.iter_mut() {
                if let Some(o) = c.as_object_mut() {
                    o.insert("finish_reason".into(), Value::Null);
                }
            }
        }
        SseEvent::data(Value::Object(chunk.clone()).to_string()).write(out);
        let indices: Vec<u64> = if self.text.is_empty() && self.args.is_empty() {
            vec![0]
        } else {
            let mut v: Vec<u64> = self
                .text
                .keys()
                .copied()
                .chain(self.args.keys().map(|k| k.0))
                .collect();
            v.dedup();
            v
        };
        let mut fin = self.template.clone();
        fin.insert(
            "choices".into(),
            Value::Array(
                indices
                    .into_iter()
                    .map(|i| json!({"index": i, "delta": {}, "finish_reason": "content_filter"}))
                    .collect(),
            ),
        );
        SseEvent::data(Value::Object(fin).to_string()).write(out);
        SseEvent::data("[DONE]").write(out);
        self.outcome = Outcome::Blocked;
    }

    // --- Anthropic ---------------------------------------------------------------------------

    fn anthropic_event(&mut self, ev: SseEvent, out: &mut Vec<u8>) {
        let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(&ev.data) else {
            self.malformed(out, "The AI origin sent an event the gateway cannot parse.");
            return;
        };
        let kind = msg
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = ev.event.clone().unwrap_or_else(|| kind.clone());
        let idx = msg.get("index").and_then(Value::as_u64).unwrap_or(0);
        let scanner = self.scanner;
        match kind.as_str() {
            "content_block_delta" => {
                let Some(delta) = msg.get_mut("delta").and_then(Value::as_object_mut) else {
                    self.malformed(out, "The AI origin sent a delta without content.");
                    return;
                };
                let field = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => "text",
                    Some("input_json_delta") => "partial_json",
                    Some("thinking_delta") => "thinking",
                    _ => "",
                };
                if let Some(Value::String(s)) = delta.get(field) {
                    let r = self.text.entry(idx).or_insert_with(|| scanner.stream());
                    let mut o = String::new();
                    r.push_str(s, &mut o);
                    let blocked = r.blocked();
                    delta.insert(field.into(), Value::String(o));
                    self.collect_findings();
                    SseEvent::named(&name, Value::Object(msg).to_string()).write(out);
                    if blocked {
                        self.anthropic_block(idx, out);
                    }
                    return;
                }
                if !field.is_empty()
                    || delta.get("type").and_then(Value::as_str) != Some("signature_delta")
                {
                    // A delta kind the gateway does not know could carry text: fail closed.
                    self.malformed(
                        out,
                        "The AI origin sent a delta the gateway cannot inspect.",
                    );
                    return;
                }
            }
            "content_block_start" => {
                let tool = msg
                    .get("content_block")
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                    .and_then(|b| b.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if tool.is_some_and(|n| self.tool_refused(&n)) {
                    self.anthropic_block(idx, out);
                    return;
                }
                self.text.insert(idx, scanner.stream());
                self.anthropic_start_block(&mut msg, idx);
                if self.text.get(&idx).is_some_and(StreamRedactor::blocked) {
                    self.anthropic_block(idx, out);
                    return;
                }
            }
            "content_block_stop" => {
                if let Some(r) = self.text.get_mut(&idx) {
                    let mut o = String::new();
                    r.finish(&mut o);
                    let blocked = r.blocked();
                    self.collect_findings();
                    if !o.is_empty() {
                        let delta = json!({"type": "content_block_delta", "index": idx,
                            "delta": {"type": "text_delta", "text": o}});
                        SseEvent::named("content_block_delta", delta.to_string()).write(out);
                    }
                    if blocked {
                        self.anthropic_block(idx, out);
                        return;
                    }
                }
            }
            "message_stop" => {
                self.outcome = Outcome::Complete;
                self.collect_findings();
            }
            "error" => {
                SseEvent::named(&name, Value::Object(msg).to_string()).write(out);
                self.outcome = Outcome::Truncated;
                self.collect_findings();
                return;
            }
            "message_delta" => {
                if let Some(u) = msg.get("usage") {
                    self.usage = Some(u.clone());
                }
            }
            _ => {}
        }
        SseEvent::named(&name, Value::Object(msg).to_string()).write(out);
    }

    /// A block's initial content (usually empty) goes through its redactor too.
    fn anthropic_start_block(&mut self, msg: &mut Map<String, Value>, idx: u64) {
        let Some(r) = self.text.get_mut(&idx) else {
            return;
        };
        let Some(cb) = msg.get_mut("content_block").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(Value::String(t)) = cb.get("text") {
            let mut o = String::new();
            r.push_str(t, &mut o);
            cb.insert("text".into(), Value::String(o));
        }
    }

    fn anthropic_block(&mut self, idx: u64, out: &mut Vec<u8>) {
        SseEvent::named(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": idx}).to_string(),
        )
        .write(out);
        SseEvent::named(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "refusal", "stop_sequence": Value::Null},
                   "usage": {"output_tokens": 0}})
            .to_string(),
        )
        .write(out);
        SseEvent::named("message_stop", json!({"type": "message_stop"}).to_string()).write(out);
        self.outcome = Outcome::Blocked;
    }
}

fn append_tool_args(delta: &mut Map<String, Value>, ti: u64, extra: &str) {
    let calls = delta
        .entry("tool_calls")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = calls.as_array_mut() else {
        return;
    };
    if let Some(call) = list
        .iter_mut()
        .find(|c| c.get("index").and_then(Value::as_u64) == Some(ti))
    {
        let prev = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(f) = call.get_mut("function").and_then(Value::as_object_mut) {
            f.insert("arguments".into(), Value::String(prev + extra));
            return;
        }
        if let Some(o) = call.as_object_mut() {
            o.insert("function".into(), json!({"arguments": extra}));
        }
        return;
    }
    list.push(json!({"index": ti, "function": {"arguments": extra}}));
}

/// A whole response after filtering.
pub struct FilteredBody {
    pub body: Vec<u8>,
    pub findings: Vec<Finding>,
    /// The `usage` object the origin reported.
    pub usage: Option<Value>,
}

/// Filters a whole (non-streamed) response body in place. A block becomes an error.
pub fn filter_json(
    scanner: &Scanner,
    protocol: Protocol,
    body: &[u8],
    allowed_tools: Option<&[String]>,
) -> Result<FilteredBody, FilterError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|_| FilterError::Unparseable)?;
    let wire = protocol.wire();
    // A call of a tool outside the allow-list withholds the whole response.
    if tools::first_refused_call(allowed_tools, wire.called_tools(&v)).is_some() {
        return Err(FilterError::Blocked(vec![tool_finding()]));
    }
    let mut findings = Vec::new();
    let mut blocked = false;
    wire.response_texts(&mut v, &mut |s: &mut String| {
        let r = scanner.redact(s);
        blocked |= r.blocked;
        findings.extend(r.findings);
        *s = r.text;
    });
    if blocked {
        return Err(FilterError::Blocked(findings));
    }
    let usage = v.get("usage").cloned();
    let body = serde_json::to_vec(&v).map_err(|_| FilterError::Unparseable)?;
    Ok(FilteredBody {
        body,
        findings,
        usage,
    })
}

fn tool_finding() -> Finding {
    Finding {
        detector: "tool_not_allowed".into(),
        category: super::Category::Tool,
        action: super::Action::Block,
        start: 0,
        end: 0,
    }
}

#[derive(Debug)]
pub enum FilterError {
    Unparseable,
    Blocked(Vec<Finding>),
}

impl FilterError {
    pub fn api_error(&self) -> ApiError {
        match self {
            FilterError::Unparseable => {
                ApiError::bad_gateway("The AI origin sent a response the gateway cannot inspect.")
            }
            FilterError::Blocked(_) => ApiError::content_filtered(),
        }
    }
}
