//! Streaming redaction equals one-shot redaction for every split, and known values never leak.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeguard::output::{catalog, Action, CatalogConfig, Scanner};
use proptest::prelude::*;

const CANARY: &str = "EG-CANARY-5f1c9a7e";
const FINGERPRINT: &str = "You are Aurora, the billing assistant of Northwind";

fn scanner_with(holdback: usize, actions: Vec<(String, Action)>) -> Scanner {
    let cfg = CatalogConfig {
        canaries: vec![CANARY.to_string()],
        fingerprints: vec![FINGERPRINT.to_string()],
        custom: vec![],
        actions,
    };
    // With an audit key, so that every comparison below also compares the fingerprints.
    Scanner::new(catalog(&cfg).unwrap(), holdback)
        .with_fingerprint_key(Some(b"redaction-test-audit-key".to_vec()))
}

fn scanner() -> Scanner {
    // Canary and fingerprint redact here so that the rest of the text stays comparable.
    scanner_with(
        256,
        vec![
            ("canary".into(), Action::Redact),
            ("system_prompt_leak".into(), Action::Redact),
            ("ipv4".into(), Action::Redact),
        ],
    )
}

const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yL4Wn2ZPnBNkZ7zG9DJ1p3N0r4I1ggNJx0VpIbDnbi0B1cJpMAK+\n-----END RSA PRIVATE KEY-----";

/// Pieces that stress every detector: values, near misses, separators, non-ASCII text.
fn fragments() -> Vec<&'static str> {
    vec![
        "AKIAZ3MSJV4WWNKWW5FG",
        "AKIAZ3MSJV4WWNKWW5F",
        "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",
        "ghp_short",
        "sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0",
        "sk-learn",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJnotajwt",
        "sk_live_51HqLyjWDarjtT1zdp7dcXYZ0aBcDeFgHiJ",
        PEM,
        "-----BEGIN PUBLIC KEY-----",
        "alice.smith@northwind-mail.io",
        "bob@",
        "@example.org",
        "4111 1111 1111 1111",
        "4111-1111-1111-1112",
        "5500 0000 0000 0004",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "536-22-8727",
        "000-12-3456",
        "+1 415 555 2671",
        "(415) 555-2671",
        "192.168.10.20",
        "password = \"h7Gk29fLq0Xz\"",
        "api_key=Zx81LmQ0pR7tVw2Y",
        CANARY,
        "EG-CANARY-",
        FINGERPRINT,
        "You are Aurora",
        " ", "  ", "\n", ".", ",", "-", ":", "=", "\"", "(", ")", "+", "@", "_", "/",
        "the", "hello", "world", "2023", "12", "über", "日本語", "naïve", "🦀", "—",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        // Obfuscation: invisible and combining characters, other spaces and hyphens,
        // full-width and look-alike letters, ligatures; each folds inside a value.
        "\u{200B}", "\u{00AD}", "\u{FE0F}", "\u{0301}", "\u{00A0}", "\u{2011}", "\u{FF20}",
        "\u{FF21}", "\u{0410}", "\u{FB01}", "x", "AKIA\u{200B}Z3MSJV",
        // PEM headers with and without a body.
        "-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----\n", "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0",
        "-----END RSA PRIVATE KEY-----",
        // Assignments, quotes, paths and digits after separators.
        "=\"_auth='890/loca ", "_auth=", "'", "890/loca", "pass:", "/", "token=\"", "9z8y7x6w",
    ]
}

fn text_strategy() -> impl Strategy<Value = String> {
    let frags = fragments();
    prop::collection::vec(prop::sample::select(frags), 0..24).prop_map(|v| v.concat())
}

