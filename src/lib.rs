//! edgeguard: a security gateway for AI APIs.
//!
//! The crate is a functional core with a thin edge shell. Everything outside [`edge`] is plain
//! Rust with no Workers types and is tested natively; `edge` (built only for `wasm32`) moves
//! bytes between the Workers runtime and the core.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api_error;
pub mod auth;
pub mod config;
pub mod input;
pub mod limits;
pub mod output;
pub mod proxy;
pub mod telemetry;

#[cfg(target_arch = "wasm32")]
mod edge;
