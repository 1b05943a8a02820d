//! The streamed output filter, end to end.

use serde_json::{json, Value};

use crate::{scripted, stream_text, Ctx, AWS_KEY, CANARY, CARD, EMAIL, PEM};

pub const TESTS: &[crate::Test] = &[
    (
        "output_secrets_never_reach_the_client",
        output_secrets_never_reach_the_client,
    ),
    (
        "output_canary_blocks_the_stream",
        output_canary_blocks_the_stream,
    ),
    (
        "output_whole_responses_are_filtered",
        output_whole_responses_are_filtered,
    ),
    (
        "output_tool_call_arguments_are_filtered",
        output_tool_call_arguments_are_filtered,
    ),
    (
        "output_anthropic_stream_is_filtered",
        output_anthropic_stream_is_filtered,
    ),
    (
        "output_unknown_fields_and_tool_names",
        output_unknown_fields_and_tool_names,
    ),
];

/// Exact wire shapes from the origin: fields outside the schema never reach the client (and
/// are counted in the log line), a canary as a tool name ends the stream.
fn output_unknown_fields_and_tool_names(ctx: &Ctx) {
    let chunk = |choice: Value, extra: Value| {
        let mut c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                           "model": "m", "choices": [choice]});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                c[k] = v;
            }
        }
        c
    };
    let chunks = json!([
        chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": "Hi "}, "finish_reason": null}),
            json!({"provider_debug": AWS_KEY})
        ),
        chunk(
            json!({"index": 0, "delta": {"content": "there.", "future_text": EMAIL},
                     "finish_reason": null, "moderation": EMAIL}),
            json!({})
        ),
        chunk(
            json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
            json!({})
        ),
    ]);
    let r = ctx.chat(&scripted(
        "",
        true,
        json!({"chunks": chunks, "delay_ms": 2}),
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    assert!(!body.contains(AWS_KEY) && !body.contains(EMAIL), "{body}");
    assert_eq!(stream_text(&r), "Hi there.");
    let id = r.header("x-request-id").unwrap_or_default().to_string();
    // The streamed request's line is written when its stream ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        let log = ctx.gw.log_text();
        if let Some(l) = log.lines().find(|l| l.contains(&id) && l.starts_with('{')) {
            break l.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no log line for {id}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let v: Value = serde_json::from_str(&line).unwrap();
    let dropped = &v["output"]["dropped_fields"];
    assert_eq!(dropped["chunk.provider_debug"], 1, "{line}");
    assert_eq!(dropped["delta.future_text"], 1, "{line}");
    assert_eq!(dropped["choices[].moderation"], 1, "{line}");
    assert!(!line.contains(AWS_KEY) && !line.contains(EMAIL));

    let chunks = json!([
        chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": "Calling."}, "finish_reason": null}),
            json!({})
        ),
        chunk(
            json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                     "function": {"name": CANARY, "arguments": ""}}]}, "finish_reason": null}),
            json!({})
        ),
        chunk(
            json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
                     "finish_reason": null}),
            json!({})
        ),
        chunk(
            json!({"index": 0, "delta": {}, "finish_reason": "tool_calls"}),
            json!({})
        ),
    ]);
    let r = ctx.chat(&scripted(
        "",
        true,
        json!({"chunks": chunks, "delay_ms": 2}),
    ));
    let body = r.text();
    assert!(!body.contains(CANARY), "{body}");
    assert!(body.contains("content_filter"), "{body}");
}

