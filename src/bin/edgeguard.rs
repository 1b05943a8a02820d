//! edgeguard's offline tool for operators.
//!
//! ```text
//! edgeguard mint-key --tenant NAME [--key-id ID] [--tier T] [--models a,b] [--tools x,y]
//!                    [--limits JSON] [--monitor-only] [--trust-system] [--disabled]
//! edgeguard redact [--chunk N] [--config FILE]      stdin -> stdout, optionally fed N bytes at a time
//! edgeguard scan   [--layer output] [--config FILE] JSONL rows with `text` -> one verdict line per row
//! edgeguard eval   [--layer output] FILE...         labelled JSONL -> recall / false positives per category
//! edgeguard injection-model train DIR [--out F] [--check F] [--eval FILE...]   fits the learned classifier
//! edgeguard injection-model loso DIR                  leave-one-source-out table (markdown)
//! edgeguard audit verify DIR [--key-env NAME]       checks downloaded audit objects
//! edgeguard audit query DIR [--key-id K] [--since T] [--until T] [--outcome O] [--kind K]
//!                           [--request-id R] [--detector D] [--fingerprint F]   matching events as NDJSON
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use edgeguard::input::injection::{InjectionScanner, Source, DEFAULT_THRESHOLD};
use edgeguard::input::sanitize::sanitize;
use edgeguard::network::keys::{format_key, kv_key, KeyRecord};
use edgeguard::output::rules::claimed;
use edgeguard::output::{catalog, Action, CatalogConfig, Scanner, DEFAULT_HOLDBACK};
use serde_json::{json, Value};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  edgeguard mint-key --tenant NAME [--key-id ID] [--tier T] [--models a,b] [--tools x,y] [--limits JSON] [--monitor-only] [--trust-system] [--disabled]\n  edgeguard redact [--chunk N] [--all]\n  edgeguard scan [--layer output] [--all]\n  edgeguard eval [--layer output] FILE...\n  edgeguard bench-corpus [--all] [--chunks A..B] [--examples N] PATH...\n  edgeguard injection-model train DIR [--out FILE] [--check FILE] [--eval FILE...]\n  edgeguard injection-model loso DIR\n  edgeguard audit verify DIR [--key-env NAME]\n  edgeguard audit query DIR [--key-id K] [--since T] [--until T] [--outcome O] [--kind K] [--request-id R] [--detector D] [--fingerprint F]\n\n--all turns on the detectors that are off by default (IP addresses)."
    );
    ExitCode::from(2)
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn has(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "mint-key" => mint(rest),
        "redact" => redact(rest),
        "scan" => scan(rest),
        "eval" => eval(rest),
        "bench-corpus" => bench_corpus(rest),
        "audit" => audit(rest),
        "injection-model" => injection_model(rest),
        _ => usage(),
    }
}

fn scanner(all: bool) -> Scanner {
    let mut cfg = CatalogConfig::default();
    if all {
        cfg.actions = vec![
            ("ipv4".into(), Action::Redact),
            ("ipv6".into(), Action::Redact),
        ];
    }
    match catalog(&cfg) {
        Ok(d) => Scanner::new(d, DEFAULT_HOLDBACK),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// Options of `mint-key` that take a value, and those that do not.
const MINT_VALUES: &[&str] = &[
    "--tenant", "--key-id", "--tier", "--models", "--tools", "--limits",
];
const MINT_FLAGS: &[&str] = &["--monitor-only", "--trust-system", "--disabled"];

/// A value given inline, or as `@NAME` read from the environment variable NAME.
fn value(args: &[String], name: &str) -> Result<Option<String>, String> {
    match flag(args, name) {
        None => Ok(None),
        Some(v) => match v.strip_prefix('@') {
            Some(var) => std::env::var(var)
                .map(Some)
                .map_err(|_| format!("{name}: environment variable {var} is not set")),
            None => Ok(Some(v)),
        },
    }
}

fn mint(args: &[String]) -> ExitCode {
    match mint_record(args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint-key: {e}");
            ExitCode::from(2)
        }
    }
}

fn mint_record(args: &[String]) -> Result<serde_json::Value, String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if MINT_VALUES.contains(&a) {
            if i + 1 >= args.len() {
                return Err(format!("{a} needs a value"));
            }
            i += 2;
        } else if MINT_FLAGS.contains(&a) {
            i += 1;
        } else {
            return Err(format!("unknown option {a}"));
        }
    }
    let tenant = value(args, "--tenant")?.ok_or("--tenant is required")?;
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|_| "cannot read /dev/urandom")?;
    let key = format_key(&random);
    let key_id = value(args, "--key-id")?
        .unwrap_or_else(|| format!("key_{}", &edgeguard::network::keys::hash_key(&key)[..12]));
    if key_id.is_empty()
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!("key id {key_id:?}: letters, digits, _ - . only"));
    }
    let list = |name: &str| -> Result<Option<Vec<String>>, String> {
        Ok(value(args, name)?.map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        }))
    };
    let limits = match value(args, "--limits")? {
        None => None,
        Some(j) => Some(
            serde_json::from_str::<edgeguard::network::limits::Tier>(&j)
                .map_err(|e| format!("--limits: {e}"))?,
        ),
    };
    let record = KeyRecord {
        key_id: key_id.clone(),
        tenant,
        tier: value(args, "--tier")?.unwrap_or_else(|| "default".into()),
        models: list("--models")?.unwrap_or_default(),
        tools: list("--tools")?,
        monitor_only: has(args, "--monitor-only"),
        trust_system: has(args, "--trust-system"),
        disabled: has(args, "--disabled"),
        limits,
    };
    Ok(json!({"key": key, "key_id": key_id, "kv_key": kv_key(&key), "record": record}))
}

