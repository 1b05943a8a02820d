//! Every model-controlled channel of every protocol, streamed and whole: a planted secret,
//! e-mail address and canary never reach the client, whatever the split, checked on the bytes
//! the client receives and on the strings a client reassembles (JSON decoded, fields joined
//! across events); the benign text around each value arrives unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeguard::output::filter::{filter_json, Outcome, StreamFilter};
use edgeguard::output::{catalog, CatalogConfig, Scanner};
use edgeguard::protocol::Protocol;
use proptest::prelude::*;
use serde_json::{json, Value};

const CANARY: &str = "EGCANARY-0001";
const SECRET: &str = "AKIAZ3MSJV4WWNKWW5FG";
const EMAIL: &str = "jane.doe@corp-mail.io";

fn scanner() -> Scanner {
    let cfg = CatalogConfig {
        canaries: vec![CANARY.into()],
        ..CatalogConfig::default()
    };
    Scanner::new(catalog(&cfg).unwrap(), 512)
}

/// A streamed channel: how to wrap one piece of text as an event, and where a client reads it.
struct Channel {
    name: &'static str,
    protocol: Protocol,
    /// Events before the text (a block start), the event for one piece, events after.
    start: fn() -> Vec<String>,
    piece: fn(&str) -> String,
    /// Events after the text; they may repeat the whole text (Responses `.done` events).
    end: fn(&str) -> Vec<String>,
    read: fn(&Value) -> Option<String>,
}

fn oa(delta: Value) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
    )
}

fn oa_end() -> Vec<String> {
    vec![
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ),
        "data: [DONE]\n\n".into(),
    ]
}

fn delta(v: &Value) -> Option<&Value> {
    v.pointer("/choices/0/delta")
}

fn an(name: &str, v: Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

fn an_start(block: Value) -> Vec<String> {
    vec![
        an(
            "message_start",
            json!({"type": "message_start", "message": {"id": "m1", "type": "message",
                   "role": "assistant", "model": "claude", "content": [],
                   "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ),
        an(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
    ]
}

fn an_end() -> Vec<String> {
    vec![
        an(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        an(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                   "usage": {"output_tokens": 9}}),
        ),
        an("message_stop", json!({"type": "message_stop"})),
    ]
}

fn an_delta(v: &Value, kind: &str, field: &str) -> Option<String> {
    (v["type"] == "content_block_delta" && v["delta"]["type"] == kind)
        .then(|| v["delta"][field].as_str().map(String::from))
        .flatten()
}

fn rs(v: Value) -> String {
    let name = v["type"].as_str().unwrap_or("message").to_string();
    format!("event: {name}\ndata: {v}\n\n")
}

fn rs_created() -> String {
    rs(
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1",
        "object": "response", "created_at": 1, "status": "in_progress", "model": "gpt-5",
        "output": [], "usage": null}}),
    )
}

fn rs_completed(item: Value) -> String {
    rs(
        json!({"type": "response.completed", "response": {"id": "resp_1", "object": "response",
        "created_at": 1, "status": "completed", "model": "gpt-5", "output": [item],
        "usage": {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14}}}),
    )
}

fn rs_message_start(part: &str) -> Vec<String> {
    vec![
        rs_created(),
        rs(
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message",
            "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        rs(
            json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "part": {"type": part, part_field(part): "", "annotations": []}}),
        ),
    ]
}

fn part_field(part: &str) -> &'static str {
    if part == "refusal" {
        "refusal"
    } else {
        "text"
    }
}

