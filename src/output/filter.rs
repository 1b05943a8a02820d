//! Response filtering, default-deny: each protocol's response schema (in [`crate::protocol`])
//! decides what every value of every event or body is. Model-written text goes through a
//! [`StreamRedactor`] per channel (a choice's content, a tool call's arguments, a content
//! block), so a value split across any number of events is caught; structural values pass only
//! with the expected type and shape; everything else is dropped and counted. Held text moves
//! into later events and is flushed into its own field before the channel ends.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::detectors::{Action, Category};
use super::redact::{Finding, Scanner, StreamRedactor};
use crate::api_error::ApiError;
use crate::protocol::sse::{SseError, SseParser};
use crate::protocol::wire::{Flow, ModelOutput, StreamSchema};
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

/// What to do with a response field outside the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownFields {
    /// Drop it and count it (default).
    #[default]
    Drop,
    /// Cut the response off as if a `block` detector fired.
    Block,
}

/// One channel of model text: its redactor and the log-probability entries waiting for the
/// text they spell to be decided.
struct Channel<'s> {
    redactor: StreamRedactor<'s>,
    /// Bytes pushed so far, and where the last push started.
    pushed: usize,
    last_start: usize,
    last_len: usize,
    /// Spans that did not pass unchanged (redacted or blocked values).
    changed: Vec<(usize, usize)>,
    /// Entries with the byte span they spell.
    pending: VecDeque<(usize, usize, Value)>,
}

/// The output layer's side of response filtering, shared by streams and whole bodies.
pub struct Channels<'s> {
    scanner: &'s Scanner,
    channels: BTreeMap<String, Channel<'s>>,
    findings: Vec<Finding>,
    allowed_tools: Option<Vec<String>>,
    unknown: UnknownFields,
    /// Dropped fields by schema path.
    dropped: BTreeMap<String, u32>,
    blocked: bool,
}

impl<'s> Channels<'s> {
    pub fn new(scanner: &'s Scanner) -> Self {
        Channels {
            scanner,
            channels: BTreeMap::new(),
            findings: Vec::new(),
            allowed_tools: None,
            unknown: UnknownFields::Drop,
            dropped: BTreeMap::new(),
            blocked: false,
        }
    }

    fn channel(&mut self, name: &str) -> &mut Channel<'s> {
        let scanner = self.scanner;
        self.channels
            .entry(name.to_string())
            .or_insert_with(|| Channel {
                redactor: scanner.stream(),
                pushed: 0,
                last_start: 0,
                last_len: 0,
                changed: Vec::new(),
                pending: VecDeque::new(),
            })
    }

    /// Moves new findings of a channel into the list, remembering which spans changed.
    fn collect(&mut self, name: &str) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        for mut f in c.redactor.take_findings() {
            f.channel = name.to_string();
            if f.action != Action::Monitor {
                c.changed.push((f.start, f.end));
            }
            if f.action == Action::Block {
                self.blocked = true;
            }
            self.findings.push(f);
        }
        if c.redactor.blocked() {
            self.blocked = true;
        }
    }

    /// Entries of a channel whose text is decided: sent if unchanged, dropped otherwise.
    fn release_entries(&mut self, name: &str, all: bool) -> Vec<Value> {
        let Some(c) = self.channels.get_mut(name) else {
            return Vec::new();
        };
        let decided = if all || c.redactor.blocked() {
            usize::MAX
        } else {
            c.redactor.decided()
        };
        let mut out = Vec::new();
        while let Some((s, e, _)) = c.pending.front() {
            let (s, e) = (*s, *e);
            if e > decided {
                break;
            }
            let Some((_, _, v)) = c.pending.pop_front() else {
                break;
            };
            let touched = c.redactor.blocked() && e > c.redactor.decided()
                || c.changed
                    .iter()
                    .any(|(cs, ce)| s < *ce && *cs < e.max(s + 1));
            if !touched {
                out.push(v);
            }
        }
        out
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    /// Dropped fields by schema path (never their values).
    pub fn dropped(&self) -> &BTreeMap<String, u32> {
        &self.dropped
    }

    pub fn allow_tools(&mut self, globs: Option<Vec<String>>) {
        self.allowed_tools = globs;
    }

    pub fn unknown_fields(&mut self, policy: UnknownFields) {
        self.unknown = policy;
    }
}

