//! The network layer's arithmetic: per-key request rate (GCRA), concurrency leases and an LLM
//! token budget with reservations, plus the response headers that describe them. Plain Rust;
//! the Durable Object in the edge shell stores a [`KeyState`] and calls [`KeyState::acquire`] and
//! [`KeyState::release`] synchronously, so each decision is atomic per key.

use serde::{Deserialize, Serialize};

/// Limits for one key. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Requests per minute (sustained rate).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Requests allowed at once before the rate applies (defaults to the per-minute rate).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests in flight at once, streams included.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// LLM tokens (prompt + completion) per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    /// The most completion tokens a request may ask for (and its allowance when it names none).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// What happens to a request asking for more than `max_tokens`: `clamp` (default: the
    /// origin receives the cap) or `refuse` (400 `max_tokens_too_large`).
    #[serde(default)]
    pub max_tokens_policy: Option<MaxTokensPolicy>,
}

/// What happens to a request asking for more completion tokens than its tier allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensPolicy {
    Clamp,
    Refuse,
}

impl Tier {
    /// Applies per-key overrides on top of a tier.
    pub fn overridden_by(self, o: &Tier) -> Tier {
        Tier {
            requests_per_minute: o.requests_per_minute.or(self.requests_per_minute),
            burst: o.burst.or(self.burst),
            concurrency: o.concurrency.or(self.concurrency),
            tokens_per_minute: o.tokens_per_minute.or(self.tokens_per_minute),
            max_tokens: o.max_tokens.or(self.max_tokens),
            max_tokens_policy: o.max_tokens_policy.or(self.max_tokens_policy),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none()
            && self.concurrency.is_none()
            && self.tokens_per_minute.is_none()
    }
}

pub(crate) const MINUTE_MS: f64 = 60_000.0;

/// Everything stored for one key. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KeyState {
    /// GCRA theoretical arrival time.
    pub tat: f64,
    /// Token bucket level and when it was last brought up to date.
    pub tokens: f64,
    pub tokens_at: f64,
    /// Whether `tokens` has been initialized (a new bucket starts full).
    pub tokens_init: bool,
    /// Open concurrency leases: (id, expiry).
    pub leases: Vec<(String, f64)>,
    /// Moving average of the completion tokens this key's requests used (0: none seen yet).
    #[serde(default)]
    pub completion_avg: f64,
}

/// The least completion allowance reserved for a request, whatever the key's history.
pub const COMPLETION_FLOOR: u32 = 1024;
/// A request reserves this many times the key's average completion (or the floor), never more
/// than it may use.
pub const COMPLETION_MARGIN: f64 = 2.0;
/// Weight of the newest completion in the moving average.
const AVERAGE_WEIGHT: f64 = 0.2;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    pub now: f64,
    pub tier: Tier,
    /// The most the request may use: estimated prompt plus its whole completion allowance
    /// (`max_tokens` times `n`).
    pub reserve_tokens: u32,
    /// The estimated prompt part of `reserve_tokens`.
    #[serde(default)]
    pub prompt_tokens: u32,
    /// The lease's id and how long it lives without a release.
    pub lease_id: String,
    pub lease_ttl_ms: f64,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Requests,
    Concurrency,
    Tokens,
    /// The reservation is larger than the whole budget: it can never fit.
    TokensTooLarge,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Requests => "requests_limit",
            Refusal::Concurrency => "concurrency_limit",
            Refusal::Tokens => "tokens_limit",
            Refusal::TokensTooLarge => "tokens_request_too_large",
        }
    }
}

/// The state of one limit after a decision, for headers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    /// How many the quota holds when full (the request burst, the token budget).
    pub limit: u32,
    pub remaining: u32,
    /// Milliseconds until the quota is fully restored.
    pub reset_ms: f64,
    /// Milliseconds an empty quota takes to refill: `limit` per `window_ms` is the rate.
    #[serde(default)]
    pub window_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub refusal: Option<Refusal>,
    /// Milliseconds after which retrying can succeed.
    pub retry_after_ms: f64,
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
    pub concurrency: Option<Quota>,
    /// Tokens reserved for the request (settled when it ends).
    #[serde(default)]
    pub reserved: u32,
}