fn rs_message_end(part: &str, done: &str, text: &str) -> Vec<String> {
    let f = part_field(part);
    let full = json!({"type": part, f: text});
    let item = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
        "content": [full.clone()]});
    vec![
        rs(
            json!({"type": done, "item_id": "msg_1", "output_index": 0, "content_index": 0, f: text}),
        ),
        rs(
            json!({"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "part": full}),
        ),
        rs(json!({"type": "response.output_item.done", "output_index": 0, "item": item.clone()})),
        rs_completed(item),
    ]
}

fn rs_read(v: &Value, kind: &str) -> Option<String> {
    (v["type"] == kind)
        .then(|| v["delta"].as_str().map(String::from))
        .flatten()
}

fn channels() -> Vec<Channel> {
    vec![
        Channel {
            name: "responses output_text.delta",
            protocol: Protocol::OpenAiResponses,
            start: || rs_message_start("output_text"),
            piece: |t| {
                rs(
                    json!({"type": "response.output_text.delta", "item_id": "msg_1",
                          "output_index": 0, "content_index": 0, "delta": t}),
                )
            },
            end: |text| rs_message_end("output_text", "response.output_text.done", text),
            read: |v| rs_read(v, "response.output_text.delta"),
        },
        Channel {
            name: "responses refusal.delta",
            protocol: Protocol::OpenAiResponses,
            start: || rs_message_start("refusal"),
            piece: |t| {
                rs(json!({"type": "response.refusal.delta", "item_id": "msg_1",
                          "output_index": 0, "content_index": 0, "delta": t}))
            },
            end: |text| rs_message_end("refusal", "response.refusal.done", text),
            read: |v| rs_read(v, "response.refusal.delta"),
        },
        Channel {
            name: "responses function_call_arguments.delta",
            protocol: Protocol::OpenAiResponses,
            start: || {
                vec![
                    rs_created(),
                    rs(
                        json!({"type": "response.output_item.added", "output_index": 0, "item": {
                        "type": "function_call", "id": "fc_1", "call_id": "call_1",
                        "name": "lookup", "arguments": "", "status": "in_progress"}}),
                    ),
                ]
            },
            piece: |t| {
                rs(
                    json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                          "output_index": 0, "delta": t}),
                )
            },
            end: |text| {
                let item = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                    "name": "lookup", "arguments": text, "status": "completed"});
                vec![
                    rs(
                        json!({"type": "response.function_call_arguments.done", "item_id": "fc_1",
                              "output_index": 0, "arguments": text}),
                    ),
                    rs(
                        json!({"type": "response.output_item.done", "output_index": 0, "item": item.clone()}),
                    ),
                    rs_completed(item),
                ]
            },
            read: |v| rs_read(v, "response.function_call_arguments.delta"),
        },
        Channel {
            name: "responses reasoning_summary_text.delta",
            protocol: Protocol::OpenAiResponses,
            start: || {
                vec![
                    rs_created(),
                    rs(
                        json!({"type": "response.output_item.added", "output_index": 0, "item": {
                        "type": "reasoning", "id": "rs_1", "summary": []}}),
                    ),
                    rs(
                        json!({"type": "response.reasoning_summary_part.added", "item_id": "rs_1",
                              "output_index": 0, "summary_index": 0,
                              "part": {"type": "summary_text", "text": ""}}),
                    ),
                ]
            },
            piece: |t| {
                rs(
                    json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
                          "output_index": 0, "summary_index": 0, "delta": t}),
                )
            },
            end: |text| {
                let item = json!({"type": "reasoning", "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": text}]});
                vec![
                    rs(
                        json!({"type": "response.reasoning_summary_text.done", "item_id": "rs_1",
                              "output_index": 0, "summary_index": 0, "text": text}),
                    ),
                    rs(
                        json!({"type": "response.output_item.done", "output_index": 0, "item": item.clone()}),
                    ),
                    rs_completed(item),
                ]
            },
            read: |v| rs_read(v, "response.reasoning_summary_text.delta"),
        },
        Channel {
            name: "openai delta.content",
            protocol: Protocol::OpenAiChat,
            start: || vec![oa(json!({"role": "assistant", "content": ""}))],
            piece: |t| oa(json!({ "content": t })),
            end: |_| oa_end(),
            read: |v| delta(v)?.get("content")?.as_str().map(String::from),
        },
        Channel {
            name: "openai delta.content parts",
            protocol: Protocol::OpenAiChat,
            start: Vec::new,
            piece: |t| oa(json!({"content": [{"type": "text", "text": t}]})),
            end: |_| oa_end(),
            read: |v| {
                let parts = delta(v)?.get("content")?;
                match parts {
                    Value::String(s) => Some(s.clone()),
                    Value::Array(a) => Some(
                        a.iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<String>(),
                    ),
                    _ => None,
                }
            },
        },
        Channel {
            name: "openai delta.refusal",
            protocol: Protocol::OpenAiChat,
            start: Vec::new,
            piece: |t| oa(json!({ "refusal": t })),
            end: |_| oa_end(),
            read: |v| delta(v)?.get("refusal")?.as_str().map(String::from),
        },
        Channel {
            name: "openai delta.reasoning_content",
            protocol: Protocol::OpenAiChat,
            start: Vec::new,
            piece: |t| oa(json!({ "reasoning_content": t })),
            end: |_| oa_end(),
            read: |v| {
                delta(v)?
                    .get("reasoning_content")?
                    .as_str()
                    .map(String::from)
            },
        },
        Channel {
            name: "openai delta.reasoning",
            protocol: Protocol::OpenAiChat,
            start: Vec::new,
            piece: |t| oa(json!({ "reasoning": t })),
            end: |_| oa_end(),
            read: |v| delta(v)?.get("reasoning")?.as_str().map(String::from),
        },
        Channel {
            name: "openai tool_calls[].function.arguments",
            protocol: Protocol::OpenAiChat,
            start: || {
                vec![oa(
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                             "function": {"name": "lookup", "arguments": ""}}]}),
                )]
            },
            piece: |t| oa(json!({"tool_calls": [{"index": 0, "function": {"arguments": t}}]})),
            end: |_| oa_end(),
            read: |v| {
                delta(v)?
                    .pointer("/tool_calls/0/function/arguments")?
                    .as_str()
                    .map(String::from)
            },
        },
        Channel {
            name: "openai function_call.arguments",
            protocol: Protocol::OpenAiChat,
            start: || {
                vec![oa(
                    json!({"function_call": {"name": "lookup", "arguments": ""}}),
                )]
            },
            piece: |t| oa(json!({"function_call": {"arguments": t}})),
            end: |_| oa_end(),
            read: |v| {
                delta(v)?
                    .pointer("/function_call/arguments")?
                    .as_str()
                    .map(String::from)
            },
        },
        Channel {
            name: "openai audio.transcript",
            protocol: Protocol::OpenAiChat,
            start: Vec::new,
            piece: |t| oa(json!({"audio": {"id": "audio_1", "transcript": t}})),
            end: |_| oa_end(),
            read: |v| {
                delta(v)?
                    .pointer("/audio/transcript")?
                    .as_str()
                    .map(String::from)
            },
        },
        Channel {
            name: "anthropic text_delta",
            protocol: Protocol::AnthropicMessages,
            start: || an_start(json!({"type": "text", "text": ""})),
            piece: |t| {
                an(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": t}}),
                )
            },
            end: |_| an_end(),
            read: |v| {
                an_delta(v, "text_delta", "text").or_else(|| {
                    v.pointer("/content_block/text")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
            },
        },
        Channel {
            name: "anthropic thinking_delta",
            protocol: Protocol::AnthropicMessages,
            start: || an_start(json!({"type": "thinking", "thinking": "", "signature": ""})),
            piece: |t| {
                an(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "thinking_delta", "thinking": t}}),
                )
            },
            end: |_| {
                let mut v = vec![an(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "signature_delta", "signature": "c2ln"}}),
                )];
                v.extend(an_end());
                v
            },
            read: |v| an_delta(v, "thinking_delta", "thinking"),
        },
        Channel {
            name: "anthropic input_json_delta",
            protocol: Protocol::AnthropicMessages,
            start: || {
                an_start(
                    json!({"type": "tool_use", "id": "toolu_1", "name": "lookup",
                                "input": {}}),
                )
            },
            piece: |t| {
                an(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "input_json_delta", "partial_json": t}}),
                )
            },
            end: |_| an_end(),
            read: |v| an_delta(v, "input_json_delta", "partial_json"),
        },
    ]
}

