//! Benchmarks for the output filter (run natively, and as wasm under node's WASI by
//! `scripts/bench`). Prints a table; numbers from one run on one machine are comparable with
//! each other, not with other machines.
//!
//! - throughput of the streaming redactor on text with no candidates and on text dense with
//!   candidates, fed in 4-byte and 16 KiB pieces;
//! - what a token waits: share of prose tokens released by the push that brought them, and the
//!   time one push takes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use edgeguard::input::injection::InjectionScanner;
use edgeguard::input::{inspect, InputPolicy, Trust};
use edgeguard::output::{catalog, CatalogConfig, Scanner};
use edgeguard::protocol::Protocol;

const PROSE: &str = "The quick brown fox jumps over the lazy dog while the committee reviews \
the quarterly plan. Streaming answers arrive token by token, and most of them carry nothing \
sensitive at all: explanations, summaries, lists of steps and friendly closing remarks. ";

const DENSE: &str = "Contact jane.doe@northwind.io or call +1 415 555 2671. Card 4111 1111 1111 1111, \
IBAN DE89 3704 0044 0532 0130 00, key AKIAZ3MSJV4WWNKWW5FG, token 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, \
password = \"h7Gk29fLq0Xz\", SSN 536-22-8727. ";

fn text(seed: &str, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + seed.len());
    while s.len() < bytes {
        s.push_str(seed);
    }
    s
}