impl KeyState {
    fn expire_leases(&mut self, now: f64) {
        self.leases.retain(|(_, exp)| *exp > now);
    }

    fn refill(&mut self, now: f64, per_minute: u32) {
        let cap = f64::from(per_minute);
        if !self.tokens_init {
            self.tokens = cap;
            self.tokens_at = now;
            self.tokens_init = true;
            return;
        }
        let elapsed = (now - self.tokens_at).max(0.0);
        self.tokens = (self.tokens + elapsed * cap / MINUTE_MS).min(cap);
        self.tokens_at = self.tokens_at.max(now);
    }

    /// Decides one request and, if it is allowed, records it: counts it against the rate,
    /// opens a concurrency lease and reserves its tokens, all at once or not at all.
    pub fn acquire(&mut self, ask: &Ask) -> Decision {
        let now = ask.now;
        let t = &ask.tier;
        self.expire_leases(now);
        let mut d = Decision {
            allowed: true,
            refusal: None,
            retry_after_ms: 0.0,
            requests: None,
            tokens: None,
            concurrency: None,
            reserved: 0,
        };

        // Request rate: GCRA with emission interval T and burst tolerance.
        let mut new_tat = self.tat;
        if let Some(rpm) = t.requests_per_minute.filter(|r| *r > 0) {
            let interval = MINUTE_MS / f64::from(rpm);
            let burst = f64::from(t.burst.unwrap_or(rpm).max(1));
            let tolerance = interval * burst;
            let tat = self.tat.max(now);
            new_tat = tat + interval;
            let allow_at = new_tat - tolerance;
            if now < allow_at {
                d.allowed = false;
                d.refusal = Some(Refusal::Requests);
                d.retry_after_ms = allow_at - now;
            }
            let used = if d.allowed { new_tat } else { tat };
            // The burst is what the quota holds; it refills one request per interval, so the
            // policy reads `burst` per `burst × interval`: the same rate as `rpm` per minute.
            d.requests = Some(Quota {
                limit: burst as u32,
                remaining: (((tolerance - (used - now)) / interval).floor().max(0.0)) as u32,
                reset_ms: (used - now).max(0.0),
                window_ms: tolerance,
            });
        }

        // Concurrency.
        if let Some(max) = t.concurrency {
            let active = self.leases.len() as u32;
            if d.allowed && active >= max {
                d.allowed = false;
                d.refusal = Some(Refusal::Concurrency);
                // A slot frees when any request in flight ends, which no one can foresee: a
                // short, honest retry hint rather than the lease's worst case.
                d.retry_after_ms = 1000.0;
            }
            d.concurrency = Some(Quota {
                limit: max,
                remaining: max.saturating_sub(active + u32::from(d.allowed)),
                reset_ms: 0.0,
                window_ms: 0.0,
            });
        }

        // Token budget: a bucket refilled continuously to `tokens_per_minute`.
        let reservation = self.reservation(ask);
        if let Some(tpm) = t.tokens_per_minute {
            self.refill(now, tpm);
            let want = f64::from(reservation);
            if d.allowed && want > f64::from(tpm) {
                d.allowed = false;
                d.refusal = Some(Refusal::TokensTooLarge);
                d.retry_after_ms = 0.0;
            } else if d.allowed && want > self.tokens {
                d.allowed = false;
                d.refusal = Some(Refusal::Tokens);
                d.retry_after_ms = (want - self.tokens) * MINUTE_MS / f64::from(tpm).max(1.0);
            }
            let level = if d.allowed {
                self.tokens - want
            } else {
                self.tokens
            };
            d.tokens = Some(Quota {
                limit: tpm,
                remaining: level.max(0.0).floor() as u32,
                reset_ms: (f64::from(tpm) - level).max(0.0) * MINUTE_MS / f64::from(tpm).max(1.0),
                window_ms: MINUTE_MS,
            });
        }

        if d.allowed {
            if t.requests_per_minute.is_some_and(|r| r > 0) {
                self.tat = new_tat;
            }
            if t.concurrency.is_some() {
                self.leases
                    .push((ask.lease_id.clone(), now + ask.lease_ttl_ms));
            }
            if t.tokens_per_minute.is_some() {
                d.reserved = reservation;
                self.tokens -= f64::from(d.reserved);
            }
        }
        d
    }

