//! The stored form of audit events: one gzip NDJSON object per batch in R2 under
//! `events/dt=YYYY-MM-DD/hour=HH/<batch id>.ndjson.gz`, the events sorted by time, then one
//! manifest line that lists their ids, the SHA-256 of the event lines and an HMAC signature.
//! The batch id is a hash of the event ids, so a batch delivered again lands on the same
//! object. Reading the objects back: [`check_object`] and [`verify`] (integrity), [`query`]
//! (an incident responder's filters).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{civil, SCHEMA_VERSION};
use super::sign::{batch_signature, sha256_hex};

/// The last line of every object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `manifest`, so that a query over the lines can skip it.
    pub kind: String,
    pub schema_version: u32,
    pub batch_id: String,
    pub object: String,
    pub events: usize,
    pub event_ids: Vec<String>,
    /// SHA-256 (hex) of the event lines, each with its newline.
    pub sha256: String,
    /// HMAC-SHA-256 (hex) under `AUDIT_HMAC_KEY` of the object name, the count and `sha256`.
    pub signature: String,
}

/// A batch ready to store.
#[derive(Debug, Clone)]
pub struct Batch {
    pub object: String,
    pub gzip: Vec<u8>,
    /// The NDJSON before compression (for the webhook).
    pub ndjson: Vec<u8>,
    pub manifest: Manifest,
    /// Indexes of input lines that are not events (they can never be stored).
    pub invalid: Vec<usize>,
}

fn event_id_and_time(line: &str) -> Option<(String, u64, Value)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let id = v.get("event_id")?.as_str()?.to_string();
    let t = v.get("time_ms")?.as_u64()?;
    if id.is_empty() || id.len() > 128 {
        return None;
    }
    Some((id, t, v))
}

/// Builds the object for a batch of event lines as they came off the queue: duplicates (by
/// event id) are kept once, the events are sorted by time and id, and the manifest is signed.
/// `None` when no line is an event.
pub fn build(lines: &[String], key: &[u8]) -> Option<Batch> {
    let mut events: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut invalid = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match event_id_and_time(line) {
            // Re-serialized: one line, whatever the input's whitespace.
            Some((id, t, v)) => {
                events
                    .entry(id)
                    .or_insert_with(|| (t, serde_json::to_string(&v).unwrap_or_default()));
            }
            None => invalid.push(i),
        }
    }
    let mut sorted: Vec<(u64, String, String)> = events
        .into_iter()
        .map(|(id, (t, line))| (t, id, line))
        .collect();
    sorted.sort();
    let first = sorted.first()?.0;
    let ids: Vec<String> = sorted.iter().map(|(_, id, _)| id.clone()).collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    let batch_id = sha256_hex(sorted_ids.join("\n").as_bytes())[..32].to_string();
    let (y, m, d, hh, _, _) = civil(first / 1000);
    let object = format!("events/dt={y:04}-{m:02}-{d:02}/hour={hh:02}/{batch_id}.ndjson.gz");
    let mut ndjson = Vec::new();
    for (_, _, line) in &sorted {
        ndjson.extend_from_slice(line.as_bytes());
        ndjson.push(b'\n');
    }
    let sha256 = sha256_hex(&ndjson);
    let manifest = Manifest {
        kind: "manifest".into(),
        schema_version: SCHEMA_VERSION,
        signature: batch_signature(key, &object, ids.len(), &sha256),
        batch_id,
        object: object.clone(),
        events: ids.len(),
        event_ids: ids,
        sha256,
    };
    ndjson.extend_from_slice(
        serde_json::to_string(&manifest)
            .unwrap_or_default()
            .as_bytes(),
    );
    ndjson.push(b'\n');
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&ndjson).ok()?;
    let gzip = enc.finish().ok()?;
    Some(Batch {
        object,
        gzip,
        ndjson,
        manifest,
        invalid,
    })
}

/// Decompresses an object, refusing more than `limit` bytes of output.
pub fn gunzip(bytes: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes uncompressed"));
    }
    Ok(out)
}

/// What one object holds and what is wrong with it.
#[derive(Debug, Clone, Default)]
pub struct ObjectCheck {
    /// (event id, event) for every event line that parsed.
    pub events: Vec<(String, Value)>,
    pub problems: Vec<String>,
}

