//! The failed-authentication throttle: unknown keys from one client address are slowed, then
//! the address is refused for a while. The per-address arithmetic runs in the limiter object;
//! the per-isolate blocklist spares the object once an address is refused.

use serde::{Deserialize, Serialize};

use super::limits::MINUTE_MS;
use crate::api_error::ApiError;

/// How long an address stays refused once the throttle trips, in milliseconds.
pub const BLOCK_MS: u64 = 60_000;
/// Addresses remembered per isolate; the oldest is forgotten first.
pub const BLOCKLIST_CAPACITY: usize = 1024;

/// Failed-authentication throttle for one client address: a GCRA over failures. Returns the
/// delay to add before answering (slowing), or `None` when the address is refused outright.
pub fn auth_failure(tat: &mut f64, now: f64, per_minute: u32, burst: u32) -> Option<f64> {
    let interval = MINUTE_MS / f64::from(per_minute.max(1));
    let tolerance = interval * f64::from(burst.max(1));
    let t = tat.max(now);
    let new_tat = t + interval;
    if new_tat - tolerance > now {
        return None;
    }
    *tat = new_tat;
    // The closer to the limit, the longer the wait: up to a second.
    let used = (new_tat - now) / tolerance;
    Some(if used > 0.5 {
        (used - 0.5) * 2000.0
    } else {
        0.0
    })
}

/// What the worker sends the limiter object about one failed authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthFailBody {
    pub per_minute: u32,
    pub burst: u32,
}

/// The object's answer: wait this long, or refuse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthFailAnswer {
    pub refused: bool,
    pub delay_ms: f64,
}

impl AuthFailBody {
    /// The report for a throttle of `per_minute` failures a minute (the burst is as large).
    pub fn new(per_minute: u32) -> Self {
        AuthFailBody {
            per_minute,
            burst: per_minute,
        }
    }
}

/// The per-address state the limiter object keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthState {
    pub tat: f64,
}

impl AuthState {
    /// Applies one failure report.
    pub fn report(&mut self, body: &AuthFailBody, now: f64) -> AuthFailAnswer {
        let verdict = auth_failure(&mut self.tat, now, body.per_minute, body.burst);
        AuthFailAnswer {
            refused: verdict.is_none(),
            delay_ms: verdict.unwrap_or(0.0),
        }
    }
}

/// What the worker does after a failed authentication.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFailure {
    /// Answer 401 after waiting this many milliseconds (0: at once).
    Slow(u64),
    /// Refuse the address (429) and remember it until the given time.
    Block { until_ms: u64 },
}

/// Decides what follows a failure report; when the object cannot answer, the 401 goes out
/// unslowed (the key was unknown either way).
pub fn after_failure(answer: Option<&AuthFailAnswer>, now_ms: u64) -> AfterFailure {
    match answer {
        Some(a) if a.refused => AfterFailure::Block {
            until_ms: now_ms + BLOCK_MS,
        },
        Some(a) => AfterFailure::Slow(a.delay_ms.max(0.0) as u64),
        None => AfterFailure::Slow(0),
    }
}

/// The 429 an unknown key gets from a refused address, with the time until the address is
/// heard again.
pub fn too_many_failures(retry_after_ms: u64) -> ApiError {
    ApiError::new(
        429,
        "rate_limit_exceeded",
        "too_many_auth_failures",
        "Too many requests with invalid API keys from this address.",
    )
    .retry_after(retry_after_ms.div_ceil(1000))
}

/// RateLimit headers for the failed-authentication quota of a refused address.
pub fn headers(per_minute: u32, retry_after_ms: u64) -> Vec<(String, String)> {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    vec![
        (
            "ratelimit-policy".into(),
            format!("\"auth_failures\";q={};w=60", per_minute.max(1)),
        ),
        (
            "ratelimit".into(),
            format!("\"auth_failures\";r=0;t={secs}"),
        ),
    ]
}

/// How long a key the store does not hold is remembered as unknown, in milliseconds.
pub const NEGATIVE_TTL_MS: u64 = 30_000;
/// Unknown keys remembered per isolate.
pub const NEGATIVE_CAPACITY: usize = 4096;

/// Keys recently found unknown (by their store key, never the key itself): a repeated bad key
/// is answered without reading the store again. A key minted meanwhile is found after at most
/// [`NEGATIVE_TTL_MS`].
#[derive(Debug, Default)]
pub struct NegativeCache {
    entries: std::collections::HashMap<String, u64>,
}

