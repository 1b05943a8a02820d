//! API-key authentication: extracting the client's key, hashing it, and the key record stored
//! under that hash. Raw keys are never stored or logged; only their SHA-256 is.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;

/// Prefix of the KV key under which a key record is stored.
pub const KV_PREFIX: &str = "sha256:";
/// Prefix of minted keys.
pub const KEY_PREFIX: &str = "eg_";

/// What a key may do. Stored as JSON in the key namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Stable, non-secret identifier used in logs, limits and audit events.
    pub key_id: String,
    /// Owner or tenant name.
    pub tenant: String,
    /// Limits tier name.
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Model name globs this key may use; empty means any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Tool or function name globs this key may offer or call; empty means none restricted.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Findings are reported but nothing is blocked or redacted.
    #[serde(default)]
    pub monitor_only: bool,
    /// System and developer messages of this key's requests are the operator's own text: not
    /// scored for injection (by default every role counts, since the client chooses roles).
    #[serde(default)]
    pub trust_system: bool,
    /// A disabled key is refused like an unknown one.
    #[serde(default)]
    pub disabled: bool,
    /// Per-key overrides of the tier's limits.
    #[serde(default)]
    pub limits: Option<crate::network::limits::Tier>,
}

fn default_tier() -> String {
    "default".to_string()
}

/// Hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    crate::codec::hex_encode(&Sha256::digest(key.as_bytes()))
}

/// The KV key a record lives under.
pub fn kv_key(key: &str) -> String {
    format!("{KV_PREFIX}{}", hash_key(key))
}

/// Extracts the client's key from `Authorization: Bearer` or `x-api-key`. Both may be sent
/// (some SDKs do) but must then agree.
pub fn extract_key(
    authorization: Option<&str>,
    x_api_key: Option<&str>,
) -> Result<String, ApiError> {
    let bearer = match authorization {
        None => None,
        Some(h) => {
            let h = h.trim();
            let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::unauthorized(
                    "The Authorization header must use the Bearer scheme.",
                ));
            }
            Some(rest.trim())
        }
    };
    let key = match (bearer, x_api_key.map(str::trim)) {
        (None, None) => {
            return Err(ApiError::unauthorized(
                "Missing API key: send Authorization: Bearer <key> or x-api-key.",
            ))
        }
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::unauthorized(
                "Authorization and x-api-key carry different keys.",
            ))
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
    };
    if !well_formed(key) {
        return Err(ApiError::unauthorized("Malformed API key."));
    }
    Ok(key.to_string())
}

/// 16 to 256 characters of `[A-Za-z0-9_.-]`.
pub fn well_formed(key: &str) -> bool {
    (16..=256).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A new key from 32 random bytes: `eg_` followed by 43 base64url characters.
pub fn format_key(random: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::from(KEY_PREFIX);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in random {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_and_checks_keys() {
        let k = "eg_abcdefghijklmnopqrstuvwxyz";
        assert_eq!(extract_key(Some(&format!("Bearer {k}")), None).unwrap(), k);
        assert_eq!(extract_key(None, Some(k)).unwrap(), k);
        assert_eq!(
            extract_key(Some(&format!("bearer {k}")), Some(k)).unwrap(),
            k
        );
        assert!(extract_key(None, None).is_err());
        assert!(extract_key(Some("Basic abc"), None).is_err());
        assert!(extract_key(Some("Bearer short"), None).is_err());
        assert!(extract_key(Some(&format!("Bearer {k}")), Some("eg_other_key_1234567")).is_err());
        assert!(extract_key(Some("Bearer eg_has spaces in it here"), None).is_err());
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn minted_keys_are_well_formed() {
        let k = format_key(&[7u8; 32]);
        assert!(k.starts_with("eg_"));
        assert_eq!(k.len(), 3 + 43);
        assert!(well_formed(&k));
    }
}
