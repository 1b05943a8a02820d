//! Keyed hashes for the audit layer: HMAC-SHA-256 fingerprints of detected values (the same
//! value gives the same fingerprint under one key, and cannot be read back or guessed without
//! the key), signatures of stored batches, and the webhook's signature header.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::codec::hex_encode as hex;

type HmacSha256 = Hmac<Sha256>;

/// An HMAC under `key`, fed the parts each prefixed by its length so that no two lists of
/// parts collide. HMAC takes keys of any length, so `new_from_slice` cannot fail; the fallback
/// (a fixed key) is never used.
fn keyed(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac
}

/// HMAC-SHA-256 of length-prefixed parts.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    keyed(key, parts).finalize().into_bytes().into()
}

/// Plain HMAC-SHA-256 of one message (the webhook signature, checkable with any HMAC tool).
pub fn hmac_plain(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key, &[]);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The fingerprint of a detected value (its folded form, as the detectors read it): 128 bits
/// of HMAC-SHA-256 under the audit key over the length-prefixed domain and detector id, then the
/// value's bytes, in hex. Domain-separated from every other use of the key.
pub fn fingerprint(key: &[u8], detector: &str, value: &str) -> String {
    let mut f = Fingerprinter::new(key, detector);
    f.update(value.as_bytes());
    f.finish()
}

/// A fingerprint computed piece by piece, for values longer than what a stream holds at once:
/// the same result as [`fingerprint`] over the concatenated pieces.
#[derive(Clone)]
pub struct Fingerprinter(HmacSha256);

impl Fingerprinter {
    pub fn new(key: &[u8], detector: &str) -> Self {
        Fingerprinter(keyed(key, &[b"edgeguard-finding-v1", detector.as_bytes()]))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize().into_bytes()[..16])
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The signature of a stored batch: HMAC over its object name, event count and the SHA-256 of
/// its event lines.
pub fn batch_signature(key: &[u8], object: &str, events: usize, sha256: &str) -> String {
    let count = events.to_string();
    hex(&hmac(
        key,
        &[
            b"edgeguard-audit-batch-v1",
            object.as_bytes(),
            count.as_bytes(),
            sha256.as_bytes(),
        ],
    ))
}

/// The webhook's `X-Edgeguard-Signature` value: `t=<unix ms>,v1=<hex HMAC-SHA-256 of
/// "<t>.<body>">` under the webhook secret.
pub fn webhook_signature(secret: &[u8], unix_ms: u64, body: &[u8]) -> String {
    format!("t={unix_ms},v1={}", webhook_digest(secret, unix_ms, body))
}

/// Hex HMAC-SHA-256 of `"<t>.<body>"`.
fn webhook_digest(secret: &[u8], unix_ms: u64, body: &[u8]) -> String {
    let mut msg = format!("{unix_ms}.").into_bytes();
    msg.extend_from_slice(body);
    hex(&hmac_plain(secret, &msg))
}

/// Checks a webhook signature header against a body, in constant time over the digest.
pub fn verify_webhook(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let want = webhook_digest(secret, t, body);
    // Constant time over the digest.
    want.len() == v1.len()
        && want
            .bytes()
            .zip(v1.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_plain(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn fingerprints_depend_on_key_detector_and_value() {
        let a = fingerprint(b"k1", "aws_access_key", "AKIAZ3MSJV4WWNKWW5FG");
        assert_eq!(a.len(), 32);
        assert_eq!(
            a,
            fingerprint(b"k1", "aws_access_key", "AKIAZ3MSJV4WWNKWW5FG")
        );
        assert_ne!(
            a,
            fingerprint(b"k2", "aws_access_key", "AKIAZ3MSJV4WWNKWW5FG")
        );
        assert_ne!(a, fingerprint(b"k1", "email", "AKIAZ3MSJV4WWNKWW5FG"));
        assert_ne!(
            a,
            fingerprint(b"k1", "aws_access_key", "AKIAZ3MSJV4WWNKWW5FH")
        );
        // Length prefixes: moving a byte between parts changes the hash.
        assert_ne!(hmac(b"k", &[b"ab", b"c"]), hmac(b"k", &[b"a", b"bc"]));
    }

    #[test]
    fn fingerprints_can_be_computed_in_pieces() {
        let whole = fingerprint(b"k", "pem", "-----BEGIN-----abcdef");
        let mut f = Fingerprinter::new(b"k", "pem");
        for piece in ["-----BEG", "", "IN-----abc", "def"] {
            f.update(piece.as_bytes());
        }
        assert_eq!(f.finish(), whole);
    }

    #[test]
    fn webhook_signatures_verify_and_reject_changes() {
        let h = webhook_signature(b"s3cret", 1_700_000_000_000, b"{\"a\":1}\n");
        assert!(h.starts_with("t=1700000000000,v1="));
        assert!(verify_webhook(b"s3cret", &h, b"{\"a\":1}\n"));
        assert!(!verify_webhook(b"s3cret", &h, b"{\"a\":2}\n"));
        assert!(!verify_webhook(b"other", &h, b"{\"a\":1}\n"));
        assert!(!verify_webhook(b"s3cret", "t=1,v1=00", b"{\"a\":1}\n"));
        assert!(!verify_webhook(b"s3cret", "garbage", b""));
    }
}
