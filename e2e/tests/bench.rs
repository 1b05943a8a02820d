//! Benchmarks through `wrangler dev` (run with `EDGEGUARD_BENCH=1 cargo test --test e2e -- bench`):
//! what the limiter adds per request, measured against a key without limits in the same run, and
//! the decisions per second one hot key sustains.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::request;
use crate::{scripted, Ctx};

pub const TESTS: &[crate::Test] = &[
    ("bench_limiter", bench_limiter),
    ("bench_audit_producer", bench_audit_producer),
];

/// What the audit producer adds to a response: the same requests (a key without limits, so no
/// limiter call on either side) through two fresh gateways configured alike but for `AUDIT`,
/// interleaved. The audit-on side also runs the queue consumer (gzip, R2 write) on the same
/// two cores, which a deployment runs in a separate invocation.
fn bench_audit_producer(ctx: &Ctx) {
    let origin = format!("http://127.0.0.1:{}", ctx.mock.port);
    let start = |name: &str, audit: &str| {
        let state = ctx.state.join(name);
        crate::harness::seed_keys(
            &state,
            &[(
                edgeguard::network::keys::kv_key(&ctx.free_key),
                crate::key_record("k_free", json!({"tier": "unlimited"})),
            )],
        );
        crate::harness::start_gateway(
            name,
            &state,
            &[
                ("ORIGIN_URL", origin.clone()),
                ("ORIGIN_API_KEY", crate::ORIGIN_SECRET.into()),
                ("AUDIT", audit.into()),
                ("AUDIT_HMAC_KEY", crate::AUDIT_KEY.into()),
                ("LIMIT_TIERS", crate::TEST_TIERS.into()),
            ],
            true,
        )
    };
    let on_gw = start("audit-on", "on");
    let off_gw = start("audit-off", "off");
    for (label, stream) in [("whole", false), ("streamed", true)] {
        let body = scripted("ok then", stream, json!({"delay_ms": 0})).to_string();
        for _ in 0..30 {
            assert_eq!(one(on_gw.port, &ctx.free_key, body.as_bytes()).0, 200);
            assert_eq!(one(off_gw.port, &ctx.free_key, body.as_bytes()).0, 200);
        }
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for i in 0..600 {
            // Alternate which side goes first.
            let sides = if i % 2 == 0 {
                [(&on_gw, true), (&off_gw, false)]
            } else {
                [(&off_gw, false), (&on_gw, true)]
            };
            for (gw, is_on) in sides {
                let (s, ms) = one(gw.port, &ctx.free_key, body.as_bytes());
                assert_eq!(s, 200);
                if is_on {
                    on.push(ms);
                } else {
                    off.push(ms);
                }
            }
        }
        compare(
            &format!("audit producer ({label}): audit on"),
            "off",
            on,
            off,
        );
    }
}

fn one(port: u16, key: &str, body: &[u8]) -> (u16, f64) {
    let auth = format!("Bearer {key}");
    let t = Instant::now();
    let r = request(
        port,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(body),
    )
    .expect("request");
    (r.status, t.elapsed().as_secs_f64() * 1000.0)
}

/// Prints p50 and p99 of two interleaved samples and their ratios.
fn compare(a: &str, b: &str, mut on: Vec<f64>, mut off: Vec<f64>) {
    let (on50, on99, off50, off99) = (
        pct(&mut on, 0.5),
        pct(&mut on, 0.99),
        pct(&mut off, 0.5),
        pct(&mut off, 0.99),
    );
    println!("{a} p50 {on50:.2} ms p99 {on99:.2} ms; {b} p50 {off50:.2} ms p99 {off99:.2} ms; ratio p50 {:.2} p99 {:.2}", on50 / off50, on99 / off99);
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn bench_limiter(ctx: &Ctx) {
    let port = ctx.gw.port;
    let body = scripted("ok", false, json!({"delay_ms": 0})).to_string();
    // Warm both paths, then interleave so both see the same machine load.
    for _ in 0..20 {
        one(port, &ctx.key, body.as_bytes());
        one(port, &ctx.free_key, body.as_bytes());
    }
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let (s, ms) = one(port, &ctx.key, body.as_bytes());
        assert_eq!(s, 200);
        on.push(ms);
        let (s, ms) = one(port, &ctx.free_key, body.as_bytes());
        assert_eq!(s, 200);
        off.push(ms);
    }
    compare("limiter latency: with limits", "without", on, off);

    // One hot key, 8 clients, 5 seconds.
    let stop = Instant::now() + Duration::from_secs(5);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let key = ctx.key.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while Instant::now() < stop {
                    if one(port, &key, body.as_bytes()).0 == 200 {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u32 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    println!(
        "hot key: {:.0} allowed requests per second (8 clients, one key, one limiter object)",
        f64::from(total) / 5.0
    );
}