/// Files under `path` (a file, or every regular file below a folder, in sorted order).
fn files_under(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    let Ok(rd) = std::fs::read_dir(path) else {
        return;
    };
    let mut entries: Vec<std::path::PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for e in entries {
        if !e.is_symlink() {
            files_under(&e, out);
        }
    }
}

/// Findings per detector and throughput on any text, so operators can measure false alarms on
/// their own traffic; with `--chunks A..B`, also checks that streaming every file in pieces of
/// A to B bytes gives exactly the one-shot output (exit 1 on any difference).
fn bench_corpus(args: &[String]) -> ExitCode {
    let all = has(args, "--all");
    let examples: usize = flag(args, "--examples")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let chunks = flag(args, "--chunks").and_then(|c| {
        let (a, b) = c.split_once("..")?;
        Some((a.parse::<usize>().ok()?.max(1), b.parse::<usize>().ok()?))
    });
    let mut skip_next = false;
    let mut paths = Vec::new();
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if matches!(a.as_str(), "--chunks" | "--examples") {
            skip_next = true;
            continue;
        }
        if !a.starts_with("--") {
            files_under(std::path::Path::new(a), &mut paths);
        }
    }
    if paths.is_empty() {
        return usage();
    }
    let s = scanner(all);
    let mut per: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    let (mut bytes, mut secs, mut differences) = (0usize, 0f64, 0usize);
    for p in &paths {
        let Ok(raw) = std::fs::read(p) else { continue };
        let text = String::from_utf8_lossy(&raw);
        let t0 = std::time::Instant::now();
        let r = s.redact(&text);
        secs += t0.elapsed().as_secs_f64();
        bytes += text.len();
        for f in &r.findings {
            let e = per.entry(f.detector.clone()).or_default();
            e.0 += 1;
            if e.1.len() < examples {
                let lo = text.floor_char_boundary(f.start.saturating_sub(24));
                let hi = text.ceil_char_boundary((f.end + 24).min(text.len()));
                e.1.push(format!("{}: {:?}", p.display(), &text[lo..hi]));
            }
        }
        if let Some((a, b)) = chunks {
            // Held to the scan of the whole text at once, which `redact` itself only makes
            // for texts up to WHOLE_MAX bytes.
            let r = s.redact_whole(&text);
            for n in a..=b {
                let mut st = s.stream();
                let mut out = String::new();
                for c in raw.chunks(n) {
                    st.push_bytes(c, &mut out);
                }
                st.finish(&mut out);
                if out != r.text {
                    differences += 1;
                    eprintln!(
                        "stream differs from one-shot: {} in pieces of {n}",
                        p.display()
                    );
                }
            }
        }
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "{} files, {mb:.1} MB, one-shot {:.0} MB/s",
        paths.len(),
        mb / secs.max(1e-9)
    );
    for (d, (n, ex)) in &per {
        println!(
            "{d:24} {n:>8} findings ({:.1} per MB)",
            *n as f64 / mb.max(1e-9)
        );
        for e in ex {
            println!("    {e}");
        }
    }
    if let Some((a, b)) = chunks {
        println!("stream vs one-shot, pieces of {a}..={b} bytes: {differences} differences");
        if differences > 0 {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn redact(args: &[String]) -> ExitCode {
    let chunk: usize = flag(args, "--chunk")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let s = scanner(has(args, "--all"));
    let mut out = String::new();
    let mut stdout = std::io::stdout().lock();
    let mut stdin = std::io::stdin().lock();
    let mut r = s.stream();
    let report = |r: &mut edgeguard::output::StreamRedactor<'_>| {
        for f in r.take_findings() {
            eprintln!("{}", serde_json::to_string(&f).unwrap_or_default());
        }
    };
    if chunk == 0 {
        // One push of the whole input.
        let mut input = Vec::new();
        if stdin.read_to_end(&mut input).is_err() {
            return ExitCode::from(1);
        }
        r.push_bytes(&input, &mut out);
    } else {
        // Pieces of exactly `chunk` bytes (the last may be shorter), read as they come: memory
        // stays bounded by the piece and the redactor's hold-back, whatever the input's size.
        let mut buf = vec![0u8; chunk];
        loop {
            let mut filled = 0;
            while filled < chunk {
                match stdin.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return ExitCode::from(1),
                }
            }
            if filled == 0 {
                break;
            }
            r.push_bytes(&buf[..filled], &mut out);
            let _ = stdout.write_all(out.as_bytes());
            out.clear();
            report(&mut r);
            if filled < chunk {
                break;
            }
        }
    }
    r.finish(&mut out);
    let _ = stdout.write_all(out.as_bytes());
    report(&mut r);
    if r.blocked() {
        eprintln!("blocked");
    }
    ExitCode::SUCCESS
}