/// Splits `text` at the given cut points (character boundaries).
fn pieces(text: &str, cuts: &[usize]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c % (text.len() + 1))
        .filter(|p| text.is_char_boundary(*p))
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(text[last..p].to_string());
        last = p;
    }
    out.push(text[last..].to_string());
    out.retain(|p| !p.is_empty());
    out
}

/// Streams `text` on a channel, in `pieces`, the wire cut at `byte_cuts`.
fn stream(ch: &Channel, text: &str, cuts: &[usize], byte_cuts: &[usize]) -> (Vec<u8>, Outcome) {
    let mut wire = String::new();
    for e in (ch.start)() {
        wire.push_str(&e);
    }
    for p in pieces(text, cuts) {
        wire.push_str(&(ch.piece)(&p));
    }
    for e in (ch.end)(text) {
        wire.push_str(&e);
    }
    let s = scanner();
    let mut f = StreamFilter::new(&s, ch.protocol);
    let bytes = wire.as_bytes();
    let mut out = Vec::new();
    let mut points: Vec<usize> = byte_cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut last = 0;
    for p in points {
        f.feed(&bytes[last..p], &mut out);
        last = p;
    }
    f.feed(&bytes[last..], &mut out);
    f.end(&mut out);
    (out, f.outcome())
}