impl NegativeCache {
    pub fn known_bad(&mut self, kv_key: &str, now_ms: u64) -> bool {
        match self.entries.get(kv_key) {
            Some(until) if *until > now_ms => true,
            Some(_) => {
                self.entries.remove(kv_key);
                false
            }
            None => false,
        }
    }

    pub fn remember(&mut self, kv_key: &str, now_ms: u64) {
        if self.entries.len() >= NEGATIVE_CAPACITY {
            self.entries.retain(|_, until| *until > now_ms);
            if self.entries.len() >= NEGATIVE_CAPACITY {
                self.entries.clear();
            }
        }
        self.entries
            .insert(kv_key.to_string(), now_ms + NEGATIVE_TTL_MS);
    }
}

/// Addresses refused for failed authentication, each until a time.
#[derive(Debug, Default)]
pub struct Blocklist {
    entries: Vec<(String, u64)>,
}

impl Blocklist {
    /// Whether `client` is refused at `now_ms` (expired entries are dropped).
    pub fn blocked(&mut self, client: &str, now_ms: u64) -> bool {
        self.until(client, now_ms).is_some()
    }

    /// Until when `client` is refused, if it is.
    pub fn until(&mut self, client: &str, now_ms: u64) -> Option<u64> {
        self.entries.retain(|(_, until)| *until > now_ms);
        self.entries
            .iter()
            .find(|(c, _)| c == client)
            .map(|(_, until)| *until)
    }

    /// Refuses `client` until `until_ms`, forgetting the oldest entry when full.
    pub fn block(&mut self, client: &str, until_ms: u64) {
        if self.entries.len() >= BLOCKLIST_CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push((client.to_string(), until_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_slow_then_refuse() {
        let mut tat = 0.0;
        let outcomes: Vec<Option<f64>> = (0..12)
            .map(|_| auth_failure(&mut tat, 0.0, 10, 10))
            .collect();
        assert!(outcomes[..10].iter().all(Option::is_some));
        assert!(
            outcomes[9].is_some_and(|d| d > 0.0),
            "slowed near the limit"
        );
        assert!(outcomes[10].is_none() && outcomes[11].is_none());
    }

    #[test]
    fn blocklist_expires_and_stays_bounded() {
        let mut b = Blocklist::default();
        b.block("1.2.3.4", 100);
        assert!(b.blocked("1.2.3.4", 50));
        assert!(!b.blocked("5.6.7.8", 50));
        assert!(!b.blocked("1.2.3.4", 100));
        for i in 0..(BLOCKLIST_CAPACITY + 10) {
            b.block(&i.to_string(), 1000);
        }
        assert!(b.entries.len() <= BLOCKLIST_CAPACITY);
        assert!(!b.blocked("0", 10) && b.blocked(&(BLOCKLIST_CAPACITY + 9).to_string(), 10));
    }

    #[test]
    fn negative_cache_expires_and_stays_bounded() {
        let mut n = NegativeCache::default();
        n.remember("sha256:a", 0);
        assert!(n.known_bad("sha256:a", 1));
        assert!(!n.known_bad("sha256:b", 1));
        assert!(!n.known_bad("sha256:a", NEGATIVE_TTL_MS));
        for i in 0..(NEGATIVE_CAPACITY * 2) {
            n.remember(&i.to_string(), 5);
        }
        assert!(n.entries.len() <= NEGATIVE_CAPACITY);
        let e = too_many_failures(1500);
        assert_eq!((e.status, e.retry_after), (429, Some(2)));
        let h = headers(8, 1500);
        assert!(h.iter().any(|(k, v)| k == "ratelimit" && v.contains("t=2")));
    }

    #[test]
    fn failure_steps() {
        let refused = AuthFailAnswer {
            refused: true,
            delay_ms: 0.0,
        };
        assert_eq!(
            after_failure(Some(&refused), 5),
            AfterFailure::Block {
                until_ms: 5 + BLOCK_MS
            }
        );
        let slow = AuthFailAnswer {
            refused: false,
            delay_ms: 250.7,
        };
        assert_eq!(after_failure(Some(&slow), 5), AfterFailure::Slow(250));
        assert_eq!(after_failure(None, 5), AfterFailure::Slow(0));
        let mut s = AuthState::default();
        let body = AuthFailBody::new(2);
        assert!(!s.report(&body, 0.0).refused);
        assert!(!s.report(&body, 0.0).refused);
        assert!(s.report(&body, 0.0).refused);
    }
}