fn scan(args: &[String]) -> ExitCode {
    let layer = flag(args, "--layer").unwrap_or_else(|| "output".into());
    if layer == "input" {
        return scan_input(
            flag(args, "--threshold")
                .and_then(|t| t.parse().ok())
                .unwrap_or(DEFAULT_THRESHOLD),
            has(args, "--rules-only"),
        );
    }
    if layer != "output" {
        eprintln!("unknown layer {layer:?} (available: output, input)");
        return ExitCode::from(2);
    }
    let s = scanner(has(args, "--all"));
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let verdict = match serde_json::from_str::<Value>(&line) {
            Ok(v) => match v.get("text").and_then(Value::as_str) {
                Some(text) => {
                    let r = s.redact(text);
                    let findings: Vec<Value> = r
                        .findings
                        .iter()
                        .map(|f| json!({"detector": f.detector, "category": f.category, "span": [f.start, f.end]}))
                        .collect();
                    json!({"flagged": !findings.is_empty(), "findings": findings})
                }
                None => json!({"error": "row has no text field"}),
            },
            Err(e) => json!({"error": format!("invalid JSON: {e}")}),
        };
        let _ = writeln!(stdout, "{verdict}");
    }
    ExitCode::SUCCESS
}

/// One labelled row of a corpus file, with the file's stem.
struct Row {
    file: String,
    text: String,
    category: String,
    label: i64,
}

/// Reads the labelled rows of JSONL files (rows missing a field are skipped).
fn labelled_rows(files: &[&String]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for file in files {
        let f = std::fs::File::open(file).map_err(|e| format!("cannot open {file}: {e}"))?;
        let stem = std::path::Path::new(file.as_str())
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.extend(
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    let row = serde_json::from_str::<Value>(&line).ok()?;
                    Some(Row {
                        file: stem.clone(),
                        text: row["text"].as_str()?.to_string(),
                        category: row["category"].as_str()?.to_string(),
                        label: row["label"].as_i64()?,
                    })
                }),
        );
    }
    Ok(rows)
}

