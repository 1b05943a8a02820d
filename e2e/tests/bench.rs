//! Benchmarks through `wrangler dev` (run with `EDGEGUARD_BENCH=1 cargo test --test e2e -- bench`):
//! what the limiter adds per request, measured against a key without limits in the same run, and
//! the decisions per second one hot key sustains.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::request;
use crate::{scripted, Ctx};

pub const TESTS: &[crate::Test] = &[("bench_limiter", bench_limiter)];

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
    let (on50, on99, off50, off99) = (
        pct(&mut on, 0.5),
        pct(&mut on, 0.99),
        pct(&mut off, 0.5),
        pct(&mut off, 0.99),
    );
    println!("limiter latency: with limits p50 {on50:.2} ms p99 {on99:.2} ms; without p50 {off50:.2} ms p99 {off99:.2} ms; ratio p50 {:.2} p99 {:.2}", on50 / off50, on99 / off99);

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