/// The JSON of every event the client receives.
fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad event {d:?}: {e}")))
        .collect()
}

fn reassembled(ch: &Channel, out: &[u8]) -> String {
    events(out).iter().filter_map(|v| (ch.read)(v)).collect()
}

/// Everything a client could decode from the stream, joined: no value may hide anywhere.
fn all_strings(out: &[u8]) -> String {
    fn walk(v: &Value, acc: &mut String) {
        match v {
            Value::String(s) => acc.push_str(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, acc)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                acc.push_str(k);
                walk(x, acc);
            }),
            _ => {}
        }
    }
    let mut acc = String::new();
    for e in events(out) {
        walk(&e, &mut acc);
        acc.push('\n');
    }
    acc
}

fn assert_clean(name: &str, out: &[u8], value: &str) {
    let raw = String::from_utf8_lossy(out);
    assert!(
        !raw.contains(value),
        "{name}: {value} in the client's bytes"
    );
    let strings = all_strings(out);
    assert!(
        !strings.contains(value),
        "{name}: {value} in the decoded strings"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn redacted_values_never_reach_the_client_on_any_channel(
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        byte_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let text = format!("before {SECRET} middle {EMAIL} after");
        for ch in channels() {
            let (out, outcome) = stream(&ch, &text, &cuts, &byte_cuts);
            prop_assert_eq!(outcome, Outcome::Complete, "{}", ch.name);
            assert_clean(ch.name, &out, SECRET);
            assert_clean(ch.name, &out, EMAIL);
            prop_assert_eq!(
                reassembled(&ch, &out),
                "before [REDACTED:aws_access_key] middle [REDACTED:email] after",
                "{}", ch.name
            );
        }
    }

    #[test]
    fn a_canary_ends_the_answer_on_any_channel(
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        byte_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let text = format!("before {CANARY} after");
        for ch in channels() {
            let (out, outcome) = stream(&ch, &text, &cuts, &byte_cuts);
            prop_assert_eq!(outcome, Outcome::Blocked, "{}", ch.name);
            assert_clean(ch.name, &out, CANARY);
            assert_clean(ch.name, &out, "after");
            let got = reassembled(&ch, &out);
            prop_assert!("before ".starts_with(&got) && got.starts_with("before"),
                "{}: {:?}", ch.name, got);
            let s = String::from_utf8_lossy(&out);
            prop_assert!(s.contains("content_filter") || s.contains("\"refusal\""),
                "{}: no clean ending", ch.name);
        }
    }

    #[test]
    fn benign_text_arrives_unchanged_and_as_it_streams(
        cuts in prop::collection::vec(any::<usize>(), 3..12),
    ) {
        let text = "The quick brown fox jumps over the lazy dog, then naps in the sun. ";
        for ch in channels() {
            let (out, outcome) = stream(&ch, text, &cuts, &[]);
            prop_assert_eq!(outcome, Outcome::Complete, "{}", ch.name);
            prop_assert_eq!(reassembled(&ch, &out), text, "{}", ch.name);
        }
    }
}

#[test]
fn benign_text_is_not_held_to_the_end() {
    // Word by word: every word but the last leaves the filter before the stream ends.
    let words: Vec<String> = "one two three four five six seven eight nine ten "
        .split_inclusive(' ')
        .map(String::from)
        .collect();
    for ch in channels() {
        let s = scanner();
        let mut f = StreamFilter::new(&s, ch.protocol);
        let mut out = Vec::new();
        for e in (ch.start)() {
            f.feed(e.as_bytes(), &mut out);
        }
        for w in &words {
            f.feed((ch.piece)(w).as_bytes(), &mut out);
        }
        let before_end = reassembled(&ch, &out);
        assert!(
            before_end.starts_with("one two three four five six seven eight nine"),
            "{}: only {before_end:?} before the end",
            ch.name
        );
    }
}

/// Short model-written values judged whole: tool names, ids, citations, annotation fields.
#[test]
fn whole_values_in_streams() {
    let s = scanner();
    let run = |proto: Protocol, wire: &str| {
        let mut f = StreamFilter::new(&s, proto);
        let mut out = Vec::new();
        f.feed(wire.as_bytes(), &mut out);
        f.end(&mut out);
        (out, f.outcome())
    };
    // A canary as a tool name blocks; an e-mail address as a tool name is redacted.
    let wire = oa(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": CANARY, "arguments": ""}}]}),
    ) + &oa_end().concat();
    let (out, outcome) = run(Protocol::OpenAiChat, &wire);
    assert_eq!(outcome, Outcome::Blocked);
    assert_clean("tool name", &out, CANARY);
    let wire = oa(
        json!({"tool_calls": [{"index": 0, "id": EMAIL, "type": "function",
                         "function": {"name": "lookup", "arguments": "{}"}}],
                         "annotations": [{"type": "url_citation", "url_citation": {
                             "url": format!("https://x.io/?k={SECRET}"), "title": EMAIL,
                             "start_index": 0, "end_index": 1}}]}),
    ) + &oa_end().concat();
    let (out, outcome) = run(Protocol::OpenAiChat, &wire);
    assert_eq!(outcome, Outcome::Complete);
    assert_clean("tool id and annotations", &out, EMAIL);
    assert_clean("tool id and annotations", &out, SECRET);

    // Anthropic: a tool name, tool input keys and values in the block start, citations,
    // message_start content, thinking in the block start.
    let mut wire =
        an_start(json!({"type": "tool_use", "id": "toolu_1", "name": CANARY, "input": {}}))
            .concat();
    wire += &an_end().concat();
    let (out, outcome) = run(Protocol::AnthropicMessages, &wire);
    assert_eq!(outcome, Outcome::Blocked);
    assert_clean("anthropic tool name", &out, CANARY);
    let mut wire = an_start(
        json!({"type": "tool_use", "id": "toolu_1", "name": "lookup",
                                   "input": {EMAIL: SECRET}}),
    )
    .concat();
    wire += &an(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "citations_delta", "citation": {"type": "char_location",
                         "cited_text": EMAIL, "document_index": 0, "start_char_index": 0,
                         "end_char_index": 5}}}),
    );
    wire += &an_end().concat();
    let (out, _) = run(Protocol::AnthropicMessages, &wire);
    assert_clean("anthropic tool input and citations", &out, EMAIL);
    assert_clean("anthropic tool input and citations", &out, SECRET);
    let wire = an(
        "message_start",
        json!({"type": "message_start", "message": {"id": "m", "type": "message",
               "role": "assistant", "model": "c", "usage": {"input_tokens": 1},
               "content": [{"type": "text", "text": format!("hi {EMAIL}")}]}}),
    ) + &an(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "thinking", "thinking": format!("{SECRET} "), "signature": ""}}),
    ) + &an_end().concat();
    let (out, _) = run(Protocol::AnthropicMessages, &wire);
    assert_clean("message_start and block start", &out, EMAIL);
    assert_clean("message_start and block start", &out, SECRET);
}