fn eval(args: &[String]) -> ExitCode {
    let layer = flag(args, "--layer").unwrap_or_else(|| "output".into());
    // File arguments: everything that is not an option or an option's value.
    let files: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let option_value = *i > 0 && matches!(args[i - 1].as_str(), "--layer" | "--threshold");
            !(a.starts_with("--") || option_value)
        })
        .map(|(_, a)| a)
        .collect();
    if files.is_empty() {
        return usage();
    }
    if layer == "input" {
        let threshold = flag(args, "--threshold")
            .and_then(|t| t.parse().ok())
            .unwrap_or(DEFAULT_THRESHOLD);
        return eval_input(
            &files,
            threshold,
            has(args, "--misses"),
            has(args, "--rules-only"),
        );
    }
    let s = scanner(true);
    // category -> (positives, detected, negatives, false positives)
    let mut stats: BTreeMap<String, [u32; 4]> = BTreeMap::new();
    let mut misses: Vec<String> = Vec::new();
    let rows = match labelled_rows(&files) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for row in &rows {
        let (text, cat, label) = (row.text.as_str(), row.category.as_str(), row.label);
        let dets = claimed(cat);
        if dets.is_empty() {
            continue;
        }
        let r = s.redact(text);
        let hit = r
            .findings
            .iter()
            .any(|f| dets.contains(&f.detector.as_str()));
        let e = stats.entry(cat.to_string()).or_default();
        if label == 1 {
            e[0] += 1;
            e[1] += u32::from(hit);
            if !hit && has(args, "--misses") {
                misses.push(format!(
                    "miss {cat}: {}",
                    text.chars().take(120).collect::<String>()
                ));
            }
        } else {
            e[2] += 1;
            e[3] += u32::from(hit);
            if hit && has(args, "--misses") {
                misses.push(format!(
                    "false positive {cat}: {}",
                    text.chars().take(120).collect::<String>()
                ));
            }
        }
    }

    println!(
        "{:<48} {:>9} {:>8} {:>9} {:>8}",
        "category", "positives", "recall", "negatives", "fp rate"
    );
    let (mut tp, mut p, mut fp, mut n) = (0, 0, 0, 0);
    for (cat, [pos, det, neg, fps]) in &stats {
        let recall = if *pos > 0 {
            format!("{:.1}%", 100.0 * f64::from(*det) / f64::from(*pos))
        } else {
            "-".into()
        };
        let fpr = if *neg > 0 {
            format!("{:.1}%", 100.0 * f64::from(*fps) / f64::from(*neg))
        } else {
            "-".into()
        };
        println!("{cat:<48} {pos:>9} {recall:>8} {neg:>9} {fpr:>8}");
        tp += det;
        p += pos;
        fp += fps;
        n += neg;
    }
    println!(
        "{:<48} {:>9} {:>8} {:>9} {:>8}",
        "all claimed",
        p,
        format!("{:.1}%", 100.0 * f64::from(tp) / f64::from(p.max(1))),
        n,
        format!("{:.1}%", 100.0 * f64::from(fp) / f64::from(n.max(1)))
    );
    for m in misses {
        eprintln!("{m}");
    }
    ExitCode::SUCCESS
}