/// Checks one downloaded object. `name` is its path relative to the bucket root (the download
/// directory); `key` the audit key, when the signature is to be checked.
pub fn check_object(name: &str, gz: &[u8], key: Option<&[u8]>) -> ObjectCheck {
    let mut c = ObjectCheck::default();
    let text = match gunzip(gz, 1 << 30) {
        Ok(t) => t,
        Err(e) => {
            c.problems.push(format!("{name}: {e}"));
            return c;
        }
    };
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let Some(last) = lines.pop() else {
        c.problems.push(format!("{name}: empty object"));
        return c;
    };
    let manifest: Option<Manifest> = serde_json::from_slice(last)
        .ok()
        .filter(|m: &Manifest| m.kind == "manifest");
    let Some(m) = manifest else {
        c.problems.push(format!(
            "{name}: no manifest line (truncated or not an audit object)"
        ));
        return c;
    };
    let mut body = Vec::new();
    let mut seen = BTreeSet::new();
    for l in &lines {
        body.extend_from_slice(l);
        body.push(b'\n');
        match serde_json::from_slice::<Value>(l) {
            Ok(v) => {
                let id = v
                    .get("event_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !seen.insert(id.clone()) {
                    c.problems
                        .push(format!("{name}: event {id} appears twice in the object"));
                }
                c.events.push((id, v));
            }
            Err(_) => c.problems.push(format!("{name}: a line is not JSON")),
        }
    }
    if sha256_hex(&body) != m.sha256 {
        c.problems.push(format!(
            "{name}: event lines altered (SHA-256 differs from the manifest)"
        ));
    }
    let listed: BTreeSet<&String> = m.event_ids.iter().collect();
    for id in listed.iter().filter(|id| !seen.contains(**id)) {
        c.problems.push(format!("{name}: event {id} missing"));
    }
    for id in seen.iter().filter(|id| !listed.contains(id)) {
        c.problems
            .push(format!("{name}: event {id} is not in the manifest (added)"));
    }
    if m.events != m.event_ids.len() {
        c.problems
            .push(format!("{name}: manifest count is inconsistent"));
    }
    if !name.ends_with(&m.object) && name != m.object {
        c.problems.push(format!(
            "{name}: the manifest names another object ({})",
            m.object
        ));
    }
    if let Some(k) = key {
        if batch_signature(k, &m.object, m.events, &m.sha256) != m.signature {
            c.problems.push(format!(
                "{name}: bad signature (manifest altered or another key)"
            ));
        }
    }
    c
}

/// The result of checking a set of objects.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    pub objects: usize,
    pub events: usize,
    pub problems: Vec<String>,
}

/// Checks a set of downloaded objects (name, gzip bytes) and reports altered, missing and
/// duplicated events.
pub fn verify(objects: &[(String, Vec<u8>)], key: Option<&[u8]>) -> Verification {
    let mut v = Verification::default();
    let mut where_seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, gz) in objects {
        let c = check_object(name, gz, key);
        v.objects += 1;
        v.problems.extend(c.problems);
        for (id, _) in c.events {
            v.events += 1;
            if let Some(first) = where_seen.get(&id) {
                if first != name {
                    v.problems
                        .push(format!("event {id} is duplicated in {first} and {name}"));
                }
            } else {
                where_seen.insert(id, name.clone());
            }
        }
    }
    v
}

/// Filters for [`query`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub key_id: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub outcome: Option<String>,
    pub kind: Option<String>,
    pub request_id: Option<String>,
    pub detector: Option<String>,
    pub fingerprint: Option<String>,
}

impl Query {
    pub fn matches(&self, e: &Value) -> bool {
        let s = |k: &str| e.get(k).and_then(Value::as_str);
        let t = e.get("time_ms").and_then(Value::as_u64).unwrap_or(0);
        let eq = |want: &Option<String>, k: &str| want.as_deref().is_none_or(|w| s(k) == Some(w));
        let findings = e.get("findings").and_then(Value::as_array);
        let has_finding = |field: &str, want: &Option<String>| {
            want.as_deref().is_none_or(|w| {
                findings.is_some_and(|fs| {
                    fs.iter()
                        .any(|f| f.get(field).and_then(Value::as_str) == Some(w))
                })
            })
        };
        eq(&self.key_id, "key_id")
            && eq(&self.outcome, "outcome")
            && eq(&self.kind, "kind")
            && eq(&self.request_id, "request_id")
            && self.since_ms.is_none_or(|since| t >= since)
            && self.until_ms.is_none_or(|until| t < until)
            && has_finding("detector", &self.detector)
            && has_finding("fingerprint", &self.fingerprint)
    }
}

