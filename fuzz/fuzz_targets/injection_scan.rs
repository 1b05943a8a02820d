//! The input layer never panics and stays within its byte budget, whatever the request holds.
#![no_main]

use std::sync::OnceLock;

use edgeguard::input::injection::{InjectionScanner, Source};
use edgeguard::input::sanitize::{sanitize, skeleton};
use libfuzzer_sys::fuzz_target;

fn scanner() -> Option<&'static InjectionScanner> {
    static S: OnceLock<Option<InjectionScanner>> = OnceLock::new();
    S.get_or_init(|| InjectionScanner::new().ok()).as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(s) = scanner() else { return };
    let text = String::from_utf8_lossy(data);
    let clean = sanitize(&text);
    let _ = skeleton(&clean.text);
    let v = s.scan([(Source::User, clean.text.as_str()), (Source::Hidden, clean.hidden.as_str())]);
    assert!((0.0..=1.0).contains(&v.score));
    // The model's score is a probability too, and the combined score never falls below it.
    if let Some(m) = v.model {
        assert!((0.0..=1.0).contains(&m) && v.score + 1e-9 >= m);
    }
    assert!(v.scanned <= s.budget);
});
