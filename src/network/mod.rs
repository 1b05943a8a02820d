//! The network layer: API keys and their records, per-key limits (request rate, concurrency,
//! LLM tokens) decided in one limiter object per key, token estimates, and the throttle on
//! failed authentication.

pub mod keys;
pub mod limiter;
pub mod limits;
pub mod throttle;
pub mod tokens;