/// The bytes a log-probability entry spells: `bytes` when present, else its token.
fn entry_bytes(v: &Value) -> Option<Vec<u8>> {
    if let Some(b) = v.get("bytes").and_then(Value::as_array) {
        return b
            .iter()
            .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect();
    }
    v.get("token")
        .and_then(Value::as_str)
        .map(|t| t.as_bytes().to_vec())
}

impl ModelOutput for Channels<'_> {
    fn stream(&mut self, channel: &str, text: &str) -> String {
        let c = self.channel(channel);
        let mut out = String::new();
        c.last_start = c.pushed;
        c.last_len = text.len();
        c.pushed += text.len();
        c.redactor.push_str(text, &mut out);
        self.collect(channel);
        out
    }

    fn logprobs(&mut self, channel: &str, entries: Vec<Value>) -> Vec<Value> {
        let c = self.channel(channel);
        let (start, len) = (c.last_start, c.last_len);
        // Entries describe one push; a second call for the same push spells nothing.
        c.last_len = 0;
        // The entries must spell exactly the text they came with; otherwise none is trusted.
        let spans: Option<Vec<Vec<u8>>> = entries.iter().map(entry_bytes).collect();
        let consistent = spans
            .as_ref()
            .is_some_and(|s| s.iter().map(Vec::len).sum::<usize>() == len);
        if !consistent {
            if !entries.is_empty() {
                *self
                    .dropped
                    .entry("logprobs (inconsistent)".into())
                    .or_default() += 1;
            }
            return self.release_entries(channel, false);
        }
        let mut at = start;
        for (v, b) in entries.into_iter().zip(spans.unwrap_or_default()) {
            let end = at + b.len();
            let v = clean_entry(v, self);
            let c = self.channel(channel);
            c.pending.push_back((at, end, v));
            at = end;
        }
        self.release_entries(channel, false)
    }

    fn finish(&mut self, channel: &str) -> (String, Vec<Value>) {
        let mut out = String::new();
        if let Some(c) = self.channels.get_mut(channel) {
            c.redactor.finish(&mut out);
        }
        self.collect(channel);
        let entries = self.release_entries(channel, true);
        (out, entries)
    }

    fn holding(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.redactor.held() > 0)
    }

    fn whole(&mut self, text: &str) -> String {
        let r = self.scanner.redact(text);
        if r.blocked {
            self.blocked = true;
        }
        self.findings.extend(r.findings.into_iter().map(|mut f| {
            f.channel = "field".into();
            f
        }));
        r.text
    }

    fn tool(&mut self, name: &str) -> bool {
        if tools::tool_allowed(self.allowed_tools.as_deref(), name) {
            return true;
        }
        self.findings.push(tool_finding());
        self.blocked = true;
        false
    }

    fn dropped(&mut self, path: &str) {
        *self.dropped.entry(path.to_string()).or_default() += 1;
        if self.unknown == UnknownFields::Block && !self.blocked {
            self.blocked = true;
            self.findings.push(Finding {
                detector: "unknown_field".into(),
                category: Category::Custom,
                action: Action::Block,
                start: 0,
                end: 0,
                channel: String::new(),
                fingerprint: None,
            });
        }
    }

    fn blocked(&self) -> bool {
        self.blocked
    }
}

/// A log-probability entry with only its known fields; the alternatives' tokens are model
/// text never shown in the answer, so each is judged whole and dropped if anything fires.
fn clean_entry(v: Value, m: &mut Channels<'_>) -> Value {
    let Value::Object(src) = v else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (k, v) in src {
        match k.as_str() {
            "token" | "logprob" | "bytes" => {
                out.insert(k, v);
            }
            "top_logprobs" => {
                let alts: Vec<Value> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| {
                        let t = a.get("token").and_then(Value::as_str)?;
                        let r = m.scanner.redact(t);
                        if !r.findings.is_empty() {
                            m.findings.extend(r.findings);
                            return None;
                        }
                        let mut o = serde_json::Map::new();
                        for key in ["token", "logprob", "bytes"] {
                            if let Some(x) = a.get(key) {
                                o.insert(key.into(), x.clone());
                            }
                        }
                        Some(Value::Object(o))
                    })
                    .collect();
                out.insert(k, Value::Array(alts));
            }
            other => {
                let path = format!("logprobs.{other}");
                m.dropped(&path);
            }
        }
    }
    Value::Object(out)
}

fn tool_finding() -> Finding {
    Finding {
        detector: "tool_not_allowed".into(),
        category: Category::Tool,
        action: Action::Block,
        start: 0,
        end: 0,
        channel: String::new(),
        fingerprint: None,
    }
}