    /// What a request reserves: its prompt plus a bounded estimate of its completion (twice the
    /// key's average completion, at least [`COMPLETION_FLOOR`]), never more than it may use.
    /// Reserving the whole `max_tokens` would let a client that asks for 64,000 and uses 300
    /// start only a handful of requests a minute.
    pub fn reservation(&self, ask: &Ask) -> u32 {
        let allowance = ask.reserve_tokens.saturating_sub(ask.prompt_tokens);
        let estimate = (self.completion_avg * COMPLETION_MARGIN)
            .ceil()
            .max(f64::from(COMPLETION_FLOOR));
        let estimate = if estimate >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            estimate as u32
        };
        ask.prompt_tokens.saturating_add(allowance.min(estimate))
    }

    /// Ends a request: closes its lease and settles its reservation with what it used (`used`
    /// is what the origin reported, or an estimate). Unused tokens come back; tokens used
    /// beyond the reservation are charged, so the bucket may go below zero and the key waits
    /// until it refills. The completion part (`used - prompt`) feeds the key's average.
    pub fn release(
        &mut self,
        now: f64,
        tier: &Tier,
        lease_id: &str,
        reserved: u32,
        used: u32,
        prompt: u32,
    ) {
        self.leases.retain(|(id, _)| id != lease_id);
        self.expire_leases(now);
        if let Some(tpm) = tier.tokens_per_minute {
            self.refill(now, tpm);
            let refund = f64::from(reserved) - f64::from(used);
            self.tokens = (self.tokens + refund).min(f64::from(tpm));
            let completion = f64::from(used.saturating_sub(prompt));
            self.completion_avg = if self.completion_avg == 0.0 {
                completion
            } else {
                self.completion_avg * (1.0 - AVERAGE_WEIGHT) + completion * AVERAGE_WEIGHT
            };
        }
    }

    /// The earliest lease expiry, for the alarm that reclaims abandoned leases.
    pub fn next_expiry(&self) -> Option<f64> {
        self.leases.iter().map(|(_, e)| *e).reduce(f64::min)
    }

    /// Drops expired leases (the alarm's job).
    pub fn reclaim(&mut self, now: f64) -> usize {
        let before = self.leases.len();
        self.expire_leases(now);
        before - self.leases.len()
    }
}

