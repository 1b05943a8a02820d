//! The proxy, authentication, request limits, upstream failures and configuration.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::request;
use crate::{run, scripted, stream_text, Ctx, ORIGIN_SECRET};

pub const TESTS: &[crate::Test] = &[
    (
        "health_answers_without_origin",
        health_answers_without_origin,
    ),
    (
        "stream_arrives_event_by_event",
        stream_arrives_event_by_event,
    ),
    ("non_streamed_completion", non_streamed_completion),
    ("keys_are_checked_first", keys_are_checked_first),
    ("bad_bodies_get_openai_errors", bad_bodies_get_openai_errors),
    ("paths_and_methods", paths_and_methods),
    (
        "credential_swap_and_header_hygiene",
        credential_swap_and_header_hygiene,
    ),
    ("model_allow_list", model_allow_list),
    ("upstream_500_is_502", upstream_500_is_502),
    ("upstream_hang_is_504", upstream_hang_is_504),
    (
        "mid_stream_disconnect_is_reported",
        mid_stream_disconnect_is_reported,
    ),
    ("malformed_sse_is_cut_off", malformed_sse_is_cut_off),
    ("config_errors_fail_closed", config_errors_fail_closed),
    ("one_log_line_per_request", one_log_line_per_request),
    ("openai_python_sdk", openai_python_sdk),
    ("openai_node_sdk", openai_node_sdk),
    ("anthropic_python_sdk", anthropic_python_sdk),
];

fn assert_openai_error(r: &crate::harness::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "body: {v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(v["error"]["type"].as_str().is_some());
    assert!(r
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("eg-")));
}

