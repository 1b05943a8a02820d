//! The protocol filters: any split of the origin's bytes gives the same client stream, values
//! split across events never leak, and broken streams fail closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeguard::output::filter::{filter_json, Outcome, StreamFilter};
use edgeguard::output::{catalog, Action, CatalogConfig, Scanner};
use edgeguard::protocol::Protocol;
use proptest::prelude::*;
use serde_json::{json, Value};

fn scanner() -> Scanner {
    let cfg = CatalogConfig {
        canaries: vec!["EGCANARY-0001".into()],
        ..CatalogConfig::default()
    };
    Scanner::new(catalog(&cfg).unwrap(), 512)
}

/// An OpenAI stream that says `tokens`, one per event.
fn openai_wire(tokens: &[&str], done: bool) -> Vec<u8> {
    let mut w = Vec::new();
    let chunk = |delta: Value, fin: Value| {
        format!(
            "data: {}\n\n",
            json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",
                   "choices":[{"index":0,"delta":delta,"finish_reason":fin}]})
        )
    };
    w.extend(chunk(json!({"role":"assistant","content":""}), Value::Null).bytes());
    for t in tokens {
        w.extend(chunk(json!({ "content": t }), Value::Null).bytes());
    }
    if done {
        w.extend(chunk(json!({}), json!("stop")).bytes());
        w.extend(b"data: [DONE]\n\n");
    }
    w
}

fn run(s: &Scanner, proto: Protocol, wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Outcome) {
    let mut f = StreamFilter::new(s, proto);
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.sort_unstable();
    let mut last = 0;
    for p in points {
        f.feed(&wire[last..p], &mut out);
        last = p;
    }
    f.feed(&wire[last..], &mut out);
    f.end(&mut out);
    (out, f.outcome())
}