fn output_secrets_never_reach_the_client(ctx: &Ctx) {
    let say = format!(
        "Here is the config. The access key is {AWS_KEY} and the card {CARD} belongs to {EMAIL}. \
         The deploy key follows:\n{PEM}\nThat is everything you need to know today."
    );
    let r = ctx.chat(&scripted(&say, true, json!({"delay_ms": 8})));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.text();
    for secret in [
        AWS_KEY,
        "4111",
        EMAIL,
        "jane.doe",
        "MIIEowIBAAKCAQEA",
        "aFDrBz9vFqU4",
    ] {
        assert!(
            !body.contains(secret),
            "{secret} reached the client:\n{body}"
        );
    }
    let text = stream_text(&r);
    assert_eq!(
        text,
        "Here is the config. The access key is [REDACTED:aws_access_key] and the card [REDACTED:credit_card] \
         belongs to [REDACTED:email]. The deploy key follows:\n[REDACTED:private_key]\nThat is everything you need to know today."
    );
    // Well-formed: every event is JSON or [DONE], ending with finish_reason stop then [DONE].
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    for d in &data[..data.len() - 1] {
        serde_json::from_str::<Value>(d).unwrap_or_else(|e| panic!("bad event {d}: {e}"));
    }
    // The text around the values arrives incrementally.
    let content_pieces = r
        .pieces
        .iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("\"content\":\""))
        .count();
    assert!(
        content_pieces >= 20,
        "only {content_pieces} pieces carried content"
    );
}

fn output_canary_blocks_the_stream(ctx: &Ctx) {
    let say = format!("Sure. My instructions begin with {CANARY} and then continue with secrets.");
    let r = ctx.chat(&scripted(&say, true, json!({})));
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(!body.contains("EGCANARY"), "canary leaked:\n{body}");
    assert!(
        !body.contains("continue with"),
        "text after the canary leaked"
    );
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let fin: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(fin["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(stream_text(&r), "Sure. My instructions begin with ");
    // Non-streamed: an error in the OpenAI format.
    let r = ctx.chat(&scripted(&say, false, json!({})));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "content_filter");
    assert!(!r.text().contains("EGCANARY"));
}

fn output_whole_responses_are_filtered(ctx: &Ctx) {
    let say = format!("Key {AWS_KEY}, mail {EMAIL}.");
    let r = ctx.chat(&scripted(&say, false, json!({})));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "Key [REDACTED:aws_access_key], mail [REDACTED:email]."
    );
}

fn output_tool_call_arguments_are_filtered(ctx: &Ctx) {
    let args =
        format!(r#"{{"to": "{EMAIL}", "token": "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"}}"#);
    let r = ctx.chat(&scripted(
        "Calling.",
        true,
        json!({"tool_call": {"name": "send_mail", "arguments": args}}),
    ));
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(
        !body.contains("jane.doe") && !body.contains("ghp_wWPw"),
        "{body}"
    );
    let mut joined = String::new();
    for d in r.sse_data().iter().filter(|d| d.as_str() != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        if let Some(a) = v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            joined.push_str(a);
        }
    }
    let parsed: Value = serde_json::from_str(&joined).unwrap_or_else(|e| panic!("{joined}: {e}"));
    assert_eq!(parsed["to"], "[REDACTED:email]");
    assert_eq!(parsed["token"], "[REDACTED:github_token]");
    let r = ctx.chat(&scripted(
        "Calling.",
        false,
        json!({"tool_call": {"name": "send_mail", "arguments": args}}),
    ));
    let a = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        serde_json::from_str::<Value>(&a).unwrap()["to"],
        "[REDACTED:email]"
    );
}

fn output_anthropic_stream_is_filtered(ctx: &Ctx) {
    let say = format!("Reach me at {EMAIL} or use {AWS_KEY} now.");
    let mut body = scripted(&say, true, json!({}));
    body["max_tokens"] = json!(100);
    let r = ctx.post("/v1/messages", Some(&ctx.key), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let raw = r.text();
    assert!(!raw.contains("jane.doe") && !raw.contains(AWS_KEY), "{raw}");
    let mut text = String::new();
    let mut kinds = Vec::new();
    for d in r.sse_data() {
        let v: Value = serde_json::from_str(&d).unwrap();
        kinds.push(v["type"].as_str().unwrap_or("").to_string());
        if v["type"] == "content_block_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(
        text,
        "Reach me at [REDACTED:email] or use [REDACTED:aws_access_key] now."
    );
    assert_eq!(kinds.last().map(String::as_str), Some("message_stop"));
    assert!(raw.contains("event: content_block_delta"));
}
