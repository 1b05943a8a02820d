//! What the per-key limiter object does with each call, as plain functions over its stored
//! state: the Durable Object in the edge shell only reads the row, calls [`handle`], writes the
//! row and arms the alarm. A stored row that does not parse is an error, never a silent reset
//! to a fresh (unlimited) state.

use serde::{Deserialize, Serialize};

use super::limits::{Ask, Decision, KeyState, Tier};
use super::throttle::{AuthFailBody, AuthState};
use crate::audit::anomaly::{SignalAnswer, SignalBody, SignalState};

/// The row holding a key's limits.
pub const KEY_ROW: &str = "key";
/// The row holding a client address's failed-authentication state.
pub const AUTH_ROW: &str = "auth";
/// The row holding a key's (or address's) anomaly signal counters.
pub const SIGNAL_ROW: &str = "signals";

/// A request to reserve a slot, tokens and a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcquireBody {
    pub tier: Tier,
    /// The most the request may use (prompt plus its whole completion allowance).
    pub reserve_tokens: u32,
    /// The estimated prompt part of it.
    #[serde(default)]
    pub prompt_tokens: u32,
    pub lease_id: String,
    pub lease_ttl_ms: f64,
}

/// Returns a lease and settles a reservation with the tokens used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseBody {
    pub tier: Tier,
    pub lease_id: String,
    pub reserved: u32,
    pub used: u32,
    /// The estimated prompt, so the key's average completion can be kept.
    #[serde(default)]
    pub prompt: u32,
}

/// Why the object cannot answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterError {
    /// The stored state does not parse: the object refuses until an operator looks.
    CorruptState {
        row: &'static str,
        problem: String,
    },
    /// The call's body does not parse.
    BadCall(String),
    UnknownPath(String),
}

impl std::fmt::Display for LimiterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimiterError::CorruptState { row, problem } => {
                write!(
                    f,
                    "CORRUPT LIMITER STATE in row {row:?} (refusing): {problem}"
                )
            }
            LimiterError::BadCall(p) => write!(f, "bad limiter call: {p}"),
            LimiterError::UnknownPath(p) => write!(f, "unknown limiter path {p:?}"),
        }
    }
}

/// The result of one call: the row to write, the answer, and when the alarm should fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub row: &'static str,
    pub state: String,
    /// The answer's JSON body.
    pub answer: String,
    /// When the next lease expires (milliseconds since the epoch), for the alarm.
    pub alarm_at: Option<f64>,
}

/// Reads a stored row: absent is a fresh state; present but unreadable is an error.
pub fn decode<T: for<'de> Deserialize<'de> + Default>(
    row: &'static str,
    stored: Option<&str>,
) -> Result<T, LimiterError> {
    match stored {
        None => Ok(T::default()),
        Some(json) => serde_json::from_str(json).map_err(|e| LimiterError::CorruptState {
            row,
            problem: e.to_string(),
        }),
    }
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The row a call reads and writes.
pub fn row_for(path: &str) -> Option<&'static str> {
    match path {
        "/acquire" | "/release" => Some(KEY_ROW),
        "/authfail" => Some(AUTH_ROW),
        "/signal" => Some(SIGNAL_ROW),
        _ => None,
    }
}

/// Handles one call at time `now` against the stored row (`None`: never written).
pub fn handle(
    path: &str,
    body: &[u8],
    stored: Option<&str>,
    now: f64,
) -> Result<Handled, LimiterError> {
    let bad = |e: serde_json::Error| LimiterError::BadCall(e.to_string());
    match path {
        "/acquire" => {
            let b: AcquireBody = serde_json::from_slice(body).map_err(bad)?;
            let mut s: KeyState = decode(KEY_ROW, stored)?;
            let d: Decision = s.acquire(&Ask {
                now,
                tier: b.tier,
                reserve_tokens: b.reserve_tokens,
                prompt_tokens: b.prompt_tokens,
                lease_id: b.lease_id,
                lease_ttl_ms: b.lease_ttl_ms,
            });
            Ok(Handled {
                row: KEY_ROW,
                alarm_at: if d.allowed { s.next_expiry() } else { None },
                state: encode(&s),
                answer: encode(&d),
            })
        }
        "/release" => {
            let b: ReleaseBody = serde_json::from_slice(body).map_err(bad)?;
            let mut s: KeyState = decode(KEY_ROW, stored)?;
            s.release(now, &b.tier, &b.lease_id, b.reserved, b.used, b.prompt);
            Ok(Handled {
                row: KEY_ROW,
                alarm_at: None,
                state: encode(&s),
                answer: "\"released\"".into(),
            })
        }
        "/authfail" => {
            let b: AuthFailBody = serde_json::from_slice(body).map_err(bad)?;
            let mut a: AuthState = decode(AUTH_ROW, stored)?;
            let answer = a.report(&b, now);
            Ok(Handled {
                row: AUTH_ROW,
                alarm_at: None,
                state: encode(&a),
                answer: encode(&answer),
            })
        }
        "/signal" => {
            let b: SignalBody = serde_json::from_slice(body).map_err(bad)?;
            let mut st: SignalState = decode(SIGNAL_ROW, stored)?;
            let warnings = st.record(&b.signals, now, &b.thresholds);
            Ok(Handled {
                row: SIGNAL_ROW,
                alarm_at: None,
                state: encode(&st),
                answer: encode(&SignalAnswer { warnings }),
            })
        }
        other => Err(LimiterError::UnknownPath(other.to_string())),
    }
}

