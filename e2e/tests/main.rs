//! End-to-end tests: the worker runs in workerd under `wrangler dev`, with local KV, in front of
//! the bundled mock origin; the tests talk HTTP to it. Run with `cargo test --test e2e`
//! (`EDGEGUARD_PREBUILT=1` skips the worker build when build/ is current). A name filter may
//! follow: `cargo test -p edgeguard-e2e -- stream`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::Instant;

use edgeguard::network::keys::{format_key, kv_key, KeyRecord};
use harness::{request, Gateway, Mock, Resp, Webhook};
use serde_json::{json, Value};

pub const ORIGIN_SECRET: &str = "sk-origin-test-credential";
/// The credential of the Anthropic origin (`ORIGINS`), sent as x-api-key.
pub const ANTHROPIC_SECRET: &str = "sk-ant-origin-test-credential";
pub const CANARY: &str = "EGCANARY-7c41d9e2";
pub const AWS_KEY: &str = "AKIAZ3MSJV4WWNKWW5FG";
pub const CARD: &str = "4111 1111 1111 1111";
pub const EMAIL: &str = "jane.doe@northwind-mail.io";
/// The audit layer's key and the webhook's secret on the test stack.
pub const AUDIT_KEY: &str = "e2e-audit-hmac-key-0123456789abcdef";
pub const WEBHOOK_SECRET: &[u8] = b"e2e-webhook-secret-0123";
pub const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yL4Wn2ZPnBNkZ7zG9DJ1p3N0r4I1ggNJx0VpIbDnbi0B1cJpMAK+\n-----END RSA PRIVATE KEY-----";

pub struct Ctx {
    pub gw: Gateway,
    pub broken: Gateway,
    /// Stacks whose limiter cannot answer, failing closed and open.
    pub no_limiter_closed: Gateway,
    pub no_limiter_open: Gateway,
    pub mock: Mock,
    pub key: String,
    pub models_key: String,
    pub disabled_key: String,
    /// Keys on the test tiers: 10 requests a minute, 2 in flight, 1000 tokens a minute.
    pub ten_key: String,
    pub two_key: String,
    pub budget_key: String,
    /// Findings reported, nothing blocked; and a key limited to `get_*` tools.
    pub monitor_key: String,
    pub tools_key: String,
    /// A key on a tier without limits (no limiter call).
    pub free_key: String,
    /// A key that does not trust its system messages (the default for real keys).
    pub untrusted_key: String,
    /// A key on a tier of 60 requests a minute with a burst of 3, completions clamped to 300.
    pub three_key: String,
    /// A key with the default-sized token budget (400,000 a minute, completions up to 128,000).
    pub big_key: String,
    /// Keys of the audit tests: one for the audited requests, one on a tier of one request a
    /// minute, one that probes with injections.
    pub audit_key: String,
    pub one_key: String,
    pub probe_key: String,
    /// The gateway's local state (KV, R2, ...), and the audit webhook's receiver.
    pub state: std::path::PathBuf,
    pub webhook: Webhook,
}

/// Limit tiers for the tests; `default` is generous so that other tests never hit it.
pub const TEST_TIERS: &str = r#"{"default": {"requests_per_minute": 100000, "burst": 100000, "concurrency": 1000, "tokens_per_minute": 100000000},
  "ten": {"requests_per_minute": 10, "burst": 10, "max_tokens": 256, "max_tokens_policy": "refuse"},
  "two": {"concurrency": 2},
  "budget": {"tokens_per_minute": 1000},
  "three": {"requests_per_minute": 60, "burst": 3, "max_tokens": 300},
  "big": {"tokens_per_minute": 400000, "max_tokens": 128000},
  "one": {"requests_per_minute": 1, "burst": 1},
  "unlimited": {}}"#;

impl Ctx {
    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        request(
            self.gw.port,
            "POST",
            path,
            &headers,
            Some(body.to_string().as_bytes()),
        )
        .expect("request")
    }

    /// A GET with the test key.
    pub fn get(&self, path: &str) -> Resp {
        let auth = format!("Bearer {}", self.key);
        request(self.gw.port, "GET", path, &[("authorization", &auth)], None).expect("request")
    }

    pub fn chat(&self, body: &Value) -> Resp {
        self.post("/v1/chat/completions", Some(&self.key), body)
    }
}

/// A chat request whose answer the mock scripts.
pub fn scripted(say: &str, stream: bool, extra: Value) -> Value {
    let mut mock = json!({"say": say});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            mock[k] = v;
        }
    }
    // The script goes in the system message: operator text, which the input layer trusts.
    json!({"model": "gpt-4o-mini", "stream": stream,
           "messages": [{"role": "system", "content": json!({"mock": mock}).to_string()},
                        {"role": "user", "content": "Please answer."}]})
}