/// The gateway's input scanner; `--rules-only` leaves the learned model out
/// (`INJECTION_MODEL = "off"`).
fn injection_scanner(rules_only: bool) -> InjectionScanner {
    let s = if rules_only {
        InjectionScanner::rules_only()
    } else {
        InjectionScanner::new()
    };
    match s {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// Scores one text the way the gateway scores a user message (sanitized, hidden text too).
fn score_text(s: &InjectionScanner, text: &str) -> edgeguard::input::injection::Verdict {
    let clean = sanitize(text);
    let mut parts = vec![(Source::User, clean.text.as_str())];
    if !clean.hidden.is_empty() {
        parts.push((Source::Hidden, clean.hidden.as_str()));
    }
    s.scan(parts)
}

fn scan_input(threshold: f64, rules_only: bool) -> ExitCode {
    let s = injection_scanner(rules_only);
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let verdict = match serde_json::from_str::<Value>(&line) {
            Ok(v) => match v.get("text").and_then(Value::as_str) {
                Some(text) => {
                    let r = score_text(&s, text);
                    json!({"flagged": r.score >= threshold, "score": (r.score * 1000.0).round() / 1000.0, "rules": r.rules})
                }
                None => json!({"error": "row has no text field"}),
            },
            Err(e) => json!({"error": format!("invalid JSON: {e}")}),
        };
        let _ = writeln!(stdout, "{verdict}");
    }
    ExitCode::SUCCESS
}

/// The group a labelled row is reported under: the file's family and the attack method or
/// benign subset.
fn input_group(category: &str) -> String {
    if let Some(rest) = category.strip_prefix("cse:") {
        return format!("cse:{}", rest.split('|').next().unwrap_or(rest));
    }
    if let Some(rest) = category.strip_prefix("jbb:") {
        return format!("jbb:{}", rest.split('|').next().unwrap_or(rest));
    }
    category.split(':').next().unwrap_or(category).to_string()
}

fn eval_input(files: &[&String], threshold: f64, misses: bool, rules_only: bool) -> ExitCode {
    let s = injection_scanner(rules_only);
    // group -> scores of label-1 rows and label-0 rows
    let mut groups: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut per_file: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut benign_all: Vec<f64> = Vec::new();
    let rows = match labelled_rows(files) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    for row in &rows {
        let (text, cat, label) = (row.text.as_str(), row.category.as_str(), row.label);
        let r = score_text(&s, text);
        let g = groups.entry(input_group(cat)).or_default();
        let pf = per_file.entry(row.file.clone()).or_default();
        if label == 1 {
            g.0.push(r.score);
            pf.0.push(r.score);
            if misses && r.score < threshold {
                eprintln!(
                    "miss {cat} {:.2}: {}",
                    r.score,
                    text.chars().take(140).collect::<String>()
                );
            }
        } else {
            g.1.push(r.score);
            pf.1.push(r.score);
            benign_all.push(r.score);
            if misses && r.score >= threshold {
                eprintln!(
                    "false positive {cat} {:.2} {:?}: {}",
                    r.score,
                    r.rules,
                    text.chars().take(140).collect::<String>()
                );
            }
        }
    }

    let rate = |v: &[f64], hit: &dyn Fn(f64) -> bool| {
        if v.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.1}%",
                100.0 * v.iter().filter(|x| hit(**x)).count() as f64 / v.len() as f64
            )
        }
    };
    let report = |title: &str, rows: &BTreeMap<String, (Vec<f64>, Vec<f64>)>| {
        println!(
            "{title:<44} {:>8} {:>10} {:>8} {:>9}",
            "attacks", "detected", "benign", "fp rate"
        );
        for (k, (pos, neg)) in rows {
            println!(
                "{k:<44} {:>8} {:>10} {:>8} {:>9}",
                pos.len(),
                rate(pos, &|x| x >= threshold),
                neg.len(),
                rate(neg, &|x| x >= threshold)
            );
        }
        println!();
    };
    println!("threshold {threshold}\n");
    report("file", &per_file);
    report("category", &groups);
    // The lowest threshold that keeps false positives on all benign rows at or under 1%.
    let mut sorted = benign_all.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = sorted.len() / 100;
    let t1 = sorted.get(allowed).map_or(0.0, |x| x + 1e-6);
    println!(
        "threshold for <= 1% false positives on the {} benign rows: {:.3}",
        sorted.len(),
        t1
    );
    ExitCode::SUCCESS
}

