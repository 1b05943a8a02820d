//! Anomaly signals per key: counts of blocked (by the output or tools layer), redacted, injection-flagged, rate-limited and
//! (per client address) auth-failed requests over a sliding window, with one warning when a
//! count crosses its threshold and none again until the window has passed. The arithmetic is
//! here; the key's limiter object stores the state and calls [`SignalState::record`].

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::event::AuditEvent;

/// The signals, in the order the README lists them.
pub const SIGNALS: [&str; 5] = [
    "blocked",
    "redacted",
    "injection",
    "auth_failed",
    "rate_limited",
];

/// `ANOMALY_THRESHOLDS`: the window and, per signal, the count that raises a warning (a
/// signal left out is not counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    pub window_ms: u64,
    pub limits: BTreeMap<String, u32>,
}

impl Default for Thresholds {
    fn default() -> Self {
        let limits = [
            ("blocked", 20),
            ("redacted", 50),
            ("injection", 10),
            ("auth_failed", 20),
            ("rate_limited", 50),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Thresholds {
            window_ms: 300_000,
            limits,
        }
    }
}

impl Thresholds {
    /// Parses `{"window_seconds": 300, "blocked": 20, ...}`; unknown names and zero counts are
    /// errors, so a typo cannot switch a signal off silently.
    pub fn parse(json: &str) -> Result<Thresholds, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("ANOMALY_THRESHOLDS: {e}"))?;
        let obj = v
            .as_object()
            .ok_or("ANOMALY_THRESHOLDS must be a JSON object")?;
        let mut t = Thresholds {
            window_ms: 300_000,
            limits: BTreeMap::new(),
        };
        for (k, v) in obj {
            let n = v
                .as_u64()
                .filter(|n| *n > 0 && *n <= u64::from(u32::MAX))
                .ok_or_else(|| format!("ANOMALY_THRESHOLDS.{k} must be a positive integer"))?;
            if k == "window_seconds" {
                if n > 86_400 {
                    return Err("ANOMALY_THRESHOLDS.window_seconds is at most 86400".into());
                }
                t.window_ms = n * 1000;
            } else if SIGNALS.contains(&k.as_str()) {
                t.limits.insert(k.clone(), n as u32);
            } else {
                return Err(format!(
                    "ANOMALY_THRESHOLDS: unknown signal {k:?} (known: {})",
                    SIGNALS.join(", ")
                ));
            }
        }
        Ok(t)
    }
}

/// Who a signal is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Key {
        key_id: String,
        tenant: Option<String>,
    },
    /// Failed authentication has no key: it is counted against the client address.
    Address,
}

/// The signals a request event raises.
pub fn signals(e: &AuditEvent) -> Vec<&'static str> {
    let mut s = Vec::new();
    match e.outcome.as_str() {
        // An input block is counted as `injection` below, not twice.
        "blocked" if e.decided_by.as_deref() != Some("input") => s.push("blocked"),
        "auth_failed" => s.push("auth_failed"),
        "rate_limited" => s.push("rate_limited"),
        _ => {}
    }
    if !e.redacted.is_empty() {
        s.push("redacted");
    }
    if !e.injection_rules.is_empty()
        && matches!(e.injection_action.as_deref(), Some("blocked" | "monitored"))
    {
        s.push("injection");
    }
    s
}

/// A threshold crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub signal: String,
    pub count: u32,
    pub threshold: u32,
    pub window_ms: u64,
}

/// One subject's counters: for each signal the times of its latest events inside the window
/// (at most its threshold of them), and until when a warning already given holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalState {
    #[serde(default)]
    pub seen: BTreeMap<String, VecDeque<f64>>,
    #[serde(default)]
    pub warned_until: BTreeMap<String, f64>,
}

/// The call the worker makes to the subject's limiter object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalBody {
    pub signals: Vec<String>,
    pub thresholds: Thresholds,
}

/// The object's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalAnswer {
    pub warnings: Vec<Warning>,
}