/// Fields outside the schema are dropped, streamed and whole.
#[test]
fn unknown_fields_are_dropped() {
    let s = scanner();
    let mut f = StreamFilter::new(&s, Protocol::OpenAiChat);
    let mut out = Vec::new();
    let wire = format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "provider_secret": SECRET, "choices": [{"index": 0, "new_field": EMAIL,
               "delta": {"content": "hi ", "future": SECRET}, "finish_reason": null}]})
    ) + &oa_end().concat();
    f.feed(wire.as_bytes(), &mut out);
    f.end(&mut out);
    assert_clean("unknown stream fields", &out, SECRET);
    assert_clean("unknown stream fields", &out, EMAIL);
    assert_eq!(f.dropped().values().sum::<u32>(), 3, "{:?}", f.dropped());

    let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "extra": SECRET, "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "hi", "secret_field": EMAIL}}]});
    let r = filter_json(&s, Protocol::OpenAiChat, body.to_string().as_bytes(), None).unwrap();
    assert_clean("unknown body fields", &r.body, SECRET);
    assert_clean("unknown body fields", &r.body, EMAIL);
    assert_eq!(r.dropped.values().sum::<u32>(), 2);
}

/// Whole responses: every channel of a chat completion and a Messages response.
#[test]
fn whole_bodies_every_channel() {
    let s = scanner();
    let planted = format!("before {SECRET} middle {EMAIL} after");
    let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": planted, "refusal": planted,
            "reasoning_content": planted, "reasoning": planted,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup", "arguments": planted}}],
            "function_call": {"name": "lookup", "arguments": planted},
            "audio": {"id": "a", "transcript": planted, "data": SECRET, "expires_at": 1},
            "annotations": [{"type": "url_citation", "url_citation":
                {"url": planted, "title": planted, "start_index": 0, "end_index": 1}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}});
    let r = filter_json(&s, Protocol::OpenAiChat, body.to_string().as_bytes(), None).unwrap();
    assert_clean("openai whole", &r.body, SECRET);
    assert_clean("openai whole", &r.body, EMAIL);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let msg = &v["choices"][0]["message"];
    let want = "before [REDACTED:aws_access_key] middle [REDACTED:email] after";
    for p in [
        "/content",
        "/refusal",
        "/reasoning_content",
        "/reasoning",
        "/tool_calls/0/function/arguments",
        "/function_call/arguments",
        "/audio/transcript",
    ] {
        assert_eq!(msg.pointer(p).and_then(Value::as_str), Some(want), "{p}");
    }
    let parts = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": [{"type": "text", "text": planted}]}}]});
    let r = filter_json(&s, Protocol::OpenAiChat, parts.to_string().as_bytes(), None).unwrap();
    assert_clean("openai content parts", &r.body, SECRET);

    let body = json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2},
        "content": [
            {"type": "thinking", "thinking": planted, "signature": "sig"},
            {"type": "text", "text": planted, "citations": [{"type": "char_location",
             "cited_text": planted, "document_index": 0, "start_char_index": 0, "end_char_index": 1}]},
            {"type": "tool_use", "id": "t", "name": "lookup", "input": {"q": planted, EMAIL: 1}},
            {"type": "web_search_tool_result", "tool_use_id": "t", "content": planted}]});
    let r = filter_json(
        &s,
        Protocol::AnthropicMessages,
        body.to_string().as_bytes(),
        None,
    )
    .unwrap();
    assert_clean("anthropic whole", &r.body, SECRET);
    assert_clean("anthropic whole", &r.body, EMAIL);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["content"][0]["thinking"], want);
    assert_eq!(v["content"][0]["signature"], "sig");
    assert_eq!(v["content"][1]["text"], want);
    assert_eq!(
        v["content"].as_array().unwrap().len(),
        3,
        "unknown block dropped"
    );

    // A canary anywhere in a whole body withholds it.
    let canary = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "hi", "reasoning_content": CANARY}}]});
    assert!(filter_json(
        &s,
        Protocol::OpenAiChat,
        canary.to_string().as_bytes(),
        None
    )
    .is_err());
}

