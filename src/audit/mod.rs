//! The audit layer: the structured log line written per request, and the audit event built from
//! it that travels through a Queue into R2 (and optionally a webhook). Both carry identifiers,
//! timings and each layer's verdict, never a key, a prompt, or a detected value.
//!
//! - [`event`]: the versioned event, the outcome classification, address truncation;
//! - [`sign`]: fingerprints of detected values, batch signatures, the webhook signature;
//! - [`store`]: batches as signed gzip NDJSON objects, their verification and queries;
//! - [`anomaly`]: per-key signal counters and their one-warning-per-window thresholds.

pub mod anomaly;
pub mod event;
pub mod sign;
pub mod store;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::output::{Action, Finding};
use event::FindingRecord;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestLog {
    pub request_id: String,
    pub key_id: Option<String>,
    pub tenant: Option<String>,
    pub method: String,
    pub route: String,
    /// The wire protocol of an inspected request (`openai`, `anthropic`, `responses`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub status: u16,
    /// Error code when the gateway answered with an error.
    pub error: Option<String>,
    /// Milliseconds from the request's arrival to the end of the response.
    pub total_ms: u64,
    /// Milliseconds until the origin's response headers arrived.
    pub upstream_ttfb_ms: Option<u64>,
    /// The origin's status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Milliseconds spent in the gateway's own inspection (as far as the runtime's clock moves).
    pub inspect_ms: u64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// How the response ended: complete, blocked, truncated, malformed.
    pub outcome: Option<String>,
    /// The completion limit the client asked for and the cap the origin received instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_clamped: Option<(u64, u32)>,
    /// A configuration problem met while serving the request (for the operator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What the key's limiter said: admitted, refused, unavailable (failing open) or
    /// unlimited (a tier without limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limiter: Option<String>,
    /// Tokens reserved when the request was admitted, and the tokens it was settled with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_reserved: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_used: Option<u32>,
    pub input: InputLog,
    pub output: OutputVerdict,
}

/// The input layer's verdict: the score, the rules that fired, and what was done. Rule ids go
/// to the log only, never to the client.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputLog {
    pub score: f64,
    pub rules: Vec<String>,
    /// The learned classifier's calibrated score (absent with `INJECTION_MODEL = "off"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<f64>,
    /// passed, monitored or blocked.
    pub action: &'static str,
    pub removed_invisible: usize,
    pub hidden_payload: bool,
    pub stripped_tools: Vec<String>,
}

/// The output layer's verdict: counts per detector and action, no values.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputVerdict {
    pub redacted: BTreeMap<String, u32>,
    pub blocked: Option<String>,
    pub monitored: BTreeMap<String, u32>,
    /// Response fields outside the protocol's schema, dropped, by schema path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped_fields: BTreeMap<String, u32>,
    /// Each finding (detector, action, channel, offsets, fingerprint), for the audit event only.
    #[serde(skip)]
    pub findings: Vec<FindingRecord>,
}

/// At most this many findings are itemized per event; the counts above stay exact.
pub const MAX_ITEMIZED_FINDINGS: usize = 256;

impl OutputVerdict {
    /// Adds dropped-field counts.
    pub fn add_dropped(&mut self, dropped: &BTreeMap<String, u32>) {
        for (k, n) in dropped {
            *self.dropped_fields.entry(k.clone()).or_default() += n;
        }
    }

    pub fn add(&mut self, findings: &[Finding]) {
        for f in findings {
            if self.findings.len() < MAX_ITEMIZED_FINDINGS {
                self.findings.push(FindingRecord {
                    detector: f.detector.clone(),
                    action: f.action.name().into(),
                    channel: f.channel.clone(),
                    start: f.start,
                    end: f.end,
                    fingerprint: f.fingerprint.clone(),
                });
            }
            match f.action {
                Action::Redact => *self.redacted.entry(f.detector.clone()).or_default() += 1,
                Action::Monitor => *self.monitored.entry(f.detector.clone()).or_default() += 1,
                Action::Block => self.blocked = Some(f.detector.clone()),
                Action::Off => {}
            }
        }
    }
}

impl RequestLog {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