/// Concatenated `delta.content` of an OpenAI stream.
pub fn stream_text(r: &Resp) -> String {
    r.sse_data()
        .iter()
        .filter(|d| d.as_str() != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

pub fn key_record(id: &str, extra: Value) -> String {
    // The tests script the mock origin from the system message, the operator's own text.
    let mut r = serde_json::to_value(KeyRecord {
        trust_system: true,
        key_id: id.into(),
        tenant: "acme".into(),
        tier: "default".into(),
        models: vec![],
        tools: None,
        monitor_only: false,
        disabled: false,
        limits: None,
    })
    .unwrap();
    if let Value::Object(m) = extra {
        for (k, v) in m {
            r[k] = v;
        }
    }
    r.to_string()
}

mod audit;
mod bench;
mod foundation;
mod hardening;
mod input;
mod limits;
mod output;
mod protocols;

type Test = (&'static str, fn(&Ctx));

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut tests: Vec<Test> = Vec::new();
    tests.extend_from_slice(foundation::TESTS);
    tests.extend_from_slice(output::TESTS);
    tests.extend_from_slice(limits::TESTS);
    tests.extend_from_slice(input::TESTS);
    tests.extend_from_slice(hardening::TESTS);
    tests.extend_from_slice(protocols::TESTS);
    tests.extend_from_slice(audit::TESTS);
    if std::env::var("EDGEGUARD_BENCH").as_deref() == Ok("1") {
        tests.extend_from_slice(bench::TESTS);
    }
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(n, _)| filter.as_ref().is_none_or(|f| n.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        println!("0 passed, 0 failed");
        return;
    }

    let t0 = Instant::now();
    if std::env::var("EDGEGUARD_PREBUILT").as_deref() != Ok("1") {
        harness::build_worker();
    }
    let state = std::env::temp_dir().join(format!("edgeguard-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let key = format_key(&[1; 32]);
    let models_key = format_key(&[2; 32]);
    let disabled_key = format_key(&[3; 32]);
    let ten_key = format_key(&[4; 32]);
    let two_key = format_key(&[5; 32]);
    let budget_key = format_key(&[6; 32]);
    let monitor_key = format_key(&[7; 32]);
    let tools_key = format_key(&[8; 32]);
    let free_key = format_key(&[9; 32]);
    let untrusted_key = format_key(&[10; 32]);
    let three_key = format_key(&[11; 32]);
    let big_key = format_key(&[12; 32]);
    let audit_key = format_key(&[13; 32]);
    let one_key = format_key(&[14; 32]);
    let probe_key = format_key(&[15; 32]);
    harness::seed_keys(
        &state,
        &[
            (kv_key(&key), key_record("k_main", json!({}))),
            (
                kv_key(&models_key),
                key_record("k_models", json!({"models": ["gpt-4o*"]})),
            ),
            (
                kv_key(&disabled_key),
                key_record("k_disabled", json!({"disabled": true})),
            ),
            (
                kv_key(&ten_key),
                key_record("k_ten", json!({"tier": "ten"})),
            ),
            (
                kv_key(&two_key),
                key_record("k_two", json!({"tier": "two"})),
            ),
            (
                kv_key(&budget_key),
                key_record("k_budget", json!({"tier": "budget"})),
            ),
            (
                kv_key(&monitor_key),
                key_record("k_monitor", json!({"monitor_only": true})),
            ),
            (
                kv_key(&tools_key),
                key_record("k_tools", json!({"tools": ["get_*"]})),
            ),
            (
                kv_key(&untrusted_key),
                key_record("k_untrusted", json!({"trust_system": false})),
            ),
            (
                kv_key(&three_key),
                key_record("k_three", json!({"tier": "three"})),
            ),
            (
                kv_key(&big_key),
                key_record("k_big", json!({"tier": "big"})),
            ),
            (
                kv_key(&free_key),
                key_record("k_free", json!({"tier": "unlimited"})),
            ),
            (kv_key(&audit_key), key_record("k_audit", json!({}))),
            (
                kv_key(&one_key),
                key_record("k_one", json!({"tier": "one"})),
            ),
            (kv_key(&probe_key), key_record("k_probe", json!({}))),
        ],
    );
    let mock = harness::start_mock();
    let webhook = harness::start_webhook(WEBHOOK_SECRET);
    let origin = format!("http://127.0.0.1:{}", mock.port);
    let gw = harness::start_gateway(
        "gateway",
        &state,
        &[
            ("ORIGIN_URL", origin.clone()),
            ("ORIGIN_API_KEY", ORIGIN_SECRET.into()),
            ("UPSTREAM_TIMEOUT_MS", "1500".into()),
            ("STREAM_IDLE_TIMEOUT_MS", "3000".into()),
            ("CANARY", CANARY.into()),
            ("LIMIT_TIERS", TEST_TIERS.into()),
            (
                "ORIGINS",
                format!(
                    r#"{{"anthropic": {{"url": "{origin}", "auth": "x-api-key", "secret": "ANTHROPIC_ORIGIN_KEY"}}}}"#
                ),
            ),
            ("ANTHROPIC_ORIGIN_KEY", ANTHROPIC_SECRET.into()),
            ("AUTH_FAILURES_PER_MINUTE", "8".into()),
            ("AUDIT_HMAC_KEY", AUDIT_KEY.into()),
            (
                "AUDIT_WEBHOOK_URL",
                format!("http://127.0.0.1:{}/audit", webhook.port),
            ),
            (
                "AUDIT_WEBHOOK_SECRET",
                String::from_utf8_lossy(WEBHOOK_SECRET).into_owned(),
            ),
            ("AUDIT_WEBHOOK_RETRY_SECONDS", "1".into()),
            (
                "ANOMALY_THRESHOLDS",
                r#"{"window_seconds": 300, "injection": 5}"#.into(),
            ),
        ],
        true,
    );
    // The same worker with its limiter binding pointing at a worker that does not run.
    let nowhere = harness::variant_config("nolimiter", |base| {
        base.replace(
            "class_name = \"Limiter\"",
            "class_name = \"Limiter\"\nscript_name = \"edgeguard-limiter-not-running\"",
        )
    });
    let limiter_vars = |policy: &str| {
        vec![
            ("ORIGIN_URL", origin.clone()),
            ("ORIGIN_API_KEY", ORIGIN_SECRET.to_string()),
            ("LIMITER_FAILURE", policy.to_string()),
            ("LIMITER_TIMEOUT_MS", "1500".to_string()),
            // One stack writes the shared state's audit bucket.
            ("AUDIT", "off".to_string()),
        ]
    };
    let no_limiter_closed = harness::start_gateway_with(
        "nolimiter-closed",
        &state,
        &limiter_vars("closed"),
        true,
        Some(&nowhere),
    );
    let no_limiter_open = harness::start_gateway_with(
        "nolimiter-open",
        &state,
        &limiter_vars("open"),
        true,
        Some(&nowhere),
    );
    let broken = harness::start_gateway(
        "broken",
        &state,
        &[
            ("ORIGIN_URL", "ftp://origin.invalid".into()),
            ("ORIGIN_API_KEY", ORIGIN_SECRET.into()),
        ],
        false,
    );
    eprintln!("stack up in {:.1}s", t0.elapsed().as_secs_f64());
    let ctx = Ctx {
        gw,
        broken,
        no_limiter_closed,
        no_limiter_open,
        mock,
        key,
        models_key,
        disabled_key,
        ten_key,
        two_key,
        budget_key,
        monitor_key,
        tools_key,
        free_key,
        untrusted_key,
        three_key,
        big_key,
        audit_key,
        one_key,
        probe_key,
        state: state.clone(),
        webhook,
    };

    let (mut passed, mut failed) = (0, 0);
    for (name, f) in selected {
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| f(&ctx))) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({} ms)", t.elapsed().as_millis());
            }
            Err(e) => {
                failed += 1;
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("test {name} ... FAILED\n  {msg}");
            }
        }
    }
    if failed > 0 {
        eprintln!("--- gateway log (tail) ---");
        let log = ctx.gw.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for l in tail.into_iter().rev() {
            eprintln!("{l}");
        }
    }
    drop(ctx);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&nowhere);
    println!("\ne2e: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Runs an external command from the repository root and returns (success, output).
/// The last request the mock origin received: its path (with the query) and headers, and its
/// body as JSON (`Null` when it was not JSON).
pub fn last_origin_request(ctx: &Ctx) -> (String, Vec<(String, String)>, Value) {
    let seen = request(ctx.mock.port, "GET", "/__mock/requests", &[], None).expect("mock");
    let v = seen.json();
    let last = v
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .expect("a request");
    let headers = last["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h[0].as_str().unwrap_or("").to_string(),
                h[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = last["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (
        last["path"].as_str().unwrap_or("").to_string(),
        headers,
        body,
    )
}

pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .current_dir(harness::repo())
        .output()
        .expect("run command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