impl SignalState {
    /// Counts `signals` at `now` (milliseconds) and returns the warnings due. Memory per
    /// subject is bounded by the sum of the thresholds.
    pub fn record(&mut self, signals: &[String], now: f64, t: &Thresholds) -> Vec<Warning> {
        let window = t.window_ms as f64;
        let mut out = Vec::new();
        for sig in signals {
            let Some(&limit) = t.limits.get(sig) else {
                continue;
            };
            let q = self.seen.entry(sig.clone()).or_default();
            while q.front().is_some_and(|&ts| ts <= now - window) {
                q.pop_front();
            }
            q.push_back(now);
            while q.len() > limit as usize {
                q.pop_front();
            }
            let count = q.len() as u32;
            let quiet = self.warned_until.get(sig).is_none_or(|&u| now >= u);
            if count >= limit && quiet {
                self.warned_until.insert(sig.clone(), now + window);
                out.push(Warning {
                    signal: sig.clone(),
                    count,
                    threshold: limit,
                    window_ms: t.window_ms,
                });
            }
        }
        // Forget signals no longer configured or long quiet.
        self.seen.retain(|k, q| {
            t.limits.contains_key(k) && q.back().is_some_and(|&ts| ts > now - window)
        });
        self.warned_until.retain(|_, u| *u > now);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(limit: u32) -> Thresholds {
        Thresholds::parse(&format!(
            r#"{{"window_seconds": 60, "injection": {limit}, "blocked": {limit}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_burst_warns_once_per_window() {
        let th = t(3);
        let mut s = SignalState::default();
        let sig = vec!["injection".to_string(), "blocked".to_string()];
        let mut warnings = Vec::new();
        for i in 0..20 {
            warnings.extend(s.record(&sig, 1000.0 + f64::from(i) * 100.0, &th));
        }
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.count == 3 && w.threshold == 3));
        // Still probing after the window: one more each.
        let later = s.record(&sig, 130_000.0, &th);
        assert!(
            later.is_empty(),
            "one event after a quiet window is under the threshold"
        );
        let mut more = Vec::new();
        for i in 1..5 {
            more.extend(s.record(&sig, 130_000.0 + f64::from(i), &th));
        }
        assert_eq!(more.len(), 2);
    }

    #[test]
    fn slow_events_never_cross() {
        let th = t(3);
        let mut s = SignalState::default();
        for i in 0..50 {
            // Two per minute, threshold three per minute.
            let w = s.record(&["blocked".to_string()], f64::from(i) * 30_001.0, &th);
            assert!(w.is_empty());
        }
        assert!(s.seen["blocked"].len() <= 3);
    }

    #[test]
    fn unconfigured_signals_are_not_counted() {
        let th = t(1);
        let mut s = SignalState::default();
        assert!(s.record(&["redacted".to_string()], 0.0, &th).is_empty());
        assert!(s.seen.is_empty());
    }

    #[test]
    fn thresholds_are_validated() {
        assert!(Thresholds::parse(r#"{"blocked": 0}"#).is_err());
        assert!(Thresholds::parse(r#"{"blokced": 3}"#).is_err());
        assert!(Thresholds::parse(r#"{"window_seconds": 100000}"#).is_err());
        assert!(Thresholds::parse("[]").is_err());
        let d = Thresholds::parse(r#"{"auth_failed": 5}"#).unwrap();
        assert_eq!(d.window_ms, 300_000);
        assert_eq!(d.limits.len(), 1);
    }

    #[test]
    fn events_raise_their_signals() {
        let mut e = AuditEvent {
            outcome: "blocked".into(),
            decided_by: Some("input".into()),
            injection_rules: vec!["r".into()],
            injection_action: Some("blocked".into()),
            ..AuditEvent::default()
        };
        assert_eq!(signals(&e), vec!["injection"]);
        e.decided_by = Some("output".into());
        assert_eq!(signals(&e), vec!["blocked", "injection"]);
        e.outcome = "forwarded".into();
        e.injection_action = Some("passed".into());
        e.redacted.insert("email".into(), 1);
        assert_eq!(signals(&e), vec!["redacted"]);
    }
}