/// logprobs: entries go out only for text released unchanged, so a client cannot rebuild a
/// redacted value from the tokens.
#[test]
fn logprobs_cannot_rebuild_a_redacted_value() {
    let s = scanner();
    let tokens = [
        "My", " key", " is", " AK", "IAZ3", "MSJV", "4WWN", "KWW5", "FG", " ok", ".",
    ];
    let mut wire = String::new();
    for t in tokens {
        let entry = json!({"token": t, "logprob": -0.1, "bytes": t.as_bytes(),
                           "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": t.as_bytes()}]});
        wire += &format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": t},
                                "logprobs": {"content": [entry]}, "finish_reason": null}]})
        );
    }
    wire += &oa_end().concat();
    for cut in [1usize, 7, 50, 10_000] {
        let mut f = StreamFilter::new(&s, Protocol::OpenAiChat);
        let mut out = Vec::new();
        for c in wire.as_bytes().chunks(cut) {
            f.feed(c, &mut out);
        }
        f.end(&mut out);
        let tokens: String = events(&out)
            .iter()
            .flat_map(|v| {
                v.pointer("/choices/0/logprobs/content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|e| e["token"].as_str().map(String::from))
            .collect();
        assert_eq!(tokens, "My key is ok.", "cut {cut}");
        assert_clean("logprobs", &out, "IAZ3");
        assert_clean("logprobs", &out, "MSJV");
    }

    // Whole: same rule.
    let entries: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t, "logprob": -0.1, "bytes": t.as_bytes(), "top_logprobs": []}))
        .collect();
    let body = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": {"content": entries},
                     "message": {"role": "assistant", "content": tokens.concat()}}]});
    let r = filter_json(&s, Protocol::OpenAiChat, body.to_string().as_bytes(), None).unwrap();
    assert_clean("whole logprobs", &r.body, "IAZ3");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let kept: String = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["token"].as_str())
        .collect();
    assert_eq!(kept, "My key is ok.");

    // Entries that do not spell their text are not trusted at all.
    let lying = format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"content": "hello "},
                            "logprobs": {"content": [{"token": SECRET, "logprob": 0.0}]},
                            "finish_reason": null}]})
    ) + &oa_end().concat();
    let mut f = StreamFilter::new(&s, Protocol::OpenAiChat);
    let mut out = Vec::new();
    f.feed(lying.as_bytes(), &mut out);
    f.end(&mut out);
    assert_clean("lying logprobs", &out, SECRET);
}

