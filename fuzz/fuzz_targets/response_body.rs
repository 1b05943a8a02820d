//! Whole responses: the schema filter never panics, and what it returns is JSON in which no
//! planted value survives, whatever the origin's body holds.
#![no_main]

use std::sync::OnceLock;

use edgeguard::output::filter::filter_json;
use edgeguard::output::{catalog, CatalogConfig, Scanner};
use edgeguard::protocol::Protocol;
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::new(catalog(&CatalogConfig::default()).unwrap_or_default(), 256))
}

const KEY: &str = "AKIAZ3MSJV4WWNKWW5FG";

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let proto = Protocol::ALL[usize::from(data[0]) % Protocol::ALL.len()];
    // The raw bytes, and the same bytes with a key planted in every string.
    let text = String::from_utf8_lossy(&data[1..]).into_owned();
    let planted = text.replace("\"\"", &format!("\"{KEY}\""));
    for body in [text.as_bytes(), planted.as_bytes()] {
        if let Ok(f) = filter_json(scanner(), proto, body, None) {
            assert!(serde_json::from_slice::<serde_json::Value>(&f.body).is_ok());
            assert!(!String::from_utf8_lossy(&f.body).contains(KEY));
        }
    }
});