/// Every `*.ndjson.gz` file under `dir`, named by its path relative to `dir` (the object name
/// when the bucket was downloaded as is).
fn audit_objects(dir: &std::path::Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    fn walk(
        root: &std::path::Path,
        d: &std::path::Path,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        let entries = std::fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.to_string_lossy().ends_with(".ndjson.gz") {
                let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let name = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push((name, bytes));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn audit(args: &[String]) -> ExitCode {
    use edgeguard::audit::event::parse_time;
    use edgeguard::audit::store;
    let (Some(sub), Some(dir)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let rest = &args[2..];
    let objects = match audit_objects(std::path::Path::new(dir)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("edgeguard audit: {e}");
            return ExitCode::from(2);
        }
    };
    match sub.as_str() {
        "verify" => {
            let key_env = flag(rest, "--key-env").unwrap_or_else(|| "AUDIT_HMAC_KEY".into());
            let key = std::env::var(&key_env)
                .ok()
                .filter(|k| !k.trim().is_empty());
            if key.is_none() {
                eprintln!("note: ${key_env} is not set: content is checked, signatures are not");
            }
            let v = store::verify(&objects, key.as_deref().map(|k| k.trim().as_bytes()));
            for p in &v.problems {
                println!("PROBLEM {p}");
            }
            println!(
                "{} objects, {} events, {} problems{}",
                v.objects,
                v.events,
                v.problems.len(),
                if key.is_some() {
                    ", signatures checked"
                } else {
                    ""
                }
            );
            if v.problems.is_empty() && v.objects > 0 {
                ExitCode::SUCCESS
            } else {
                if v.objects == 0 {
                    eprintln!("no *.ndjson.gz objects under {dir}");
                }
                ExitCode::from(1)
            }
        }
        "query" => {
            let time = |name: &str| -> Result<Option<u64>, ExitCode> {
                match flag(rest, name) {
                    None => Ok(None),
                    Some(t) => parse_time(&t).map(Some).ok_or_else(|| {
                        eprintln!("{name}: expected 2026-11-27 or 2026-11-27T07:00:00Z, got {t:?}");
                        ExitCode::from(2)
                    }),
                }
            };
            let (since_ms, until_ms) = match (time("--since"), time("--until")) {
                (Ok(s), Ok(u)) => (s, u),
                (Err(c), _) | (_, Err(c)) => return c,
            };
            let q = store::Query {
                key_id: flag(rest, "--key-id"),
                since_ms,
                until_ms,
                outcome: flag(rest, "--outcome"),
                kind: flag(rest, "--kind"),
                request_id: flag(rest, "--request-id"),
                detector: flag(rest, "--detector"),
                fingerprint: flag(rest, "--fingerprint"),
            };
            let out = std::io::stdout();
            let mut out = out.lock();
            for e in store::query(&objects, &q) {
                let _ = writeln!(out, "{e}");
            }
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn injection_model(args: &[String]) -> ExitCode {
    use edgeguard::input::train;
    let (Some(cmd), Some(dir)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let dir = std::path::Path::new(dir);
    match cmd.as_str() {
        "train" => {
            let (model, report) = match train::train_dir(dir) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
            };
            let bytes = model.to_bytes();
            eprintln!(
                "{} rows ({} attacks); benign validation {} rows, each scored by a model blind to its source: {} flagged combined ({:.2}%), {} by rules alone; cut {:.4}",
                report.rows,
                report.attacks,
                report.validation,
                report.validation_fp,
                100.0 * report.validation_fp as f64 / report.validation.max(1) as f64,
                report.validation_fp_rules,
                model.cut()
            );
            if let Some(out) = flag(args, "--out") {
                if let Err(e) = std::fs::write(&out, &bytes) {
                    eprintln!("{out}: {e}");
                    return ExitCode::from(1);
                }
            }
            // Labelled files never used in training, scored with the model just fitted.
            let mut eval_files = args.iter().skip_while(|a| *a != "--eval").skip(1);
            for f in eval_files.by_ref().take_while(|a| !a.starts_with("--")) {
                let rows = match train::load_file(std::path::Path::new(f)) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(1);
                    }
                };
                let flags = match train::flags(&model, &rows) {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(1);
                    }
                };
                let count = |label: bool, pick: fn(&(bool, bool, bool)) -> bool| {
                    flags.iter().filter(|x| x.0 == label && pick(x)).count()
                };
                let (a, b) = (count(true, |_| true), count(false, |_| true));
                eprintln!(
                    "{f}: attacks {a}: rules {} combined {}; benign {b}: rules {} combined {}",
                    count(true, |x| x.1),
                    count(true, |x| x.2),
                    count(false, |x| x.1),
                    count(false, |x| x.2)
                );
            }
            if let Some(check) = flag(args, "--check") {
                match std::fs::read(&check) {
                    Ok(b) if b == bytes => eprintln!("{check}: identical to the trained model"),
                    Ok(_) => {
                        eprintln!("{check}: differs from the model the pipeline produces");
                        return ExitCode::from(1);
                    }
                    Err(e) => {
                        eprintln!("{check}: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        "loso" => {
            println!("| held-out source | attacks | rules only | combined | combined, 2% cut | benign | FP rules only | FP combined | FP combined, 2% cut | FP on benign validation |");
            println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            let pct = |a: usize, b: usize| {
                if b == 0 {
                    "–".to_string()
                } else {
                    format!("{:.1}%", 100.0 * a as f64 / b as f64)
                }
            };
            let r = train::leave_one_source_out(dir, |f| {
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    f.source,
                    f.attacks,
                    pct(f.caught_rules, f.attacks),
                    pct(f.caught_combined, f.attacks),
                    pct(f.caught_at_2pct, f.attacks),
                    f.benign,
                    pct(f.fp_rules, f.benign),
                    pct(f.fp_combined, f.benign),
                    pct(f.fp_at_2pct, f.benign),
                    pct(f.validation_fp, f.validation),
                );
            });
            match r {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        _ => usage(),
    }
}
