//! Per-key limits held in the limiter Durable Object, end to end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{request, Resp};
use crate::{scripted, Ctx};

pub const TESTS: &[crate::Test] = &[
    ("limits_max_tokens_cap", limits_max_tokens_cap),
    (
        "limits_requests_exact_under_concurrency",
        limits_requests_exact_under_concurrency,
    ),
    (
        "limits_concurrency_slots_are_leases",
        limits_concurrency_slots_are_leases,
    ),
    (
        "limits_token_budget_reserves_and_credits",
        limits_token_budget_reserves_and_credits,
    ),
    (
        "limits_headers_on_every_response",
        limits_headers_on_every_response,
    ),
    ("limits_failure_policy_closed", limits_failure_policy_closed),
    ("limits_failure_policy_open", limits_failure_policy_open),
    (
        "limits_unknown_keys_are_throttled",
        limits_unknown_keys_are_throttled,
    ),
];

fn post_as(port: u16, key: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {key}");
    request(
        port,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
    .expect("request")
}

fn limits_max_tokens_cap(ctx: &Ctx) {
    let mut body = scripted("x", false, json!({}));
    body["max_tokens"] = json!(1000);
    let r = post_as(ctx.gw.port, &ctx.ten_key, &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "max_tokens_too_large");
}

fn limits_requests_exact_under_concurrency(ctx: &Ctx) {
    let port = ctx.gw.port;
    let key = ctx.ten_key.clone();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let key = key.clone();
            std::thread::spawn(move || {
                post_as(port, &key, &scripted(&format!("req {i}"), false, json!({})))
            })
        })
        .collect();
    let results: Vec<Resp> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let ok = results.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&Resp> = results.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (ok, limited.len()),
        (10, 40),
        "statuses: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in limited {
        let v = r.json();
        assert_eq!(v["error"]["type"], "rate_limit_exceeded");
        assert_eq!(v["error"]["code"], "requests_limit");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        // 10 a minute: the next slot opens within 6 s.
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("10"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
        assert!(r
            .header("ratelimit-policy")
            .is_some_and(|p| p.contains("\"requests\";q=10;w=60")));
        assert!(r
            .header("ratelimit")
            .is_some_and(|p| p.contains("\"requests\";r=0")));
    }
}

/// Opens a streamed request and returns the socket once the response headers are in.
pub(crate) fn open_stream(port: u16, key: &str, body: &Value) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let b = body.to_string();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
        b.len()
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fn wait_for_status(port: u16, key: &str, want: u16, within: Duration) -> Resp {
    let deadline = Instant::now() + within;
    loop {
        let r = post_as(port, key, &scripted("ok", false, json!({})));
        if r.status == want || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn limits_concurrency_slots_are_leases(ctx: &Ctx) {
    let port = ctx.gw.port;
    let slow = scripted(
        "one two three four five six seven eight nine ten",
        true,
        json!({"delay_ms": 250}),
    );
    // Two slow streams take both slots; a third request is refused.
    let a = open_stream(port, &ctx.two_key, &slow);
    let b = open_stream(port, &ctx.two_key, &slow);
    let r = post_as(port, &ctx.two_key, &scripted("third", false, json!({})));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "concurrency_limit");
    assert!(r.header("retry-after").is_some());
    // One stream runs to its end: its slot comes back.
    let mut rest = Vec::new();
    let mut a = a;
    a.read_to_end(&mut rest).expect("stream a");
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    let r = wait_for_status(port, &ctx.two_key, 200, Duration::from_secs(5));
    assert_eq!(
        r.status,
        200,
        "slot not returned after a stream ended: {}",
        r.text()
    );
    // The other client goes away mid-stream: its slot comes back too (when the gateway sees
    // the stream abandoned), without waiting for the lease to expire.
    drop(b);
    let c = open_stream(port, &ctx.two_key, &slow);
    let d = open_stream(port, &ctx.two_key, &slow);
    drop(c);
    let r = wait_for_status(port, &ctx.two_key, 200, Duration::from_secs(12));
    assert_eq!(
        r.status,
        200,
        "slot not returned after a client left: {}",
        r.text()
    );
    drop(d);
}

fn limits_token_budget_reserves_and_credits(ctx: &Ctx) {
    let port = ctx.gw.port;
    let key = &ctx.budget_key;
    // More than the whole budget can never fit: refused before the origin sees it.
    let mut big = scripted("never sent", false, json!({}));
    big["max_tokens"] = json!(2000);
    let r = post_as(port, key, &big);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "tokens_request_too_large");
    // 600 reserved of 1000; the short answer uses a few dozen and the rest is credited back,
    // so a second request of the same size fits (without the credit it could not).
    let mut ask = scripted("ok", true, json!({}));
    ask["max_tokens"] = json!(600);
    let r = post_as(port, key, &ask);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.text().contains("\"usage\""),
        "usage the client did not ask for was sent"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let r = post_as(port, key, &ask);
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        second.status,
        200,
        "reservation was not credited back: {}",
        second.text()
    );
    let remaining: u32 = second
        .header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .expect("remaining tokens header");
    assert!(remaining < 400, "remaining {remaining}");
    // With ~600 now reserved again, another 600 does not fit.
    let r = post_as(port, key, &ask);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "tokens_limit");
}

fn limits_headers_on_every_response(ctx: &Ctx) {
    let r = ctx.chat(&scripted("hello", false, json!({})));
    assert_eq!(r.status, 200);
    for h in [
        "ratelimit-policy",
        "ratelimit",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(r.header(h).is_some(), "missing {h}: {:?}", r.headers);
    }
    let r = ctx.chat(&scripted("", false, json!({"fail": "500"})));
    assert_eq!(r.status, 502);
    assert!(
        r.header("x-ratelimit-limit-requests").is_some(),
        "errors carry the headers too"
    );
}

fn limits_failure_policy_closed(ctx: &Ctx) {
    let r = post_as(
        ctx.no_limiter_closed.port,
        &ctx.key,
        &scripted("hi", false, json!({})),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "limiter_unavailable");
}

fn limits_failure_policy_open(ctx: &Ctx) {
    let r = post_as(
        ctx.no_limiter_open.port,
        &ctx.key,
        &scripted("hi", false, json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-edgeguard-limits"), Some("unavailable"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ctx
        .no_limiter_open
        .log_text()
        .contains("LIMITER UNAVAILABLE")
    {
        assert!(Instant::now() < deadline, "no loud log line");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn limits_unknown_keys_are_throttled(ctx: &Ctx) {
    let port = ctx.gw.port;
    let guess = |i: usize| {
        let auth = format!("Bearer eg_guessing_key_{i:020}");
        request(
            port,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("cf-connecting-ip", "203.0.113.77"),
            ],
            Some(b"{}"),
        )
        .expect("request")
    };
    let statuses: Vec<u16> = (0..12).map(|i| guess(i).status).collect();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(statuses[..8].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        refused >= 3,
        "a key-guessing flood was not refused: {statuses:?}"
    );
    let r = guess(99);
    assert_eq!(r.json()["error"]["code"], "too_many_auth_failures");
}
