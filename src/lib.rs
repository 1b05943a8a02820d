//! edgeguard: a security gateway for AI APIs.
//!
//! The crate is a functional core with a thin edge shell. Everything outside [`edge`] is plain
//! Rust with no Workers types and is tested natively; `edge` (built only for `wasm32`) moves
//! bytes between the Workers runtime and the core.
//!
//! One module per layer: [`input`], [`output`], [`tools`], [`network`], [`audit`]; the wire
//! protocols in [`protocol`]; the request pipeline that strings the layers together in
//! [`gateway`]; byte sets with fast searches, shared by the scanners, in [`byteset`], on the
//! sixteen-byte lanes of [`lanes`].
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api_error;
pub mod audit;
pub mod byteset;
pub mod codec;
pub mod config;
pub mod gateway;
pub mod input;
pub mod lanes;
pub mod network;
pub mod output;
pub mod protocol;
pub mod tools;
pub mod unicode;

#[cfg(target_arch = "wasm32")]
mod edge;