fn stream_bytes(
    scanner: &Scanner,
    bytes: &[u8],
    cuts: &[usize],
) -> (String, Vec<edgeguard::output::Finding>, bool) {
    let mut r = scanner.stream();
    let mut out = String::new();
    let mut last = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    for p in points {
        r.push_bytes(&bytes[last..p], &mut out);
        last = p;
    }
    r.push_bytes(&bytes[last..], &mut out);
    r.finish(&mut out);
    (out, r.take_findings(), r.blocked())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn stream_equals_one_shot(text in text_strategy(), cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let s = scanner();
        let one = s.redact(&text);
        let (out, findings, blocked) = stream_bytes(&s, text.as_bytes(), &cuts);
        prop_assert_eq!(&out, &one.text);
        prop_assert_eq!(findings, one.findings);
        prop_assert_eq!(blocked, one.blocked);
    }

    #[test]
    fn byte_by_byte_equals_one_shot(text in text_strategy()) {
        let s = scanner();
        let one = s.redact(&text);
        let cuts: Vec<usize> = (0..=text.len()).collect();
        let (out, findings, _) = stream_bytes(&s, text.as_bytes(), &cuts);
        prop_assert_eq!(&out, &one.text);
        prop_assert_eq!(findings, one.findings);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree(bytes in prop::collection::vec(any::<u8>(), 0..600), cuts in prop::collection::vec(any::<usize>(), 0..20)) {
        let s = scanner();
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        let one = s.redact(&lossy);
        let (out, findings, _) = stream_bytes(&s, &bytes, &cuts);
        prop_assert_eq!(&out, &one.text);
        prop_assert_eq!(findings, one.findings);
    }

    #[test]
    fn small_holdback_still_agrees(text in text_strategy(), cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let s = scanner_with(256, vec![]);
        let one = s.redact(&text);
        let (out, findings, blocked) = stream_bytes(&s, text.as_bytes(), &cuts);
        prop_assert_eq!(&out, &one.text);
        prop_assert_eq!(findings, one.findings);
        prop_assert_eq!(blocked, one.blocked);
    }

    #[test]
    fn values_never_reach_the_output(prefix in "[a-z ]{0,12}", suffix in "[a-z .]{0,12}", which in 0usize..9, cuts in prop::collection::vec(any::<usize>(), 0..30)) {
        let values = [
            "AKIAZ3MSJV4WWNKWW5FG",
            "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",
            "alice.smith@northwind-mail.io",
            "4111 1111 1111 1111",
            "DE89 3704 0044 0532 0130 00",
            "536-22-8727",
            PEM,
            CANARY,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ];
        let value = values[which];
        let text = format!("{prefix} {value} {suffix}");
        let s = scanner();
        let (out, findings, _) = stream_bytes(&s, text.as_bytes(), &cuts);
        prop_assert!(!out.contains(value), "value leaked: {out}");
        prop_assert!(!findings.is_empty());
        // No fragment of a secret's distinctive middle leaks either.
        let mid = &value[4..value.len().min(16)];
        prop_assert!(!out.contains(mid), "fragment leaked: {out}");
    }
}

#[test]
fn plain_text_is_released_without_waiting() {
    let s = scanner();
    let mut r = s.stream();
    let mut out = String::new();
    for tok in [
        "Hello", ",", " world", ".", " The", " answer", " is", " 42", ".\n",
    ] {
        r.push_str(tok, &mut out);
    }
    // Everything but a trailing word that could still grow is out before the stream ends.
    assert_eq!(out, "Hello, world. The answer is 42.\n");
    r.finish(&mut out);
    assert_eq!(out, "Hello, world. The answer is 42.\n");
}

#[test]
fn only_the_unfinished_word_is_held() {
    let s = scanner();
    let mut r = s.stream();
    let mut out = String::new();
    r.push_str("Contact us at support", &mut out);
    assert_eq!(out, "Contact us at ");
    r.push_str("@northwind-mail.io today", &mut out);
    assert_eq!(out, "Contact us at [REDACTED:email] ");
    r.finish(&mut out);
    assert_eq!(out, "Contact us at [REDACTED:email] today");
}

#[test]
fn lower_case_prose_goes_out_word_by_word() {
    // IBANs may be written in lower case and in groups, so prose is of their class; their
    // runs begin at a country code and check digits, and only what may still begin one
    // waits.
    let s = scanner();
    let mut r = s.stream();
    let mut out = String::new();
    let mut sent = String::new();
    for word in "so we moved the boxes and then some more of it to ".split_inclusive(' ') {
        r.push_str(word, &mut out);
        sent.push_str(word);
        assert_eq!(out, sent, "held after {word:?}");
    }
    r.push_str("de89 3704", &mut out);
    assert_eq!(out, sent);
    r.push_str(" 0044 0532 0130 00 today", &mut out);
    r.finish(&mut out);
    assert_eq!(out, format!("{sent}[REDACTED:iban] today"));
}

#[test]
fn pem_body_never_escapes_even_when_long() {
    let s = scanner();
    let body: String =
        "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n".repeat(60);
    let text = format!("key:\n-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\ndone");
    let mut r = s.stream();
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(7) {
        r.push_bytes(chunk, &mut out);
        assert!(!out.contains("MIIE"), "key body leaked");
        assert!(r.held() <= 512, "held {} bytes", r.held());
    }
    r.finish(&mut out);
    assert_eq!(out, "key:\n[REDACTED:private_key]\ndone");
}

#[test]
fn block_stops_the_stream_before_the_value() {
    let s = scanner_with(512, vec![]);
    let mut r = s.stream();
    let mut out = String::new();
    r.push_str("The secret code is EG-CANA", &mut out);
    r.push_str("RY-5f1c9a7e and more", &mut out);
    r.finish(&mut out);
    assert!(r.blocked());
    assert_eq!(out, "The secret code is ");
}

#[test]
fn monitor_passes_values_and_reports_them() {
    let s = scanner_with(512, vec![("email".into(), Action::Monitor)]);
    let one = s.redact("mail alice@northwind-mail.io now");
    assert_eq!(one.text, "mail alice@northwind-mail.io now");
    assert_eq!(one.findings.len(), 1);
    assert_eq!(one.findings[0].detector, "email");
    assert_eq!((one.findings[0].start, one.findings[0].end), (5, 28));
}

#[test]
fn validators_reject_lookalikes() {
    let s = scanner();
    for benign in [
        "4111 1111 1111 1112",
        "GB82WEST12345698765433",
        "000-12-3456",
        "666-12-3456",
        "version 1.2.3",
        "call me at 12",
        "sk-learn is a library",
        "eyJ is how JSON starts in base64",
    ] {
        let r = s.redact(benign);
        assert!(r.findings.is_empty(), "{benign}: {:?}", r.findings);
    }
}

/// A PEM header with no body hides nothing after it; with a body, everything to the END line.
#[test]
fn pem_header_without_body_releases_the_answer() {
    let s = scanner();
    let text = "A PEM file begins with -----BEGIN PRIVATE KEY----- and then the base64 body, \
                which you must never paste anywhere. More text follows here, all of it visible.";
    let one = s.redact(text);
    assert_eq!(one.text, text, "{:?}", one.findings);
    let b = text.as_bytes();
    for chunk in [1, 3, 7, 64] {
        let cuts: Vec<usize> = (0..=b.len()).step_by(chunk).collect();
        let (out, _, _) = stream_bytes(&s, b, &cuts);
        assert_eq!(out, text, "pieces of {chunk}");
    }
    // What is held waits a bounded window, not to the end: the text well after the header
    // leaves before the stream ends.
    let mut r = s.stream();
    let mut out = String::new();
    r.push_str(text, &mut out);
    assert!(out.contains("then the base64 body"), "{out:?}");
}

/// A value right after a quoted assignment whose `=` ends the name's run: the verdict must not
/// depend on where a scan resumed (it once did: a scan resumed past the gating `=`).
#[test]
fn assignment_after_a_quote_is_split_independent() {
    let s = scanner();
    for text in [
        "=\"_auth='890/loca ",
        "config: =\"_auth='9z8y7x6w0/path done",
        "536-22-8727=\"_auth='890/loca x",
        "536-22-8727=\"_auth='890/loca xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ",
    ] {
        let one = s.redact(text);
        let b = text.as_bytes();
        for chunk in 1..=17 {
            let cuts: Vec<usize> = (0..=b.len()).step_by(chunk).collect();
            let (out, findings, _) = stream_bytes(&s, b, &cuts);
            assert_eq!(out, one.text, "{text:?} in pieces of {chunk}");
            assert_eq!(findings, one.findings, "{text:?} in pieces of {chunk}");
        }
        for c1 in 0..=b.len() {
            for c2 in c1..=b.len() {
                let (out, _, _) = stream_bytes(&s, b, &[c1, c2]);
                assert_eq!(out, one.text, "{text:?} cut at {c1} and {c2}");
            }
        }
    }
}

#[test]
fn fingerprints_name_the_value_whatever_its_spelling() {
    let s = scanner();
    let plain = s.redact("key AKIAZ3MSJV4WWNKWW5FG here");
    // Full-width letters and a zero-width space inside: the same key to the detectors.
    let disguised = s.redact("key \u{FF21}KIAZ3MSJV4\u{200B}WWNKWW5FG here");
    let fp = |r: &edgeguard::output::Redaction| r.findings[0].fingerprint.clone().unwrap();
    assert_eq!(fp(&plain), fp(&disguised));
    assert_eq!(
        fp(&plain),
        edgeguard::audit::sign::fingerprint(
            b"redaction-test-audit-key",
            "aws_access_key",
            "AKIAZ3MSJV4WWNKWW5FG"
        )
    );
    let other = s.redact("key AKIAZ3MSJV4WWNKWW5FH here");
    assert_ne!(fp(&plain), fp(&other));
    // Streamed byte by byte: the same fingerprint.
    let text = "key \u{FF21}KIAZ3MSJV4\u{200B}WWNKWW5FG here";
    let cuts: Vec<usize> = (0..=text.len()).collect();
    let (_, findings, _) = stream_bytes(&s, text.as_bytes(), &cuts);
    assert_eq!(findings[0].fingerprint, Some(fp(&plain)));
    // Without a key there is no fingerprint.
    let bare = Scanner::new(catalog(&CatalogConfig::default()).unwrap(), 256);
    assert!(bare.redact("key AKIAZ3MSJV4WWNKWW5FG").findings[0]
        .fingerprint
        .is_none());
}
