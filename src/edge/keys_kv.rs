//! The key store: key records in the `KEYS` KV namespace under the SHA-256 of the key.

use worker::{console_error, Env};

use crate::api_error::ApiError;
use crate::network::keys::{self, KeyRecord};

/// Looks a key's record up; `None` when the store has no record under its hash.
pub async fn lookup(env: &Env, key: &str) -> Result<Option<KeyRecord>, ApiError> {
    let kv = env.kv("KEYS").map_err(|_| {
        console_error!("edgeguard configuration error: binding KEYS: missing KV namespace");
        ApiError::internal()
    })?;
    let stored = kv.get(&keys::kv_key(key)).text().await.map_err(|e| {
        console_error!("key store unavailable: {e}");
        ApiError::new(
            503,
            "server_error",
            "key_store_unavailable",
            "The gateway cannot check keys right now.",
        )
    })?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    serde_json::from_str(&stored).map(Some).map_err(|e| {
        console_error!("key record under {} is invalid: {e}", keys::KV_PREFIX);
        ApiError::internal()
    })
}