/// Response headers describing a decision: the IETF RateLimit fields and OpenAI's.
pub fn headers(d: &Decision) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut policy = Vec::new();
    let mut state = Vec::new();
    let secs = |ms: f64| (ms / 1000.0).ceil().max(0.0) as u64;
    let duration = |ms: f64| {
        let s = ms / 1000.0;
        if s >= 60.0 {
            format!(
                "{}m{}s",
                (s / 60.0).floor() as u64,
                (s % 60.0).round() as u64
            )
        } else {
            format!("{}s", (s * 1000.0).round() / 1000.0)
        }
    };
    // Per-minute quotas: the IETF fields and OpenAI's, named after the quota.
    for (name, quota) in [("requests", d.requests), ("tokens", d.tokens)] {
        let Some(q) = quota else { continue };
        policy.push(format!(
            "\"{name}\";q={};w={}",
            q.limit,
            secs(q.window_ms).max(1)
        ));
        state.push(format!(
            "\"{name}\";r={};t={}",
            q.remaining,
            secs(q.reset_ms)
        ));
        out.push((format!("x-ratelimit-limit-{name}"), q.limit.to_string()));
        out.push((
            format!("x-ratelimit-remaining-{name}"),
            q.remaining.to_string(),
        ));
        out.push((format!("x-ratelimit-reset-{name}"), duration(q.reset_ms)));
    }
    if let Some(q) = d.concurrency {
        policy.push(format!("\"concurrency\";q={}", q.limit));
        state.push(format!("\"concurrency\";r={}", q.remaining));
    }
    if !policy.is_empty() {
        out.push(("ratelimit-policy".into(), policy.join(", ")));
        out.push(("ratelimit".into(), state.join(", ")));
    }
    if !d.allowed {
        out.push((
            "retry-after".into(),
            secs(d.retry_after_ms).max(1).to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ask(now: f64, tier: Tier, reserve: u32, id: &str) -> Ask {
        Ask {
            now,
            tier,
            reserve_tokens: reserve,
            prompt_tokens: 0,
            lease_id: id.into(),
            lease_ttl_ms: 60_000.0,
        }
    }

    fn rate(rpm: u32, burst: u32) -> Tier {
        Tier {
            requests_per_minute: Some(rpm),
            burst: Some(burst),
            ..Tier::default()
        }
    }

    #[test]
    fn burst_then_rate() {
        let mut s = KeyState::default();
        let t = rate(10, 10);
        let ok = (0..15)
            .filter(|i| s.acquire(&ask(1000.0, t, 0, &i.to_string())).allowed)
            .count();
        assert_eq!(ok, 10);
        let d = s.acquire(&ask(1000.0, t, 0, "x"));
        assert_eq!(d.refusal, Some(Refusal::Requests));
        assert!(
            (d.retry_after_ms - 6000.0).abs() < 1.0,
            "{}",
            d.retry_after_ms
        );
        assert!(s.acquire(&ask(7000.0, t, 0, "y")).allowed);
        assert!(!s.acquire(&ask(7000.0, t, 0, "z")).allowed);
    }

    #[test]
    fn concurrency_leases() {
        let mut s = KeyState::default();
        let t = Tier {
            concurrency: Some(2),
            ..Tier::default()
        };
        assert!(s.acquire(&ask(0.0, t, 0, "a")).allowed);
        assert!(s.acquire(&ask(0.0, t, 0, "b")).allowed);
        let d = s.acquire(&ask(0.0, t, 0, "c"));
        assert_eq!(d.refusal, Some(Refusal::Concurrency));
        s.release(1.0, &t, "a", 0, 0, 0);
        assert!(s.acquire(&ask(2.0, t, 0, "c")).allowed);
        // An abandoned lease expires.
        assert!(!s.acquire(&ask(3.0, t, 0, "d")).allowed);
        assert_eq!(s.reclaim(70_000.0), 2);
        assert!(s.acquire(&ask(70_001.0, t, 0, "d")).allowed);
    }

    #[test]
    fn tokens_reserve_and_refund() {
        let mut s = KeyState::default();
        let t = Tier {
            tokens_per_minute: Some(1000),
            ..Tier::default()
        };
        assert_eq!(
            s.acquire(&ask(0.0, t, 2000, "big")).refusal,
            Some(Refusal::TokensTooLarge)
        );
        assert!(s.acquire(&ask(0.0, t, 600, "a")).allowed);
        assert_eq!(
            s.acquire(&ask(0.0, t, 600, "b")).refusal,
            Some(Refusal::Tokens)
        );
        s.release(0.0, &t, "a", 600, 20, 0);
        assert!(s.acquire(&ask(0.0, t, 600, "b")).allowed);
    }

    #[test]
    fn headers_follow_the_decision() {
        let mut s = KeyState::default();
        let t = Tier {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(1000),
            ..Tier::default()
        };
        let d = s.acquire(&ask(0.0, t, 100, "a"));
        let h = headers(&d);
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("x-ratelimit-limit-requests").as_deref(), Some("10"));
        assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("9"));
        assert_eq!(get("x-ratelimit-remaining-tokens").as_deref(), Some("900"));
        assert!(get("ratelimit-policy")
            .unwrap()
            .contains("\"requests\";q=10;w=60"));
        assert!(get("retry-after").is_none());
    }

    proptest! {
        /// Reservations are estimates, so a key can overspend, but by a bounded amount: every
        /// token used is accounted for (used + still reserved = start + refill - bucket), and
        /// the bucket never sinks below minus the overshoot of the requests in flight together
        /// (at most `concurrency` x (allowance - floor)). Over a run of length T the key uses
        /// at most budget x (1 + T / 1 min) plus that overshoot.
        #[test]
        fn overspending_is_bounded(
            steps in prop::collection::vec((0u32..4000, 0u32..3, 0u32..64_000, 0u32..3000), 1..200),
            tpm in 10_000u32..400_000,
            concurrency in 1u32..6,
        ) {
            let allowance = 64_000u32;
            let t = Tier {
                tokens_per_minute: Some(tpm),
                concurrency: Some(concurrency),
                ..Tier::default()
            };
            let mut s = KeyState::default();
            let mut now = 0.0;
            let mut in_flight: Vec<(String, u32, u32)> = Vec::new(); // (id, reserved, prompt)
            let mut used_total = 0f64;
            for (i, (gap, op, completion, prompt)) in steps.into_iter().enumerate() {
                now += f64::from(gap);
                if op == 0 || in_flight.is_empty() {
                    let id = i.to_string();
                    let a = Ask {
                        now,
                        tier: t,
                        reserve_tokens: prompt + allowance,
                        prompt_tokens: prompt,
                        lease_id: id.clone(),
                        lease_ttl_ms: 1e12,
                    };
                    let d = s.acquire(&a);
                    if d.allowed {
                        prop_assert!(d.reserved <= prompt + allowance);
                        in_flight.push((id, d.reserved, prompt));
                    }
                } else {
                    let (id, reserved, prompt) = in_flight.remove(0);
                    let used = prompt + completion.min(allowance);
                    s.release(now, &t, &id, reserved, used, prompt);
                    used_total += f64::from(used);
                }
                let max_overshoot = f64::from(concurrency) * f64::from(allowance - COMPLETION_FLOOR);
                prop_assert!(s.tokens >= -max_overshoot - 1e-6, "bucket {} below -{max_overshoot}", s.tokens);
                let reserved_now: f64 = in_flight.iter().map(|(_, r, _)| f64::from(*r)).sum();
                let bound = f64::from(tpm) * (1.0 + now / MINUTE_MS);
                prop_assert!(
                    used_total + reserved_now <= bound - s.tokens.min(0.0) + 1e-6,
                    "used {used_total} + reserved {reserved_now} over {bound} + debt {}", -s.tokens.min(0.0)
                );
            }
        }

        /// Many large-allowance requests with small real use do not starve a key.
        #[test]
        fn small_answers_do_not_starve(n in 20usize..60) {
            let t = Tier { tokens_per_minute: Some(400_000), ..Tier::default() };
            let mut s = KeyState::default();
            for i in 0..n {
                let id = i.to_string();
                let a = Ask { now: f64::from(i as u32), tier: t, reserve_tokens: 64_100, prompt_tokens: 100,
                              lease_id: id.clone(), lease_ttl_ms: 1e9 };
                let d = s.acquire(&a);
                prop_assert!(d.allowed, "request {i} refused");
                s.release(f64::from(i as u32), &t, &id, d.reserved, 400, 100);
            }
        }

        /// Retry-After is exact: a request refused for its rate is allowed once the time it
        /// names has passed (and not a millisecond before), and the headers agree with it.
        #[test]
        fn retry_after_is_when_the_request_would_pass(gaps in prop::collection::vec(0u32..2000, 1..60), rpm in 1u32..600, burst in 1u32..30) {
            let t = rate(rpm, burst);
            let mut s = KeyState::default();
            let mut now = 0.0;
            for (i, g) in gaps.iter().enumerate() {
                now += f64::from(*g);
                let d = s.acquire(&ask(now, t, 0, &i.to_string()));
                let q = d.requests.unwrap();
                prop_assert!(q.remaining <= q.limit);
                prop_assert_eq!(q.limit, burst);
                if !d.allowed {
                    let h = headers(&d);
                    let retry: f64 = h.iter().find(|(k, _)| k == "retry-after").unwrap().1.parse().unwrap();
                    prop_assert!((retry - (d.retry_after_ms / 1000.0).ceil().max(1.0)).abs() < 1e-9);
                    let mut early = s.clone();
                    if d.retry_after_ms > 1.0 {
                        prop_assert!(!early.acquire(&ask(now + d.retry_after_ms - 1.0, t, 0, "e")).allowed);
                    }
                    let mut later = s.clone();
                    prop_assert!(later.acquire(&ask(now + d.retry_after_ms, t, 0, "l")).allowed);
                }
            }
        }

        /// For any sequence of arrivals (time never goes backwards) the number allowed in any
        /// window of 60 s never exceeds burst + what the rate earns in that window.
        #[test]
        fn rate_is_never_exceeded(gaps in prop::collection::vec(0u32..3000, 1..300), rpm in 1u32..120, burst in 1u32..20) {
            let t = rate(rpm, burst);
            let mut s = KeyState::default();
            let mut now = 0.0;
            let mut allowed = Vec::new();
            for (i, g) in gaps.iter().enumerate() {
                now += f64::from(*g);
                if s.acquire(&ask(now, t, 0, &i.to_string())).allowed {
                    allowed.push(now);
                }
            }
            let interval = MINUTE_MS / f64::from(rpm);
            for (i, start) in allowed.iter().enumerate() {
                let in_window = allowed[i..].iter().take_while(|x| **x < start + MINUTE_MS).count() as f64;
                prop_assert!(in_window <= f64::from(burst) + (MINUTE_MS / interval).ceil());
            }
        }

        /// Leases in use never exceed the concurrency limit, whatever the interleaving of
        /// acquires and releases.
        #[test]
        fn concurrency_is_never_exceeded(ops in prop::collection::vec((any::<bool>(), 0usize..8), 1..200), max in 1u32..5) {
            let t = Tier { concurrency: Some(max), ..Tier::default() };
            let mut s = KeyState::default();
            let mut open: Vec<String> = Vec::new();
            for (i, (acq, pick)) in ops.iter().enumerate() {
                if *acq || open.is_empty() {
                    let id = format!("l{i}");
                    if s.acquire(&ask(i as f64, t, 0, &id)).allowed {
                        open.push(id);
                    }
                } else {
                    let id = open.remove(pick % open.len());
                    s.release(i as f64, &t, &id, 0, 0, 0);
                }
                prop_assert!(open.len() as u32 <= max);
                prop_assert_eq!(s.leases.len(), open.len());
            }
        }

        /// Tokens reserved and not yet released never exceed the budget.
        #[test]
        fn tokens_never_overdrawn(asks in prop::collection::vec((0u32..700, any::<bool>()), 1..100)) {
            let t = Tier { tokens_per_minute: Some(1000), ..Tier::default() };
            let mut s = KeyState::default();
            let mut outstanding: Vec<(String, u32)> = Vec::new();
            for (i, (want, release)) in asks.iter().enumerate() {
                if *release && !outstanding.is_empty() {
                    let (id, r) = outstanding.remove(0);
                    s.release(0.0, &t, &id, r, r / 2, 0);
                }
                let id = format!("t{i}");
                if s.acquire(&ask(0.0, t, *want, &id)).allowed {
                    outstanding.push((id, *want));
                }
                prop_assert!(s.tokens >= -1e-6);
            }
        }
    }
}