fn content_of(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

const TOKENS: &[&str] = &[
    "My", " key", " is", " AK", "IAZ3", "MSJV", "4WWN", "KWW5", "FG", " and", " mail", " jane",
    ".do", "e@nor", "thwind", ".io", ".", " Bye",
];

#[test]
fn values_split_across_events_are_redacted() {
    let s = scanner();
    let (out, outcome) = run(&s, Protocol::OpenAiChat, &openai_wire(TOKENS, true), &[]);
    assert_eq!(outcome, Outcome::Complete);
    assert_eq!(
        content_of(&out),
        "My key is [REDACTED:aws_access_key] and mail [REDACTED:email]. Bye"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("AKIA") && !text.contains("jane"));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn truncated_stream_drops_what_is_held() {
    let s = scanner();
    // The origin stops in the middle of a key: the held prefix must not be flushed.
    let (out, outcome) = run(
        &s,
        Protocol::OpenAiChat,
        &openai_wire(&TOKENS[..6], false),
        &[],
    );
    assert_eq!(outcome, Outcome::Truncated);
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains("AKIA"), "{text}");
    assert!(text.contains("upstream_incomplete"));
    assert!(!text.contains("[DONE]"));
}

#[test]
fn garbage_is_cut_off() {
    let s = scanner();
    let mut wire = openai_wire(&["Hello"], false);
    wire.extend(b"data: {\"choices\": [oops\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"later\"}}]}\n\n");
    let (out, outcome) = run(&s, Protocol::OpenAiChat, &wire, &[]);
    assert_eq!(outcome, Outcome::Malformed);
    assert!(!String::from_utf8_lossy(&out).contains("later"));
}

#[test]
fn canary_blocks_with_content_filter() {
    let s = scanner();
    let (out, outcome) = run(
        &s,
        Protocol::OpenAiChat,
        &openai_wire(&["The ", "code ", "is ", "EGCAN", "ARY-0001", " ok"], true),
        &[],
    );
    assert_eq!(outcome, Outcome::Blocked);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(!text.contains("EGCAN"));
    assert!(text.contains("\"finish_reason\":\"content_filter\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(content_of(&out), "The code is ");
}

#[test]
fn anthropic_stream_is_filtered_and_flushed_before_stop() {
    let s = scanner();
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let mut wire = String::new();
    wire += &ev(
        "message_start",
        json!({"type":"message_start","message":{"id":"m","content":[]}}),
    );
    wire += &ev(
        "content_block_start",
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    );
    for t in ["mail ", "bob", "@north", "wind.org"] {
        wire += &ev(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
        );
    }
    wire += &ev(
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    );
    wire += &ev("message_stop", json!({"type":"message_stop"}));
    let (out, outcome) = run(&s, Protocol::AnthropicMessages, wire.as_bytes(), &[]);
    assert_eq!(outcome, Outcome::Complete);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(!text.contains("bob"));
    let stop = text.find("content_block_stop").unwrap();
    let redacted = text.find("[REDACTED:email]").unwrap();
    assert!(
        redacted < stop,
        "held text must be flushed before the block stops"
    );
}

#[test]
fn whole_responses() {
    let s = scanner();
    let body = json!({"choices":[{"index":0,"message":{"role":"assistant","content":"key AKIAZ3MSJV4WWNKWW5FG"}}]});
    let f = filter_json(&s, Protocol::OpenAiChat, body.to_string().as_bytes(), None).unwrap();
    let v: Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "key [REDACTED:aws_access_key]"
    );
    assert_eq!(f.findings.len(), 1);
    assert!(filter_json(&s, Protocol::OpenAiChat, b"not json", None).is_err());
    let blocked = json!({"choices":[{"message":{"content":"EGCANARY-0001"}}]});
    assert!(filter_json(
        &s,
        Protocol::OpenAiChat,
        blocked.to_string().as_bytes(),
        None
    )
    .is_err());
}

#[test]
fn monitor_action_passes_values() {
    let cfg = CatalogConfig {
        actions: vec![("email".into(), Action::Monitor)],
        ..CatalogConfig::default()
    };
    let s = Scanner::new(catalog(&cfg).unwrap(), 512);
    let (out, _) = run(
        &s,
        Protocol::OpenAiChat,
        &openai_wire(&["a ", "x@y", ".com", " b"], true),
        &[],
    );
    assert_eq!(content_of(&out), "a x@y.com b");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn any_byte_split_gives_the_same_stream(cuts in prop::collection::vec(any::<usize>(), 0..60)) {
        let s = scanner();
        let wire = openai_wire(TOKENS, true);
        let (whole, _) = run(&s, Protocol::OpenAiChat, &wire, &[]);
        let (split, outcome) = run(&s, Protocol::OpenAiChat, &wire, &cuts);
        prop_assert_eq!(outcome, Outcome::Complete);
        // Event boundaries may differ; the text the client assembles may not.
        prop_assert_eq!(content_of(&split), content_of(&whole));
        prop_assert!(!String::from_utf8_lossy(&split).contains("AKIA"));
    }

    #[test]
    fn any_token_split_gives_the_same_text(splits in prop::collection::vec(1usize..6, 1..40)) {
        // Re-tokenize the same answer at random points: the assembled text never changes.
        let s = scanner();
        let full: String = TOKENS.concat();
        let mut toks = Vec::new();
        let mut rest = full.as_str();
        let mut i = 0;
        while !rest.is_empty() {
            let mut n = splits[i % splits.len()].min(rest.len());
            while !rest.is_char_boundary(n) { n += 1; }
            toks.push(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        let (out, _) = run(&s, Protocol::OpenAiChat, &openai_wire(&toks, true), &[]);
        prop_assert_eq!(content_of(&out), "My key is [REDACTED:aws_access_key] and mail [REDACTED:email]. Bye");
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), which in 0usize..3) {
        let s = scanner();
        let proto = Protocol::ALL[which];
        let (out, outcome) = run(&s, proto, &bytes, &[7, 100, 333]);
        prop_assert!(outcome != Outcome::Open);
        let _ = out;
    }
}