/// A filter for one streamed response.
pub struct StreamFilter<'s> {
    protocol: Protocol,
    parser: SseParser,
    schema: Box<dyn StreamSchema>,
    channels: Channels<'s>,
    findings: Vec<Finding>,
    outcome: Outcome,
    events: Vec<crate::protocol::sse::SseEvent>,
}

impl<'s> StreamFilter<'s> {
    pub fn new(scanner: &'s Scanner, protocol: Protocol) -> Self {
        StreamFilter {
            protocol,
            parser: SseParser::new(MAX_EVENT_BYTES),
            schema: protocol.wire().stream_schema(),
            channels: Channels::new(scanner),
            findings: Vec::new(),
            outcome: Outcome::Open,
            events: Vec::new(),
        }
    }

    /// Blocks the stream at a tool call naming a tool outside `globs`, before any of its
    /// arguments are sent.
    pub fn allow_tools(&mut self, globs: Option<Vec<String>>) {
        self.channels.allow_tools(globs);
    }

    /// Keeps usage-only chunks from the client (the gateway asked for them on its own).
    pub fn hide_usage_chunks(&mut self) {
        self.schema.hide_usage();
    }

    /// What to do with fields outside the schema.
    pub fn unknown_fields(&mut self, policy: UnknownFields) {
        self.channels.unknown_fields(policy);
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Dropped fields by schema path.
    pub fn dropped(&self) -> &BTreeMap<String, u32> {
        self.channels.dropped()
    }

    /// The `usage` object the origin reported, if any.
    pub fn usage(&self) -> Option<&Value> {
        self.schema.usage()
    }

    fn collect(&mut self) {
        self.findings.extend(self.channels.take_findings());
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
            let flow = self.schema.event(ev, &mut self.channels, out);
            self.collect();
            match flow {
                Flow::Open => {}
                Flow::Complete => self.outcome = Outcome::Complete,
                Flow::Blocked => self.outcome = Outcome::Blocked,
                Flow::UpstreamError => self.outcome = Outcome::Truncated,
                Flow::Malformed(message) => self.malformed(out, message),
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
            self.collect();
            self.protocol
                .wire()
                .error_event(
                    "upstream_incomplete",
                    "The AI origin ended the stream before finishing.",
                )
                .write(out);
        }
    }

    fn malformed(&mut self, out: &mut Vec<u8>, message: &str) {
        if self.outcome != Outcome::Open {
            return;
        }
        self.outcome = Outcome::Malformed;
        self.collect();
        self.protocol
            .wire()
            .error_event("upstream_malformed", message)
            .write(out);
    }
}

/// A whole response after filtering.
pub struct FilteredBody {
    pub body: Vec<u8>,
    pub findings: Vec<Finding>,
    /// The `usage` object the origin reported.
    pub usage: Option<Value>,
    /// Dropped fields by schema path.
    pub dropped: BTreeMap<String, u32>,
}

/// Filters a whole (non-streamed) response body through the protocol's schema. A block (a
/// detector, a refused tool call, or an unknown field under [`UnknownFields::Block`]) becomes
/// an error.
pub fn filter_json(
    scanner: &Scanner,
    protocol: Protocol,
    body: &[u8],
    allowed_tools: Option<&[String]>,
) -> Result<FilteredBody, FilterError> {
    filter_json_with(scanner, protocol, body, allowed_tools, UnknownFields::Drop)
}

/// [`filter_json`] with a policy for unknown fields.
pub fn filter_json_with(
    scanner: &Scanner,
    protocol: Protocol,
    body: &[u8],
    allowed_tools: Option<&[String]>,
    unknown: UnknownFields,
) -> Result<FilteredBody, FilterError> {
    // Clients skip a UTF-8 byte-order mark; so does the gateway.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let v: Value = serde_json::from_slice(body).map_err(|_| FilterError::Unparseable)?;
    let mut m = Channels::new(scanner);
    m.allow_tools(allowed_tools.map(<[String]>::to_vec));
    m.unknown_fields(unknown);
    let usage = v.get("usage").cloned();
    let filtered = protocol
        .wire()
        .filter_body(v, &mut m)
        .ok_or(FilterError::Unparseable)?;
    if m.blocked {
        return Err(FilterError::Blocked(m.findings));
    }
    let body = serde_json::to_vec(&filtered).map_err(|_| FilterError::Unparseable)?;
    Ok(FilteredBody {
        body,
        findings: m.findings,
        usage,
        dropped: m.dropped,
    })
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