/// The events of a set of objects that match, once each, in time order.
pub fn query(objects: &[(String, Vec<u8>)], q: &Query) -> Vec<Value> {
    let mut out: BTreeMap<(u64, String), Value> = BTreeMap::new();
    for (name, gz) in objects {
        for (id, e) in check_object(name, gz, None).events {
            if q.matches(&e) {
                let t = e.get("time_ms").and_then(Value::as_u64).unwrap_or(0);
                out.entry((t, id)).or_insert(e);
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, t: u64, key: &str, outcome: &str) -> String {
        json!({"schema_version": 1, "kind": "request", "event_id": id, "time_ms": t,
               "key_id": key, "outcome": outcome, "findings": []})
        .to_string()
    }

    const KEY: &[u8] = b"audit-key";
    const T: u64 = 1_795_765_417_001;

    #[test]
    fn a_batch_is_deduplicated_sorted_named_and_signed() {
        let lines = vec![
            ev("b", T + 5, "k1", "blocked"),
            ev("a", T, "k1", "forwarded"),
            ev("b", T + 5, "k1", "blocked"),
            "not json".to_string(),
            json!({"event_id": "x"}).to_string(),
        ];
        let b = build(&lines, KEY).unwrap();
        assert_eq!(b.invalid, vec![3, 4]);
        assert_eq!(b.manifest.event_ids, vec!["a", "b"]);
        assert!(b.object.starts_with("events/dt=2026-11-27/hour=07/"));
        assert!(b.object.ends_with(".ndjson.gz"));
        // The same events in another order and with repeats name the same object.
        let again = build(&[lines[2].clone(), lines[1].clone()], KEY).unwrap();
        assert_eq!(again.object, b.object);
        assert_eq!(again.gzip, b.gzip);
        let c = check_object(&b.object, &b.gzip, Some(KEY));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.events.len(), 2);
        assert!(build(&["{}".to_string()], KEY).is_none());
    }

    fn tampered(b: &Batch, f: impl Fn(String) -> String) -> Vec<u8> {
        let text = String::from_utf8(b.ndjson.clone()).unwrap();
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(f(text).as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn verification_finds_altered_missing_added_and_duplicated_events() {
        let b = build(
            &[
                ev("a", T, "k1", "forwarded"),
                ev("b", T + 1, "k2", "blocked"),
            ],
            KEY,
        )
        .unwrap();
        let o = b.object.clone();
        let ok = verify(&[(o.clone(), b.gzip.clone())], Some(KEY));
        assert!(ok.problems.is_empty());
        assert_eq!((ok.objects, ok.events), (1, 2));

        let altered = tampered(&b, |t| t.replacen("\"blocked\"", "\"forwarded\"", 1));
        let v = verify(&[(o.clone(), altered)], Some(KEY));
        assert!(v.problems.iter().any(|p| p.contains("altered")), "{v:?}");

        let dropped = tampered(&b, |t| {
            t.lines().skip(1).map(|l| format!("{l}\n")).collect()
        });
        let v = verify(&[(o.clone(), dropped)], Some(KEY));
        assert!(
            v.problems.iter().any(|p| p.contains("event a missing")),
            "{v:?}"
        );

        let resigned = tampered(&b, |t| t.replace(&b.manifest.signature, &"0".repeat(64)));
        let v = verify(&[(o.clone(), resigned.clone())], Some(KEY));
        assert!(v.problems.iter().any(|p| p.contains("bad signature")));
        // Without the key only the content is checked.
        assert!(verify(&[(o.clone(), resigned)], None).problems.is_empty());
        assert!(!verify(&[(o.clone(), b.gzip.clone())], Some(b"other"))
            .problems
            .is_empty());

        let copy = format!("{}-copy", o);
        let v = verify(
            &[(o.clone(), b.gzip.clone()), (copy, b.gzip.clone())],
            Some(KEY),
        );
        assert!(v.problems.iter().any(|p| p.contains("duplicated")), "{v:?}");

        let v = verify(&[(o.clone(), b"not gzip".to_vec())], Some(KEY));
        assert!(v.problems.iter().any(|p| p.contains("not gzip")));
        let truncated = tampered(&b, |t| {
            t.lines().take(2).map(|l| format!("{l}\n")).collect()
        });
        let v = verify(&[(o, truncated)], Some(KEY));
        assert!(v.problems.iter().any(|p| p.contains("no manifest")));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_checked_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = check_object("x", &bytes, Some(KEY));
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(&bytes).unwrap();
            let c = check_object("x", &enc.finish().unwrap(), Some(KEY));
            proptest::prop_assert!(!c.problems.is_empty());
        }

        #[test]
        fn any_lines_build_a_batch_that_verifies(lines in proptest::collection::vec("[ -~]{0,40}", 0..8), ids in proptest::collection::vec("[a-z0-9-]{1,12}", 1..8)) {
            let mut all: Vec<String> = lines;
            for (i, id) in ids.iter().enumerate() {
                all.push(ev(id, T + i as u64, "k", "forwarded"));
            }
            let b = build(&all, KEY).unwrap();
            let c = check_object(&b.object, &b.gzip, Some(KEY));
            proptest::prop_assert!(c.problems.is_empty(), "{:?}", c.problems);
        }
    }

    #[test]
    fn queries_filter_and_deduplicate() {
        let b1 = build(
            &[
                ev("a", T, "k1", "forwarded"),
                ev("b", T + 10, "k1", "blocked"),
            ],
            KEY,
        )
        .unwrap();
        let b2 = build(
            &[
                ev("b", T + 10, "k1", "blocked"),
                ev("c", T + 20, "k2", "blocked"),
            ],
            KEY,
        )
        .unwrap();
        let objs = vec![(b1.object.clone(), b1.gzip), (b2.object.clone(), b2.gzip)];
        let q = Query {
            key_id: Some("k1".into()),
            outcome: Some("blocked".into()),
            ..Query::default()
        };
        let r = query(&objs, &q);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["event_id"], "b");
        let since = Query {
            since_ms: Some(T + 10),
            ..Query::default()
        };
        let ids: Vec<_> = query(&objs, &since)
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, vec!["b", "c"]);
    }
}