/// The alarm: reclaims expired leases. Returns the row to write, how many were reclaimed and
/// when to fire next.
pub fn alarm(stored: Option<&str>, now: f64) -> Result<(String, usize, Option<f64>), LimiterError> {
    let mut s: KeyState = decode(KEY_ROW, stored)?;
    let reclaimed = s.reclaim(now);
    Ok((encode(&s), reclaimed, s.next_expiry()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::limits::Decision;
    use crate::network::throttle::AuthFailAnswer;

    #[test]
    fn signals_warn_once_through_the_stored_row() {
        let body = serde_json::to_vec(&SignalBody {
            signals: vec!["injection".into()],
            thresholds: crate::audit::anomaly::Thresholds::parse(r#"{"injection": 3}"#).unwrap(),
        })
        .unwrap();
        let mut stored: Option<String> = None;
        let mut warnings = 0;
        for i in 0..10 {
            let h = handle("/signal", &body, stored.as_deref(), 1000.0 + f64::from(i)).unwrap();
            assert_eq!(h.row, SIGNAL_ROW);
            let a: SignalAnswer = serde_json::from_str(&h.answer).unwrap();
            warnings += a.warnings.len();
            stored = Some(h.state);
        }
        assert_eq!(warnings, 1);
        assert!(handle("/signal", b"{}", None, 0.0).is_err());
        assert!(handle("/signal", &body, Some("{oops"), 0.0).is_err());
    }

    fn tier() -> Tier {
        Tier {
            concurrency: Some(1),
            ..Tier::default()
        }
    }

    fn acquire(lease: &str) -> Vec<u8> {
        serde_json::to_vec(&AcquireBody {
            tier: tier(),
            reserve_tokens: 0,
            prompt_tokens: 0,
            lease_id: lease.into(),
            lease_ttl_ms: 1000.0,
        })
        .unwrap()
    }

    #[test]
    fn acquire_release_round_trip() {
        let a = handle("/acquire", &acquire("a"), None, 0.0).unwrap();
        let d: Decision = serde_json::from_str(&a.answer).unwrap();
        assert!(d.allowed);
        assert_eq!(a.alarm_at, Some(1000.0));
        let b = handle("/acquire", &acquire("b"), Some(&a.state), 1.0).unwrap();
        let d: Decision = serde_json::from_str(&b.answer).unwrap();
        assert!(!d.allowed, "concurrency 1");
        let release = serde_json::to_vec(&ReleaseBody {
            tier: tier(),
            lease_id: "a".into(),
            reserved: 0,
            used: 0,
            prompt: 0,
        })
        .unwrap();
        let r = handle("/release", &release, Some(&b.state), 2.0).unwrap();
        let c = handle("/acquire", &acquire("c"), Some(&r.state), 3.0).unwrap();
        assert!(serde_json::from_str::<Decision>(&c.answer).unwrap().allowed);
        let (_, reclaimed, next) = alarm(Some(&c.state), 5000.0).unwrap();
        assert_eq!((reclaimed, next), (1, None));
    }

    #[test]
    fn corrupt_state_fails_closed() {
        for path in ["/acquire", "/release", "/authfail"] {
            let e = handle(path, &acquire("a"), Some("{not json"), 0.0);
            // A release body is not an acquire body: either way nothing is written.
            assert!(e.is_err(), "{path}");
        }
        let e = handle("/acquire", &acquire("a"), Some("{\"tat\":\"x\"}"), 0.0).unwrap_err();
        assert!(matches!(e, LimiterError::CorruptState { row: "key", .. }));
        assert!(e.to_string().contains("CORRUPT"));
        assert!(alarm(Some("[]"), 0.0).is_err());
        assert!(handle("/nope", b"{}", None, 0.0).is_err());
        assert!(handle("/acquire", b"{}", None, 0.0).is_err());
    }

    #[test]
    fn auth_failures_use_their_own_row() {
        let body = serde_json::to_vec(&AuthFailBody::new(1)).unwrap();
        let a = handle("/authfail", &body, None, 0.0).unwrap();
        assert_eq!(a.row, AUTH_ROW);
        let ans: AuthFailAnswer = serde_json::from_str(&a.answer).unwrap();
        assert!(!ans.refused);
        let b = handle("/authfail", &body, Some(&a.state), 0.0).unwrap();
        assert!(
            serde_json::from_str::<AuthFailAnswer>(&b.answer)
                .unwrap()
                .refused
        );
        assert_eq!(row_for("/release"), Some(KEY_ROW));
    }
}
