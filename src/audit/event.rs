//! The audit event: one flat, versioned record per request (and one per anomaly warning),
//! built from the request's log line. It names keys by id, addresses by policy, and detected
//! values by keyed fingerprint only; no prompt, answer or matched value is ever in it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::RequestLog;

/// The schema version every event carries; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// How much of the client's address an event keeps (`AUDIT_CLIENT_ADDRESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPolicy {
    Full,
    /// IPv4 to its /24, IPv6 to its /48.
    Truncated,
    Omit,
}

impl AddressPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(AddressPolicy::Full),
            "truncated" => Some(AddressPolicy::Truncated),
            "omit" => Some(AddressPolicy::Omit),
            _ => None,
        }
    }
}

/// The client address as the policy keeps it; `None` when omitted or not an address.
pub fn client_address(raw: &str, policy: AddressPolicy) -> Option<String> {
    let ip: IpAddr = raw.trim().parse().ok()?;
    match policy {
        AddressPolicy::Omit => None,
        AddressPolicy::Full => Some(ip.to_string()),
        AddressPolicy::Truncated => Some(match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.0/24", o[0], o[1], o[2])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{}/48", Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        }),
    }
}

/// One output finding as the audit keeps it: where, never what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub detector: String,
    pub action: String,
    /// The model-text channel (`choices.0.content`, `tool.0.arguments`, ...) or `field` for a
    /// short value judged whole.
    pub channel: String,
    /// Byte offsets in the channel's text.
    pub start: usize,
    pub end: usize,
    /// HMAC-SHA-256 (128 bits, hex) of the value under `AUDIT_HMAC_KEY`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fingerprint: Option<String>,
}

/// What happened to a request, in one word, and the layer that decided it.
pub fn classify(log: &RequestLog) -> (&'static str, Option<&'static str>) {
    let code = log.error.as_deref().unwrap_or("");
    match code {
        "invalid_api_key" | "too_many_auth_failures" => return ("auth_failed", Some("network")),
        "prompt_injection_detected" | "invisible_characters" => return ("blocked", Some("input")),
        "tool_not_allowed" => return ("blocked", Some("tools")),
        "content_filter" => return ("blocked", Some("output")),
        _ => {}
    }
    if log.status == 429 {
        return ("rate_limited", Some("network"));
    }
    if let Some(d) = &log.output.blocked {
        let layer = if d == "tool_not_allowed" {
            "tools"
        } else {
            "output"
        };
        return ("blocked", Some(layer));
    }
    if log.error.is_some() {
        if log.status >= 500 {
            return ("error", None);
        }
        return ("rejected", None);
    }
    if log.status >= 500 && log.upstream_status.is_none() {
        return ("error", None);
    }
    ("forwarded", None)
}

/// One audit event. Field by field in the README ("Audit events").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub schema_version: u32,
    /// `request` or `anomaly`.
    pub kind: String,
    /// Unique per event; the store keeps one copy per id.
    pub event_id: String,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub time_ms: u64,
    pub request_id: Option<String>,
    pub key_id: Option<String>,
    pub tenant: Option<String>,
    pub client_address: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub protocol: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    /// forwarded, blocked, rate_limited, auth_failed, rejected, error (or `warning`).
    pub outcome: String,
    /// input, output, tools or network, when a layer decided the outcome.
    pub decided_by: Option<String>,
    /// The status the client received, and the gateway's error code if it answered itself.
    pub status: u16,
    pub error_code: Option<String>,
    pub upstream_status: Option<u16>,
    /// How the answer ended: complete, blocked, truncated, malformed, client_gone, abandoned,
    /// pass_through.
    pub stream_end: Option<String>,
    pub total_ms: u64,
    pub upstream_ttfb_ms: Option<u64>,
    pub inspect_ms: u64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    // Input layer.
    pub sanitize_removed_invisible: usize,
    pub sanitize_hidden_payload: bool,
    pub injection_score: f64,
    pub injection_rules: Vec<String>,
    /// The learned classifier's score; null when the model is off.
    pub injection_model_score: Option<f64>,
    pub injection_action: Option<String>,
    pub tools_stripped: Vec<String>,
    // Output layer.
    pub findings: Vec<FindingRecord>,
    pub redacted: BTreeMap<String, u32>,
    pub monitored: BTreeMap<String, u32>,
    pub blocked_by: Option<String>,
    pub dropped_fields: BTreeMap<String, u32>,
    // Network layer.
    pub limiter: Option<String>,
    pub tokens_reserved: Option<u32>,
    pub tokens_used: Option<u32>,
    pub max_tokens_requested: Option<u64>,
    pub max_tokens_sent: Option<u32>,
    pub problem: Option<String>,
    // Anomaly warnings.
    pub signal: Option<String>,
    pub signal_count: Option<u32>,
    pub signal_threshold: Option<u32>,
    pub window_seconds: Option<u64>,
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC (`2026-11-27T07:43:37.123Z`).
pub fn rfc3339(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ms / 1000);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        ms % 1000
    )
}

