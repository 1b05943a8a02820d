//! Strict request parsing never panics and never accepts more than its caps.
#![no_main]

use edgeguard::protocol::{check_chat_request, json_depth, parse_body, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_body(data, 1 << 16, 16) {
        assert!(json_depth(data) <= 16);
        let _ = check_chat_request(Protocol::OpenAiChat, &body);
    }
});
