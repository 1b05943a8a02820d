//! OpenAI chat completions (`POST /v1/chat/completions`): where requests carry text and tools,
//! and where whole responses carry model text, tool calls and usage.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::sse::SseEvent;
use super::wire::Wire;
use super::wire::{counters, int, one_of, Flow, ModelOutput, Pick, StreamSchema};

const ROLES: &[&str] = &[
    "assistant",
    "system",
    "developer",
    "user",
    "tool",
    "function",
];
const FINISH_REASONS: &[&str] = &[
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
];
const SERVICE_TIERS: &[&str] = &["auto", "default", "flex", "scale", "priority"];

pub struct OpenAiChat;

impl Wire for OpenAiChat {
    fn path(&self) -> &'static str {
        "/v1/chat/completions"
    }

    fn stream_usage_option(&self) -> bool {
        true
    }

    fn stream_schema(&self) -> Box<dyn StreamSchema> {
        Box::new(OpenAiStream::default())
    }

    fn filter_body(&self, body: Value, m: &mut dyn ModelOutput) -> Option<Value> {
        filter_completion(body, m)
    }

    fn error_event(&self, code: &str, message: &str) -> SseEvent {
        SseEvent::data(
            json!({"error": {"message": message, "type": "upstream_error", "code": code}})
                .to_string(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Responses, default-deny. Every value of a chunk or completion is model text (through a
// channel), a structural value with the expected type, or dropped.

/// Text fields of a delta or message; each is a channel of its own per choice.
const TEXT_FIELDS: [&str; 4] = ["content", "refusal", "reasoning_content", "reasoning"];

/// Streamed text of `field`, or whole text when `whole` (held text follows at the flush).
fn text(
    m: &mut dyn ModelOutput,
    i: u64,
    field: &str,
    s: &str,
    opened: &mut BTreeSet<String>,
) -> String {
    opened.insert(field.to_string());
    m.stream(&format!("{i}.{field}"), s)
}

/// Filters a delta (streamed) or a message (whole) of choice `i`, recording the channels it
/// opened by field (`content`, `tool.3`, `function_call`, `audio`).
fn message(
    src: Map<String, Value>,
    i: u64,
    path: &str,
    m: &mut dyn ModelOutput,
    opened: &mut BTreeSet<String>,
    whole: bool,
) -> Map<String, Value> {
    let mut p = Pick::new(src, path);
    p.check("role", one_of(ROLES), m);
    for key in TEXT_FIELDS {
        match p.take(key) {
            Some(Value::String(s)) => {
                let o = text(m, i, key, &s, opened);
                if whole || !o.is_empty() {
                    p.put(key, Value::String(o));
                }
            }
            Some(Value::Array(parts)) if key == "content" => {
                let mut out = Vec::new();
                for part in parts {
                    let t = match part {
                        Value::Object(mut o)
                            if o.get("type").and_then(Value::as_str) == Some("text") =>
                        {
                            o.remove("type");
                            let t = o.remove("text");
                            for k in o.keys() {
                                m.dropped(&format!("{path}.content[].{k}"));
                            }
                            t
                        }
                        _ => None,
                    };
                    match t {
                        Some(Value::String(t)) => {
                            let o = text(m, i, "content", &t, opened);
                            if whole || !o.is_empty() {
                                out.push(json!({"type": "text", "text": o}));
                            }
                        }
                        _ => m.dropped(&format!("{path}.content[]")),
                    }
                }
                if whole || !out.is_empty() {
                    p.put("content", Value::Array(out));
                }
            }
            Some(Value::Null) => p.put(key, Value::Null),
            Some(_) => m.dropped(&format!("{path}.{key}")),
            None => {}
        }
    }
    match p.take("tool_calls") {
        Some(Value::Array(calls)) => {
            let mut out = Vec::new();
            for (pos, call) in calls.into_iter().enumerate() {
                if let Some(c) = tool_call(call, i, pos, path, m, opened, whole) {
                    out.push(c);
                }
                if m.blocked() {
                    break;
                }
            }
            if whole || !out.is_empty() {
                p.put("tool_calls", Value::Array(out));
            }
        }
        Some(Value::Null) => p.put("tool_calls", Value::Null),
        Some(_) => m.dropped(&format!("{path}.tool_calls")),
        None => {}
    }
    match p.take("function_call") {
        Some(Value::Object(f)) => {
            let mut fp = Pick::new(f, "function_call");
            if let Some(name) = fp.take("name") {
                match name {
                    Value::String(n) if m.tool(&n) => fp.put("name", Value::String(m.whole(&n))),
                    Value::String(_) => return p.done(m),
                    _ => m.dropped("function_call.name"),
                }
            }
            match fp.take("arguments") {
                Some(Value::String(a)) => {
                    let o = text(m, i, "function_call", &a, opened);
                    if whole || !o.is_empty() {
                        fp.put("arguments", Value::String(o));
                    }
                }
                Some(_) => m.dropped("function_call.arguments"),
                None => {}
            }
            let f = fp.done(m);
            if whole || !f.is_empty() {
                p.put("function_call", Value::Object(f));
            }
        }
        Some(Value::Null) => p.put("function_call", Value::Null),
        Some(_) => m.dropped(&format!("{path}.function_call")),
        None => {}
    }
    match p.take("audio") {
        Some(Value::Object(a)) => {
            let mut ap = Pick::new(a, "audio");
            ap.whole("id", m);
            ap.check("expires_at", int, m);
            // `data` (the spoken answer) cannot be inspected: it is dropped with the rest.
            match ap.take("transcript") {
                Some(Value::String(t)) => {
                    let o = text(m, i, "audio", &t, opened);
                    if whole || !o.is_empty() {
                        ap.put("transcript", Value::String(o));
                    }
                }
                Some(_) => m.dropped("audio.transcript"),
                None => {}
            }
            p.put("audio", Value::Object(ap.done(m)));
        }
        Some(Value::Null) => p.put("audio", Value::Null),
        Some(_) => m.dropped(&format!("{path}.audio")),
        None => {}
    }
    match p.take("annotations") {
        Some(Value::Array(list)) => {
            let out: Vec<Value> = list.into_iter().filter_map(|a| annotation(a, m)).collect();
            p.put("annotations", Value::Array(out));
        }
        Some(Value::Null) => p.put("annotations", Value::Null),
        Some(_) => m.dropped(&format!("{path}.annotations")),
        None => {}
    }
    p.done(m)
}

/// One tool call of a delta or message; `None` when dropped or refused (the model may not call
/// that tool: the response is cut before any of its arguments go out).
fn tool_call(
    call: Value,
    i: u64,
    pos: usize,
    path: &str,
    m: &mut dyn ModelOutput,
    opened: &mut BTreeSet<String>,
    whole: bool,
) -> Option<Value> {
    let Value::Object(src) = call else {
        m.dropped(&format!("{path}.tool_calls[]"));
        return None;
    };
    let ti = match src.get("index").and_then(Value::as_u64) {
        Some(ti) if !whole => ti,
        _ => pos as u64,
    };
    let mut p = Pick::new(src, "tool_calls[]");
    p.check("index", int, m);
    p.whole("id", m);
    p.check("type", one_of(&["function"]), m);
    match p.take("function") {
        Some(Value::Object(f)) => {
            let mut fp = Pick::new(f, "tool_calls[].function");
            match fp.take("name") {
                Some(Value::String(n)) => {
                    if !m.tool(&n) {
                        return None;
                    }
                    fp.put("name", Value::String(m.whole(&n)));
                }
                Some(Value::Null) | None => {}
                Some(_) => m.dropped("tool_calls[].function.name"),
            }
            match fp.take("arguments") {
                Some(Value::String(a)) => {
                    let o = text(m, i, &format!("tool.{ti}"), &a, opened);
                    if whole || !o.is_empty() {
                        fp.put("arguments", Value::String(o));
                    }
                }
                Some(Value::Null) | None => {}
                Some(_) => m.dropped("tool_calls[].function.arguments"),
            }
            p.put("function", Value::Object(fp.done(m)));
        }
        Some(Value::Null) | None => {}
        Some(_) => m.dropped("tool_calls[].function"),
    }
    Some(Value::Object(p.done(m)))
}

/// A URL citation: positions pass, the URL and title are judged whole.
fn annotation(a: Value, m: &mut dyn ModelOutput) -> Option<Value> {
    let Value::Object(src) = a else {
        m.dropped("annotations[]");
        return None;
    };
    let mut p = Pick::new(src, "annotations[]");
    p.check("type", one_of(&["url_citation"]), m);
    match p.take("url_citation") {
        Some(Value::Object(c)) => {
            let mut cp = Pick::new(c, "annotations[].url_citation");
            cp.check("start_index", int, m);
            cp.check("end_index", int, m);
            cp.whole("url", m);
            cp.whole("title", m);
            p.put("url_citation", Value::Object(cp.done(m)));
        }
        Some(_) => m.dropped("annotations[].url_citation"),
        None => {}
    }
    Some(Value::Object(p.done(m)))
}

/// Appends flushed text to a text field (a string, or an array of text parts).
fn append_text(obj: &mut Map<String, Value>, key: &str, extra: &str) {
    match obj.get_mut(key) {
        Some(Value::String(s)) => s.push_str(extra),
        Some(Value::Array(parts)) => parts.push(json!({"type": "text", "text": extra})),
        _ => {
            obj.insert(key.into(), Value::String(extra.to_string()));
        }
    }
}

/// Appends flushed arguments to tool call `ti` (by its `index`, else by position).
fn append_tool_args(obj: &mut Map<String, Value>, ti: u64, extra: &str) {
    let calls = obj
        .entry("tool_calls")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !calls.is_array() {
        *calls = Value::Array(Vec::new());
    }
    let Some(list) = calls.as_array_mut() else {
        return;
    };
    let by_index = list
        .iter()
        .position(|c| c.get("index").and_then(Value::as_u64) == Some(ti));
    let has_indices = list.iter().any(|c| c.get("index").is_some());
    let at = by_index.or_else(|| {
        usize::try_from(ti)
            .ok()
            .filter(|p| !has_indices && *p < list.len())
    });
    let call = match at {
        Some(p) => &mut list[p],
        None => {
            list.push(json!({"index": ti, "function": {}}));
            let last = list.len() - 1;
            &mut list[last]
        }
    };
    let Some(c) = call.as_object_mut() else {
        return;
    };
    let f = c.entry("function").or_insert_with(|| json!({}));
    if let Some(f) = f.as_object_mut() {
        append_text(f, "arguments", extra);
    }
}

/// Flushes every channel of choice `i` into `obj` (a delta or message); returns the held
/// log-probability entries of the content and refusal channels.
fn flush_choice(
    i: u64,
    opened: &BTreeSet<String>,
    obj: &mut Map<String, Value>,
    m: &mut dyn ModelOutput,
) -> (Vec<Value>, Vec<Value>) {
    let (mut content_lp, mut refusal_lp) = (Vec::new(), Vec::new());
    for field in opened {
        let (o, lp) = m.finish(&format!("{i}.{field}"));
        match field.as_str() {
            "content" => content_lp = lp,
            "refusal" => refusal_lp = lp,
            _ => {}
        }
        if o.is_empty() {
            continue;
        }
        if let Some(ti) = field.strip_prefix("tool.").and_then(|t| t.parse().ok()) {
            append_tool_args(obj, ti, &o);
        } else if field == "function_call" {
            let f = obj.entry("function_call").or_insert_with(|| json!({}));
            if let Some(f) = f.as_object_mut() {
                append_text(f, "arguments", &o);
            }
        } else if field == "audio" {
            let a = obj.entry("audio").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                append_text(a, "transcript", &o);
            }
        } else {
            append_text(obj, field, &o);
        }
    }
    (content_lp, refusal_lp)
}

/// A choice's `logprobs`: the entries for content and refusal, each sent once the text it
/// spells has gone out unchanged.
fn logprobs(v: Value, i: u64, m: &mut dyn ModelOutput) -> Value {
    let Value::Object(src) = v else {
        if !v.is_null() {
            m.dropped("choices[].logprobs");
        }
        return Value::Null;
    };
    let mut p = Pick::new(src, "choices[].logprobs");
    for field in ["content", "refusal"] {
        match p.take(field) {
            Some(Value::Array(entries)) => {
                let released = m.logprobs(&format!("{i}.{field}"), entries);
                p.put(field, Value::Array(released));
            }
            Some(Value::Null) => p.put(field, Value::Null),
            Some(_) => m.dropped(&format!("choices[].logprobs.{field}")),
            None => {}
        }
    }
    Value::Object(p.done(m))
}

fn add_logprobs(choice: &mut Map<String, Value>, field: &str, extra: Vec<Value>) {
    if extra.is_empty() {
        return;
    }
    let lp = choice.entry("logprobs").or_insert_with(|| json!({}));
    if !lp.is_object() {
        *lp = json!({});
    }
    if let Some(lp) = lp.as_object_mut() {
        let list = lp.entry(field).or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Some(list) = list.as_array_mut() {
            list.extend(extra);
        }
    }
}

/// The top-level fields of a chunk or completion (everything but `choices` and `usage`).
fn envelope(p: &mut Pick<'_>, m: &mut dyn ModelOutput) {
    p.whole("id", m);
    p.check(
        "object",
        one_of(&["chat.completion", "chat.completion.chunk"]),
        m,
    );
    p.check("created", int, m);
    p.whole("model", m);
    p.whole("system_fingerprint", m);
    p.check("service_tier", one_of(SERVICE_TIERS), m);
}

/// An error object from the origin, its message judged whole.
fn error_object(v: Value, m: &mut dyn ModelOutput) -> Value {
    let Value::Object(src) = v else {
        return json!({"message": "The AI origin reported an error.", "type": "upstream_error"});
    };
    let mut p = Pick::new(src, "error");
    p.whole("message", m);
    p.whole("type", m);
    p.whole("code", m);
    p.whole("param", m);
    Value::Object(p.done(m))
}

/// Filters a whole chat completion.
fn filter_completion(body: Value, m: &mut dyn ModelOutput) -> Option<Value> {
    let Value::Object(src) = body else {
        return None;
    };
    if !src.get("choices").is_some_and(Value::is_array) {
        return None;
    }
    let mut p = Pick::new(src, "completion");
    envelope(&mut p, m);
    if let Some(u) = p.take("usage") {
        p.put("usage", counters(u, "usage", m).unwrap_or(Value::Null));
    }
    let mut choices = Vec::new();
    for c in p.take("choices").and_then(|c| match c {
        Value::Array(a) => Some(a),
        _ => None,
    })? {
        let Value::Object(src) = c else {
            m.dropped("choices[]");
            continue;
        };
        let i = src.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut cp = Pick::new(src, "choices[]");
        cp.check("index", int, m);
        cp.check("finish_reason", one_of(FINISH_REASONS), m);
        let mut opened = BTreeSet::new();
        let mut msg = match cp.take("message") {
            Some(Value::Object(msg)) => message(msg, i, "message", m, &mut opened, true),
            Some(_) => {
                m.dropped("choices[].message");
                Map::new()
            }
            None => Map::new(),
        };
        if let Some(lp) = cp.take("logprobs") {
            let lp = logprobs(lp, i, m);
            cp.put("logprobs", lp);
        }
        let (content_lp, refusal_lp) = flush_choice(i, &opened, &mut msg, m);
        cp.put("message", Value::Object(msg));
        let mut choice = cp.done(m);
        add_logprobs(&mut choice, "content", content_lp);
        add_logprobs(&mut choice, "refusal", refusal_lp);
        choices.push(Value::Object(choice));
    }
    p.put("choices", Value::Array(choices));
    Some(Value::Object(p.done(m)))
}

/// The state of one streamed chat completion.
#[derive(Default)]
pub struct OpenAiStream {
    /// Envelope fields copied into chunks the gateway writes itself.
    template: Map<String, Value>,
    /// Open channels per choice (by field).
    open: BTreeMap<u64, BTreeSet<String>>,
    /// Choices seen, for the content-filter ending.
    seen: BTreeSet<u64>,
    hide_usage: bool,
    usage: Option<Value>,
}

impl OpenAiStream {
    fn write(&self, chunk: &Map<String, Value>, out: &mut Vec<u8>) {
        SseEvent::data(Value::Object(chunk.clone()).to_string()).write(out);
    }

    /// Sends what was released before the blocked value, then a `content_filter` finish.
    fn block(&mut self, mut chunk: Map<String, Value>, out: &mut Vec<u8>) -> Flow {
        if let Some(Value::Array(choices)) = chunk.get_mut("choices") {
            for c in choices.iter_mut() {
                if let Some(o) = c.as_object_mut() {
                    o.insert("finish_reason".into(), Value::Null);
                }
            }
        }
        self.write(&chunk, out);
        let indices: Vec<u64> = if self.seen.is_empty() {
            vec![0]
        } else {
            self.seen.iter().copied().collect()
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
        self.write(&fin, out);
        SseEvent::data("[DONE]").write(out);
        Flow::Blocked
    }

    /// `[DONE]`: flushes every choice still open, then ends the stream.
    fn done(&mut self, m: &mut dyn ModelOutput, out: &mut Vec<u8>) -> Flow {
        let open = std::mem::take(&mut self.open);
        let mut choices = Vec::new();
        for (i, fields) in open {
            let mut delta = Map::new();
            let (content_lp, refusal_lp) = flush_choice(i, &fields, &mut delta, m);
            let mut choice = Map::new();
            choice.insert("index".into(), json!(i));
            choice.insert("delta".into(), Value::Object(delta));
            choice.insert("finish_reason".into(), Value::Null);
            add_logprobs(&mut choice, "content", content_lp);
            add_logprobs(&mut choice, "refusal", refusal_lp);
            let empty = choice
                .get("delta")
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
                && !choice.contains_key("logprobs");
            if !empty {
                choices.push(Value::Object(choice));
            }
        }
        let mut chunk = self.template.clone();
        chunk.insert("choices".into(), Value::Array(choices));
        if m.blocked() {
            return self.block(chunk, out);
        }
        if chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty())
        {
            self.write(&chunk, out);
        }
        SseEvent::data("[DONE]").write(out);
        Flow::Complete
    }

    fn choice(&mut self, c: Value, m: &mut dyn ModelOutput) -> Option<Map<String, Value>> {
        let Value::Object(src) = c else {
            m.dropped("choices[]");
            return None;
        };
        let i = src.get("index").and_then(Value::as_u64).unwrap_or(0);
        self.seen.insert(i);
        let finished = src.get("finish_reason").is_some_and(|f| !f.is_null());
        let mut cp = Pick::new(src, "choices[]");
        cp.check("index", int, m);
        cp.check("finish_reason", one_of(FINISH_REASONS), m);
        let mut opened = self.open.remove(&i).unwrap_or_default();
        let mut delta = match cp.take("delta") {
            Some(Value::Object(d)) => message(d, i, "delta", m, &mut opened, false),
            Some(_) => {
                m.dropped("choices[].delta");
                Map::new()
            }
            None => Map::new(),
        };
        if let Some(lp) = cp.take("logprobs") {
            let lp = logprobs(lp, i, m);
            cp.put("logprobs", lp);
        }
        let (mut content_lp, mut refusal_lp) = (Vec::new(), Vec::new());
        if finished && !m.blocked() {
            // Held text goes out in this choice's last delta, before its finish_reason.
            (content_lp, refusal_lp) = flush_choice(i, &opened, &mut delta, m);
        } else {
            self.open.insert(i, opened);
        }
        cp.put("delta", Value::Object(delta));
        let mut choice = cp.done(m);
        add_logprobs(&mut choice, "content", content_lp);
        add_logprobs(&mut choice, "refusal", refusal_lp);
        Some(choice)
    }
}

/// A choice that carries nothing for the client: an empty delta, no finish, no log-probs.
fn idle_choice(c: &Value) -> bool {
    c.get("delta")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && c.get("finish_reason").is_none_or(Value::is_null)
        && c.get("logprobs").is_none_or(|lp| {
            lp.is_null()
                || lp.as_object().is_some_and(|o| {
                    o.values()
                        .all(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
                })
        })
}

impl StreamSchema for OpenAiStream {
    fn event(&mut self, ev: SseEvent, m: &mut dyn ModelOutput, out: &mut Vec<u8>) -> Flow {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return self.done(m, out);
        }
        let Ok(Value::Object(mut src)) = serde_json::from_str::<Value>(data) else {
            return Flow::Malformed("The AI origin sent an event the gateway cannot parse.");
        };
        if let Some(e) = src.remove("error") {
            // An error from the origin mid-stream: passed on filtered; nothing held goes out.
            let e = error_object(e, m);
            SseEvent::data(json!({ "error": e }).to_string()).write(out);
            return Flow::UpstreamError;
        }
        let mut p = Pick::new(src, "chunk");
        envelope(&mut p, m);
        for k in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(v) = p.out.get(k) {
                self.template.insert(k.to_string(), v.clone());
            }
        }
        let usage = p
            .take("usage")
            .and_then(|u| counters(u, "usage", m))
            .filter(|u| !u.is_null());
        if let Some(u) = &usage {
            self.usage = Some(u.clone());
        }
        let raw_choices = p.take("choices");
        let had_choices = raw_choices.is_some();
        let mut choices = Vec::new();
        match raw_choices {
            Some(Value::Array(list)) => {
                for c in list {
                    if let Some(c) = self.choice(c, m) {
                        choices.push(Value::Object(c));
                    }
                    if m.blocked() {
                        break;
                    }
                }
            }
            Some(_) => m.dropped("chunk.choices"),
            None => {}
        }
        let mut chunk = p.done(m);
        if had_choices {
            chunk.insert("choices".into(), Value::Array(choices.clone()));
        }
        if m.blocked() {
            return self.block(chunk, out);
        }
        let usage_only = usage.is_some() && choices.is_empty();
        if let Some(u) = usage {
            if usage_only && self.hide_usage {
                return Flow::Open;
            }
            chunk.insert("usage".into(), u);
        }
        // A chunk whose content is all held back carries nothing: it is not sent.
        if !usage_only && (choices.is_empty() || choices.iter().all(idle_choice)) && had_choices {
            return Flow::Open;
        }
        self.write(&chunk, out);
        Flow::Open
    }

    fn hide_usage(&mut self) {
        self.hide_usage = true;
    }

    fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Speaker;

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
    }
}