/// (year, month, day, hour, minute, second) of a Unix time in seconds (UTC), by the
/// days-from-civil inverse (proleptic Gregorian calendar).
pub fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses the `--since` forms the query command takes: RFC 3339 (`2026-11-27T07:00:00Z`, with
/// optional fraction) or a date (`2026-11-27`), in UTC; returns milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut dp = date.splitn(3, '-').map(|p| p.parse::<u64>().ok());
    let (y, m, d) = (dp.next()??, dp.next()??, dp.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let (mut hh, mut mm, mut ss, mut ms) = (0, 0, 0, 0);
    if let Some(t) = time {
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut tp = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
        hh = tp.next()??;
        mm = tp.next()??;
        ss = tp.next().flatten().unwrap_or(0);
        if !frac.is_empty() {
            let digits: String = frac.chars().take(3).collect();
            ms = digits.parse::<u64>().ok()? * 10u64.pow(3 - digits.len() as u32);
        }
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
    }
    // days from civil
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2 / 400;
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// What the shell knows besides the log line.
pub struct Context<'a> {
    pub event_id: &'a str,
    pub now_ms: u64,
    pub client: &'a str,
    pub address_policy: AddressPolicy,
}

impl AuditEvent {
    /// The event for one request.
    pub fn from_request(log: &RequestLog, cx: &Context<'_>) -> AuditEvent {
        let (outcome, decided_by) = classify(log);
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        AuditEvent {
            schema_version: SCHEMA_VERSION,
            kind: "request".into(),
            event_id: cx.event_id.to_string(),
            time: rfc3339(cx.now_ms),
            time_ms: cx.now_ms,
            request_id: nonempty(&log.request_id),
            key_id: log.key_id.clone(),
            tenant: log.tenant.clone(),
            client_address: client_address(cx.client, cx.address_policy),
            method: nonempty(&log.method),
            route: nonempty(&log.route),
            protocol: log.protocol.clone(),
            model: log.model.clone(),
            stream: log.stream,
            outcome: outcome.into(),
            decided_by: decided_by.map(str::to_string),
            status: log.status,
            error_code: log.error.clone(),
            upstream_status: log.upstream_status,
            stream_end: log.outcome.clone(),
            total_ms: log.total_ms,
            upstream_ttfb_ms: log.upstream_ttfb_ms,
            inspect_ms: log.inspect_ms,
            request_bytes: log.request_bytes,
            response_bytes: log.response_bytes,
            sanitize_removed_invisible: log.input.removed_invisible,
            sanitize_hidden_payload: log.input.hidden_payload,
            injection_score: log.input.score,
            injection_rules: log.input.rules.clone(),
            injection_model_score: log.input.model,
            injection_action: nonempty(log.input.action),
            tools_stripped: log.input.stripped_tools.clone(),
            findings: log.output.findings.clone(),
            redacted: log.output.redacted.clone(),
            monitored: log.output.monitored.clone(),
            blocked_by: log.output.blocked.clone(),
            dropped_fields: log.output.dropped_fields.clone(),
            limiter: log.limiter.clone(),
            tokens_reserved: log.tokens_reserved,
            tokens_used: log.tokens_used,
            max_tokens_requested: log.max_tokens_clamped.map(|(asked, _)| asked),
            max_tokens_sent: log.max_tokens_clamped.map(|(_, sent)| sent),
            problem: log.problem.clone(),
            ..AuditEvent::default()
        }
    }

    /// The warning for a subject (a key id, or `address:<address>` for failed authentication)
    /// that crossed an anomaly threshold.
    pub fn warning(
        cx: &Context<'_>,
        subject: &super::anomaly::Subject,
        w: &super::anomaly::Warning,
    ) -> AuditEvent {
        let (key_id, tenant) = match subject {
            super::anomaly::Subject::Key { key_id, tenant } => {
                (Some(key_id.clone()), tenant.clone())
            }
            super::anomaly::Subject::Address => (None, None),
        };
        AuditEvent {
            schema_version: SCHEMA_VERSION,
            kind: "anomaly".into(),
            event_id: cx.event_id.to_string(),
            time: rfc3339(cx.now_ms),
            time_ms: cx.now_ms,
            key_id,
            tenant,
            client_address: client_address(cx.client, cx.address_policy),
            outcome: "warning".into(),
            signal: Some(w.signal.clone()),
            signal_count: Some(w.count),
            signal_threshold: Some(w.threshold),
            window_seconds: Some(w.window_ms / 1000),
            ..AuditEvent::default()
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{InputLog, OutputVerdict};

    #[test]
    fn addresses_follow_the_policy() {
        assert_eq!(
            client_address("203.0.113.77", AddressPolicy::Truncated).as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            client_address("2001:db8:abcd:12::1", AddressPolicy::Truncated).as_deref(),
            Some("2001:db8:abcd::/48")
        );
        assert_eq!(
            client_address("203.0.113.77", AddressPolicy::Full).as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(client_address("203.0.113.77", AddressPolicy::Omit), None);
        assert_eq!(client_address("unknown", AddressPolicy::Full), None);
        assert_eq!(
            AddressPolicy::parse("truncated"),
            Some(AddressPolicy::Truncated)
        );
        assert_eq!(AddressPolicy::parse("partial"), None);
    }

    #[test]
    fn times_are_rfc3339_and_parse_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_765_417_001), "2026-11-27T07:43:37.001Z");
        for ms in [0u64, 951_782_400_123, 1_795_765_417_001, 4_102_444_799_999] {
            assert_eq!(parse_time(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_time("2026-11-27"), Some(1_795_737_600_000));
        assert_eq!(parse_time("2026-11-27T07:43"), Some(1_795_765_380_000));
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-11-27T25:00:00Z"), None);
    }

    fn log(status: u16, error: Option<&str>) -> RequestLog {
        RequestLog {
            status,
            error: error.map(str::to_string),
            ..RequestLog::default()
        }
    }

    #[test]
    fn outcomes_name_the_deciding_layer() {
        assert_eq!(classify(&log(200, None)), ("forwarded", None));
        assert_eq!(
            classify(&log(401, Some("invalid_api_key"))),
            ("auth_failed", Some("network"))
        );
        assert_eq!(
            classify(&log(429, Some("too_many_auth_failures"))),
            ("auth_failed", Some("network"))
        );
        assert_eq!(
            classify(&log(429, Some("requests"))),
            ("rate_limited", Some("network"))
        );
        assert_eq!(
            classify(&log(400, Some("prompt_injection_detected"))),
            ("blocked", Some("input"))
        );
        assert_eq!(
            classify(&log(400, Some("tool_not_allowed"))),
            ("blocked", Some("tools"))
        );
        assert_eq!(
            classify(&log(400, Some("invalid_json"))),
            ("rejected", None)
        );
        assert_eq!(
            classify(&log(502, Some("upstream_failed"))),
            ("error", None)
        );
        let mut streamed = log(200, None);
        streamed.output.blocked = Some("canary".into());
        assert_eq!(classify(&streamed), ("blocked", Some("output")));
        streamed.output.blocked = Some("tool_not_allowed".into());
        assert_eq!(classify(&streamed), ("blocked", Some("tools")));
    }

    #[test]
    fn a_request_event_carries_the_verdicts_and_no_text() {
        let l = RequestLog {
            request_id: "eg-1".into(),
            key_id: Some("k_main".into()),
            tenant: Some("acme".into()),
            method: "POST".into(),
            route: "/v1/chat/completions".into(),
            protocol: Some("openai".into()),
            status: 200,
            outcome: Some("complete".into()),
            input: InputLog {
                score: 12.5,
                rules: vec!["ignore_previous".into()],
                action: "passed",
                ..InputLog::default()
            },
            output: OutputVerdict {
                findings: vec![FindingRecord {
                    detector: "email".into(),
                    action: "redact".into(),
                    channel: "choices.0.content".into(),
                    start: 3,
                    end: 23,
                    fingerprint: Some("ab".repeat(16)),
                }],
                ..OutputVerdict::default()
            },
            ..RequestLog::default()
        };
        let e = AuditEvent::from_request(
            &l,
            &Context {
                event_id: "eg-1",
                now_ms: 1_795_765_417_001,
                client: "198.51.100.9",
                address_policy: AddressPolicy::Truncated,
            },
        );
        assert_eq!(e.outcome, "forwarded");
        assert_eq!(e.stream_end.as_deref(), Some("complete"));
        assert_eq!(e.client_address.as_deref(), Some("198.51.100.0/24"));
        let json = e.to_json();
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert!(json.contains("\"schema_version\":1"));
        assert!(json.contains("\"time\":\"2026-11-27T07:43:37.001Z\""));
    }
}