fn health_answers_without_origin(ctx: &Ctx) {
    let r = request(ctx.gw.port, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
}

fn stream_arrives_event_by_event(ctx: &Ctx) {
    let say = "one two three four five six seven eight nine ten";
    let r = ctx.chat(&scripted(say, true, json!({"delay_ms": 120})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    assert_eq!(stream_text(&r), say);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    // The words arrive spread over the ~1.3 s the origin takes, not in one piece at the end.
    let times: Vec<u128> = r
        .pieces
        .iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("\"content\":\""))
        .map(|(t, _)| *t)
        .collect();
    let distinct: std::collections::BTreeSet<u128> = times.iter().map(|t| t / 60).collect();
    assert!(
        distinct.len() >= 6,
        "content arrived in too few bursts: {times:?}"
    );
    let (first, last) = (times[0], *times.last().unwrap());
    assert!(
        last - first >= 700,
        "content arrived within {} ms: {times:?}",
        last - first
    );
}

fn non_streamed_completion(ctx: &Ctx) {
    let r = ctx.chat(&scripted("Plain answer.", false, json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Plain answer.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(r.header("x-request-id").is_some());
}

fn keys_are_checked_first(ctx: &Ctx) {
    let body = scripted("hi", false, json!({}));
    // Missing, malformed, unknown, disabled: 401 before the body is even looked at.
    assert_openai_error(
        &ctx.post("/v1/chat/completions", None, &body),
        401,
        "invalid_api_key",
    );
    assert_openai_error(
        &ctx.post("/v1/chat/completions", Some("short"), &body),
        401,
        "invalid_api_key",
    );
    assert_openai_error(
        &ctx.post(
            "/v1/chat/completions",
            Some("eg_unknownunknownunknownunknown"),
            &body,
        ),
        401,
        "invalid_api_key",
    );
    assert_openai_error(
        &ctx.post("/v1/chat/completions", Some(&ctx.disabled_key), &body),
        401,
        "invalid_api_key",
    );
    let r = request(ctx.gw.port, "POST", "/nowhere", &[], Some(b"not json")).unwrap();
    assert_openai_error(&r, 401, "invalid_api_key");
    // x-api-key works too (Anthropic-style clients).
    let r = request(
        ctx.gw.port,
        "POST",
        "/v1/chat/completions",
        &[
            ("x-api-key", &ctx.key),
            ("content-type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The raw key never shows up in the gateway's logs.
    assert!(!ctx.gw.log_text().contains(&ctx.key));
    assert!(!ctx.gw.log_text().contains("eg_unknownunknown"));
}

fn bad_bodies_get_openai_errors(ctx: &Ctx) {
    let auth = format!("Bearer {}", ctx.key);
    let post = |body: &[u8]| {
        request(
            ctx.gw.port,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body),
        )
        .unwrap()
    };
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(1_100_000)
    );
    assert_openai_error(&post(big.as_bytes()), 413, "request_too_large");
    assert_openai_error(&post(b"{not json"), 400, "invalid_json");
    assert_openai_error(
        &post(br#"{"model":"a","model":"b","messages":[]}"#),
        400,
        "invalid_json",
    );
    let deep = format!(
        r#"{{"model":"m","messages":{}1{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    assert_openai_error(&post(deep.as_bytes()), 400, "json_too_deep");
    assert_openai_error(
        &post(br#"{"messages":[{"role":"user","content":"x"}]}"#),
        400,
        "missing_model",
    );
    assert_openai_error(
        &post(br#"{"model":"m","messages":[]}"#),
        400,
        "invalid_messages",
    );
    assert_openai_error(
        &post(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#),
        400,
        "invalid_stream",
    );
    assert_openai_error(&post(b"\xff\xfe"), 400, "invalid_json");
}

fn paths_and_methods(ctx: &Ctx) {
    let r = ctx.get("/v1/engines");
    assert_openai_error(&r, 404, "unknown_url");
    let r = ctx.get("/v1/chat/completions");
    assert_openai_error(&r, 405, "method_not_allowed");
    // Listed for pass-through in wrangler.toml: forwarded, authenticated.
    let r = ctx.get("/v1/models");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"][0]["id"], "mock-1");
    let r = request(ctx.gw.port, "GET", "/v1/models", &[], None).unwrap();
    assert_openai_error(&r, 401, "invalid_api_key");
}

fn credential_swap_and_header_hygiene(ctx: &Ctx) {
    let marker = "header-hygiene-marker-51";
    let auth = format!("Bearer {}", ctx.key);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": marker}]}).to_string();
    let r = request(
        ctx.gw.port,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("cookie", "session=abc"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("user-agent", "client-fingerprint/1.0"),
            ("openai-organization", "org-client"),
        ],
        Some(body.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // The origin's cookies do not reach the client.
    assert!(r.header("set-cookie").is_none());
    let seen = request(ctx.mock.port, "GET", "/__mock/requests", &[], None)
        .unwrap()
        .json();
    let rec = seen
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["body"].as_str().is_some_and(|b| b.contains(marker)))
        .expect("origin saw the request");
    let headers: Vec<(String, String)> = rec["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_string(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("authorization"),
        Some(format!("Bearer {ORIGIN_SECRET}").as_str())
    );
    for gone in [
        "cookie",
        "x-forwarded-for",
        "x-real-ip",
        "openai-organization",
        "x-api-key",
    ] {
        assert!(
            get(gone).is_none(),
            "{gone} reached the origin: {headers:?}"
        );
    }
    assert!(get("user-agent").is_some_and(|u| u.starts_with("edgeguard/")));
    let all = format!("{headers:?}");
    assert!(!all.contains(&ctx.key), "client key reached the origin");
    assert!(!all.contains("203.0.113.9"));
}

fn model_allow_list(ctx: &Ctx) {
    let mut body = scripted("ok", false, json!({}));
    body["model"] = json!("claude-3");
    let r = ctx.post("/v1/chat/completions", Some(&ctx.models_key), &body);
    assert_openai_error(&r, 403, "model_not_allowed");
    body["model"] = json!("gpt-4o-mini");
    let r = ctx.post("/v1/chat/completions", Some(&ctx.models_key), &body);
    assert_eq!(r.status, 200);
}

fn upstream_500_is_502(ctx: &Ctx) {
    let r = ctx.chat(&scripted("", false, json!({"fail": "500"})));
    assert_openai_error(&r, 502, "upstream_failed");
    assert!(
        !r.text().contains("10.0.0.7"),
        "origin internals leaked: {}",
        r.text()
    );
    let r = ctx.chat(&scripted("", true, json!({"fail": "500"})));
    assert_openai_error(&r, 502, "upstream_failed");
}

fn upstream_hang_is_504(ctx: &Ctx) {
    let t = std::time::Instant::now();
    let r = ctx.chat(&scripted("", true, json!({"fail": "hang"})));
    assert_openai_error(&r, 504, "upstream_timeout");
    assert!(t.elapsed().as_secs_f64() < 10.0);
}

fn mid_stream_disconnect_is_reported(ctx: &Ctx) {
    let r = ctx.chat(&scripted(
        "alpha beta gamma delta epsilon zeta eta theta",
        true,
        json!({"fail": "disconnect"}),
    ));
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "an unfinished stream must not look finished"
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_incomplete", "{data:?}");
    assert!(stream_text(&r).starts_with("alpha"));
}

fn malformed_sse_is_cut_off(ctx: &Ctx) {
    let r = ctx.chat(&scripted("x", true, json!({"fail": "malformed"})));
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_malformed", "{data:?}");
    assert!(
        !r.text().contains("after"),
        "bytes after the malformed event were passed on"
    );
}

fn config_errors_fail_closed(ctx: &Ctx) {
    let r = request(ctx.broken.port, "GET", "/healthz", &[], None).unwrap();
    assert_openai_error(&r, 500, "gateway_misconfigured");
    let r = request(
        ctx.broken.port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {}", ctx.key))],
        Some(scripted("hi", false, json!({})).to_string().as_bytes()),
    )
    .unwrap();
    assert_openai_error(&r, 500, "gateway_misconfigured");
    assert!(
        !r.text().contains("ORIGIN_URL"),
        "internals in the client error"
    );
    // One clear log line names the setting.
    let log = ctx.broken.log_text();
    assert!(
        log.contains("setting ORIGIN_URL: must be an http(s) URL"),
        "log:\n{log}"
    );
}

fn one_log_line_per_request(ctx: &Ctx) {
    let marker = "log-line-marker";
    let r = ctx.chat(&scripted(&format!("{marker} streamed"), true, json!({})));
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap().to_string();
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
    assert_eq!(v["key_id"], "k_main");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "/v1/chat/completions");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["outcome"], "complete");
    assert!(v["total_ms"].as_u64().is_some() && v["upstream_ttfb_ms"].as_u64().is_some());
    assert!(
        !line.contains(marker),
        "prompt or answer text in the log line"
    );
    assert_eq!(ctx.gw.log_text().matches(&id).count(), 1);
}

fn openai_python_sdk(ctx: &Ctx) {
    let python = crate::harness::repo().join(".venv/bin/python");
    let (ok, out) = run(Command::new(python)
        .current_dir(crate::harness::repo())
        .arg("e2e/sdk/openai_sdk.py")
        .env(
            "EDGEGUARD_URL",
            format!("http://127.0.0.1:{}/v1", ctx.gw.port),
        )
        .env("EDGEGUARD_KEY", &ctx.key));
    assert!(ok, "python SDK run failed:\n{out}");
}

fn anthropic_python_sdk(ctx: &Ctx) {
    let python = crate::harness::repo().join(".venv/bin/python");
    let (ok, out) = run(Command::new(python)
        .current_dir(crate::harness::repo())
        .arg("e2e/sdk/anthropic_sdk.py")
        .env(
            "EDGEGUARD_BASE",
            format!("http://127.0.0.1:{}", ctx.gw.port),
        )
        .env("EDGEGUARD_KEY", &ctx.key)
        .env("EDGEGUARD_CANARY", crate::CANARY));
    assert!(ok, "anthropic SDK run failed:\n{out}");
}

fn openai_node_sdk(ctx: &Ctx) {
    let (ok, out) = run(Command::new("node")
        .current_dir(crate::harness::repo())
        .arg("e2e/sdk/openai_sdk.mjs")
        .env(
            "EDGEGUARD_URL",
            format!("http://127.0.0.1:{}/v1", ctx.gw.port),
        )
        .env("EDGEGUARD_KEY", &ctx.key));
    assert!(ok, "node SDK run failed:\n{out}");
}