fn throughput(s: &Scanner, text: &str, chunk: usize) -> f64 {
    let bytes = text.as_bytes();
    let mut total = 0usize;
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed().as_secs_f64() < 0.6 || rounds < 2 {
        let mut r = s.stream();
        let mut out = String::with_capacity(bytes.len());
        for c in bytes.chunks(chunk) {
            r.push_bytes(c, &mut out);
        }
        r.finish(&mut out);
        black_box(&out);
        total += bytes.len();
        rounds += 1;
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Throughput on real text: the files named in `EDGEGUARD_BENCH_CORPUS` (comma-separated), the
/// first `EDGEGUARD_BENCH_CORPUS_MB` megabytes of each (20 by default), one shot and streamed in
/// 16-byte and 16 KiB pieces; each streamed output must equal the one-shot output. Each figure
/// is the best of `EDGEGUARD_BENCH_REPS` runs (1 by default), which a shared machine's slow
/// spells move less than a single run.
fn corpora(s: &Scanner) {
    let Ok(list) = std::env::var("EDGEGUARD_BENCH_CORPUS") else {
        return;
    };
    let mb: usize = std::env::var("EDGEGUARD_BENCH_CORPUS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let reps: usize = std::env::var("EDGEGUARD_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    println!();
    println!("Output filter on real text (first {mb} MB of each file, best of {reps})");
    println!();
    println!("| file | one shot MB/s | 16 B pieces MB/s | 16 KiB pieces MB/s |");
    println!("|---|---|---|---|");
    for path in list.split(',').filter(|p| !p.is_empty()) {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| {
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, (mb * 1_000_000) as u64),
                    &mut bytes,
                )
            })
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        drop(bytes);
        let one = s.redact(&text);
        let mb_s = |secs: f64| text.len() as f64 / secs / 1e6;
        let one_shot = mb_s(best_of(reps, || {
            std::hint::black_box(s.redact(&text));
        }));
        let mut streamed = Vec::new();
        for chunk in [16usize, 16 << 10] {
            streamed.push(mb_s(best_of(reps, || {
                let mut r = s.stream();
                let mut out = String::with_capacity(text.len());
                for c in text.as_bytes().chunks(chunk) {
                    r.push_bytes(c, &mut out);
                }
                r.finish(&mut out);
                assert_eq!(
                    out, one.text,
                    "{path}: streamed in {chunk}-byte pieces differs"
                );
            })));
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        println!(
            "| {name} | {one_shot:.0} | {:.0} | {:.0} |",
            streamed[0], streamed[1]
        );
    }
}

/// The shortest time of `reps` runs of `f` (at least one), in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

/// A conversation of about `bytes` of text: alternating user and assistant turns of prose,
/// with a system prompt, as JSON (what the gateway parses).
fn conversation(bytes: usize) -> serde_json::Map<String, serde_json::Value> {
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a helpful assistant for a travel company."}),
    ];
    let mut total = 0;
    let mut turn = 0;
    while total < bytes {
        let text = PROSE.repeat(2);
        total += text.len();
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": text}));
        turn += 1;
    }
    let mut m = serde_json::Map::new();
    m.insert("model".into(), "m".into());
    m.insert("messages".into(), serde_json::Value::Array(messages));
    m
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The input layer with the learned model and with rules only, alternating in one run.
fn scanner_latency() {
    // Building the scanner happens once per isolate (its automata and the model's table).
    let mut builds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(InjectionScanner::new().unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    builds.sort_by(f64::total_cmp);
    println!();
    println!(
        "Injection scanner build (once per isolate): {:.1} ms",
        builds[2]
    );
    let with_model = InjectionScanner::new().unwrap();
    let rules_only = InjectionScanner::rules_only().unwrap();
    let policy = InputPolicy::default();
    println!();
    println!("| conversation | p50 rules + model | p99 | p50 rules only | p99 | p50 ratio |");
    println!("|---|---|---|---|---|---|");
    for kib in [1usize, 8, 64] {
        let body = conversation(kib << 10);
        let runs = if kib == 64 { 200 } else { 1000 };
        let mut times = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
        for i in 0..2 * runs {
            let s = if i % 2 == 0 { &with_model } else { &rules_only };
            let mut b = body.clone();
            let t = Instant::now();
            let r = inspect(
                Protocol::OpenAiChat,
                &mut b,
                &policy,
                None,
                s,
                &Trust::default(),
            )
            .unwrap();
            times[i % 2].push(t.elapsed().as_secs_f64() * 1e6);
            black_box(r);
        }
        for t in &mut times {
            t.sort_by(f64::total_cmp);
        }
        let p50 = |t: &[f64]| percentile(t, 0.5);
        println!(
            "| {kib} KiB | {:.0} us | {:.0} us | {:.0} us | {:.0} us | {:.2} |",
            p50(&times[0]),
            percentile(&times[0], 0.99),
            p50(&times[1]),
            percentile(&times[1], 0.99),
            p50(&times[0]) / p50(&times[1])
        );
    }
}

fn main() {
    // EDGEGUARD_BENCH_ONLY=input: only the input layer's latency.
    if std::env::var("EDGEGUARD_BENCH_ONLY").as_deref() == Ok("input") {
        scanner_latency();
        return;
    }
    let s = Scanner::new(
        catalog(&CatalogConfig {
            canaries: vec!["EGCANARY-bench-0001".into()],
            ..CatalogConfig::default()
        })
        .unwrap(),
        512,
    );
    let prose = text(PROSE, 1 << 20);
    let dense = text(DENSE, 1 << 18);
    println!("Output filter: streaming redactor throughput");
    println!();
    println!("| input | piece size | MB/s |");
    println!("|---|---|---|");
    for (name, t) in [
        ("no candidates (prose)", &prose),
        ("dense with candidates", &dense),
    ] {
        for chunk in [4usize, 16 << 10] {
            let label = if chunk == 4 {
                "4 B".to_string()
            } else {
                "16 KiB".to_string()
            };
            let mbs = throughput(&s, t, chunk);
            // Below 10 MB/s a whole number hides differences that matter.
            let prec = usize::from(mbs < 10.0);
            println!("| {name} | {label} | {mbs:.prec$} |");
        }
    }
    let one_shot = {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed().as_secs_f64() < 0.6 {
            black_box(s.redact(&prose));
            n += prose.len();
        }
        n as f64 / start.elapsed().as_secs_f64() / 1e6
    };
    println!("| no candidates (prose), one-shot | whole | {one_shot:.0} |");
    corpora(&s);

    // Token wait: feed prose the way models stream it, one word-token at a time with its
    // leading space (" The", " quick", ","), and see how much of each token leaves the filter on
    // the push that brought it.
    let mut tokens: Vec<String> = Vec::new();
    for w in PROSE.split(' ').filter(|w| !w.is_empty()) {
        let (word, punct) = match w.strip_suffix(['.', ',', ':']) {
            Some(stripped) => (stripped, &w[stripped.len()..]),
            None => (w, ""),
        };
        tokens.push(format!(" {word}"));
        if !punct.is_empty() {
            tokens.push(punct.to_string());
        }
    }
    let tokens: Vec<String> = tokens.iter().cycle().take(20_000).cloned().collect();
    let mut r = s.stream();
    let mut out = String::new();
    let mut ends = Vec::with_capacity(tokens.len());
    let mut pushed = 0usize;
    // waits[k] = tokens whose last byte left the filter k pushes after their own.
    let mut waits = [0usize; 4];
    let mut next_unreleased = 0usize;
    let start = Instant::now();
    for (i, t) in tokens.iter().enumerate() {
        r.push_str(t, &mut out);
        pushed += t.len();
        ends.push(pushed);
        // Prose passes unchanged, so output length says which tokens are fully out.
        while next_unreleased <= i && ends[next_unreleased] <= out.len() {
            waits[(i - next_unreleased).min(3)] += 1;
            next_unreleased += 1;
        }
    }
    let per_push_us = start.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64;
    black_box(&out);
    let pct = |n: usize| 100.0 * n as f64 / tokens.len() as f64;
    println!();
    println!(
        "token wait ({} prose tokens, streamed as \" word\" and punctuation): {:.1}% left the filter on the push \
         that brought them, {:.1}% one token later, {:.1}% two tokens later, {:.1}% later; one push takes {per_push_us:.2} us",
        tokens.len(),
        pct(waits[0]),
        pct(waits[1]),
        pct(waits[2]),
        pct(waits[3])
    );
    println!();
    println!("Input layer: sanitize, fold and scan a whole conversation (latency per request)");
    scanner_latency();
}
