//! Streaming redaction equals one-shot redaction for every split, on arbitrary bytes.
#![no_main]

use std::sync::OnceLock;

use edgeguard::output::{catalog, Action, CatalogConfig, Scanner};
use libfuzzer_sys::fuzz_target;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| {
        let cfg = CatalogConfig {
            canaries: vec!["EGCANARY-0001".into()],
            fingerprints: vec!["You are the billing assistant".into()],
            custom: vec![],
            actions: vec![("ipv4".into(), Action::Redact), ("ipv6".into(), Action::Redact)],
        };
        Scanner::new(catalog(&cfg).unwrap_or_default(), 256)
            .with_fingerprint_key(Some(b"fuzz-audit-key".to_vec()))
    })
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the split points; the rest is the text.
    if data.len() < 4 {
        return;
    }
    let (ctl, text) = data.split_at(4);
    let s = scanner();
    let lossy = String::from_utf8_lossy(text);
    let one = s.redact(&lossy);
    let mut r = s.stream();
    let mut out = String::new();
    let mut i = 0;
    let mut k = 0;
    while i < text.len() {
        let step = 1 + usize::from(ctl[k % 4]) % 17;
        let end = (i + step).min(text.len());
        r.push_bytes(&text[i..end], &mut out);
        i = end;
        k += 1;
    }
    r.finish(&mut out);
    assert_eq!(out, one.text);
    assert_eq!(r.findings(), &one.findings[..]);
});