/// Anthropic: the held end of a thinking block goes out as thinking, before the signature.
#[test]
fn thinking_is_flushed_as_thinking_before_its_signature() {
    let s = scanner();
    let ch = channels()
        .into_iter()
        .find(|c| c.name == "anthropic thinking_delta")
        .unwrap();
    let ch = &ch;
    let (out, outcome) = stream(ch, "I think the answer is forty two", &[5, 12, 20], &[]);
    assert_eq!(outcome, Outcome::Complete);
    let evs = events(&out);
    let sig = evs
        .iter()
        .position(|v| v["delta"]["type"] == "signature_delta")
        .unwrap();
    let last_thinking = evs
        .iter()
        .rposition(|v| v["delta"]["type"] == "thinking_delta")
        .unwrap();
    assert!(last_thinking < sig);
    assert_eq!(reassembled(ch, &out), "I think the answer is forty two");
    assert!(
        !evs.iter().any(|v| v["delta"]["type"] == "text_delta"),
        "no text in a thinking block"
    );
    // No empty deltas while text is held.
    assert!(!evs
        .iter()
        .any(|v| v["delta"]["thinking"] == "" || v["delta"]["text"] == ""));
    let _ = s;
}

/// Responses: a whole body's every channel, and items outside the schema dropped with the
/// rest renumbered so a client indexing its snapshot by `output_index` stays consistent.
#[test]
fn responses_whole_and_renumbered() {
    let s = scanner();
    let planted = format!("before {SECRET} middle {EMAIL} after");
    let want = "before [REDACTED:aws_access_key] middle [REDACTED:email] after";
    let body = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
        "model": "gpt-5", "future_field": SECRET, "usage": {"input_tokens": 1, "output_tokens": 2},
        "output": [
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"query": planted}},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": planted}]},
            {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "lookup", "arguments": planted},
            {"type": "message", "id": "m", "role": "assistant", "status": "completed", "content": [
                {"type": "output_text", "text": planted, "annotations": [{"type": "url_citation",
                 "url": format!("https://x.io/{EMAIL}"), "title": "t", "start_index": 0, "end_index": 1}]},
                {"type": "refusal", "refusal": planted}]}]});
    let r = filter_json(
        &s,
        Protocol::OpenAiResponses,
        body.to_string().as_bytes(),
        None,
    )
    .unwrap();
    assert_clean("responses whole", &r.body, SECRET);
    assert_clean("responses whole", &r.body, EMAIL);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 3, "the built-in tool call is dropped");
    assert_eq!(out[0]["summary"][0]["text"], want);
    assert_eq!(out[1]["arguments"], want);
    assert_eq!(out[2]["content"][0]["text"], want);
    assert_eq!(out[2]["content"][1]["refusal"], want);

    // Streamed: the dropped item's events vanish and the message is announced as index 0.
    let wire = rs_created()
        + &rs(
            json!({"type": "response.output_item.added", "output_index": 0,
                     "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress"}}),
        )
        + &rs(
            json!({"type": "response.web_search_call.completed", "output_index": 0, "item_id": "ws_1"}),
        )
        + &rs(
            json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "message",
                     "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}),
        )
        + &rs(
            json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 1,
                     "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        )
        + &rs(
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1,
                     "content_index": 0, "delta": "hello "}),
        )
        + &rs(
            json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 1,
                     "content_index": 0, "text": "hello "}),
        )
        + &rs_completed(
            json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                               "content": [{"type": "output_text", "text": "hello ", "annotations": []}]}),
        );
    let mut f = StreamFilter::new(&s, Protocol::OpenAiResponses);
    let mut out = Vec::new();
    f.feed(wire.as_bytes(), &mut out);
    f.end(&mut out);
    assert_eq!(f.outcome(), Outcome::Complete);
    let evs = events(&out);
    assert!(
        evs.iter()
            .all(|e| e["output_index"].as_u64().is_none_or(|i| i == 0)),
        "{evs:?}"
    );
    assert!(!evs
        .iter()
        .any(|e| e["type"].as_str().is_some_and(|t| t.contains("web_search"))));
    let seqs: Vec<u64> = evs
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}
