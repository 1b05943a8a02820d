//! The SSE filters never panic and always end in a final state, whatever the origin sends.
#![no_main]

use std::sync::OnceLock;

use edgeguard::output::filter::{Outcome, StreamFilter};
use edgeguard::output::{catalog, CatalogConfig, Scanner};
use edgeguard::protocol::Protocol;
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::new(catalog(&CatalogConfig::default()).unwrap_or_default(), 256))
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let proto = Protocol::ALL[usize::from(data[0]) % Protocol::ALL.len()];
    let mut f = StreamFilter::new(scanner(), proto);
    let mut out = Vec::new();
    for chunk in data[1..].chunks(1 + usize::from(data[0] >> 1)) {
        f.feed(chunk, &mut out);
    }
    f.end(&mut out);
    assert_ne!(f.outcome(), Outcome::Open);
});
