//! Hand-written matchers for the patterns of the built-in PII rules: phone numbers, SSNs and
//! IBANs.
//!
//! The rules keep their regexes as the definition; a run detector whose regex is one of the
//! patterns here finds its matches with the function beside it instead. On real text the
//! regex engine (a PikeVM) spent more time on the digit runs of phone numbers and SSNs than
//! the rest of those detectors together, and on text with IBANs the IBAN pattern's counted
//! groups cost as much. Each function returns
//! the leftmost-first match at or after a position, as the regex does, and the property tests
//! below hold every one of them to its regex on text made of the bytes it reads.

/// The leftmost-first match at or after `from`: `(start, end)`, never empty.
pub type Finder = fn(&[u8], usize) -> Option<(usize, usize)>;

/// Phone numbers in groups (`+1 (415) 555-2671`, `01 42 68 53 00`).
pub const PHONE: &str = r"\+?\(?[0-9]{1,4}\)?(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}";
/// Bare phone digits after a phone context.
pub const PHONE_BARE: &str = r"\+?[0-9]{10,15}";
/// US social security numbers as written (one separator throughout).
pub const SSN: &str =
    r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3}\.[0-9]{2}\.[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}";
/// Nine SSN digits in any grouping after an SSN context.
pub const SSN_ANY: &str =
    r"[0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4}|[0-9]{3}-[0-9]{6}|[0-9]{5}-[0-9]{4}";

/// IBANs in either case, grouped in fours or as one word.
pub const IBAN: &str = r"[A-Za-z]{2}[0-9]{2}[ -]?(?:[A-Za-z0-9]{4}[ -]?){2,7}[A-Za-z0-9]{1,4}";

const FINDERS: &[(&str, Finder)] = &[
    (PHONE, phone),
    (PHONE_BARE, phone_bare),
    (SSN, ssn),
    (SSN_ANY, ssn_any),
    (IBAN, iban),
];

/// The hand-written matcher for `pattern`, if there is one.
pub fn finder(pattern: &str) -> Option<Finder> {
    FINDERS.iter().find(|(p, _)| *p == pattern).map(|&(_, f)| f)
}

/// Number of ASCII digits from `p` on, at most `max`.
fn digits(h: &[u8], p: usize, max: usize) -> usize {
    h.get(p..)
        .unwrap_or(&[])
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count()
}

fn is(h: &[u8], p: usize, b: u8) -> bool {
    h.get(p) == Some(&b)
}

/// The first start at or after `from` where `at` matches, with the end it gives.
fn leftmost(
    h: &[u8],
    from: usize,
    at: impl Fn(&[u8], usize) -> Option<usize>,
) -> Option<(usize, usize)> {
    (from..h.len()).find_map(|s| at(h, s).map(|e| (s, e)))
}

/// `[ .-]?\(?[0-9]{1,4}\)?` repeated greedily up to `max` times from `x`: the end and the
/// count. A group that finds no digit matches nothing: without its optional separator or
/// parenthesis, the byte it took is not a digit either.
fn phone_groups(h: &[u8], mut x: usize, max: usize) -> (usize, usize) {
    let mut n = 0;
    while n < max {
        let mut y = x;
        if h.get(y).is_some_and(|b| matches!(b, b' ' | b'.' | b'-')) {
            y += 1;
        }
        if is(h, y, b'(') {
            y += 1;
        }
        let m = digits(h, y, 4);
        if m == 0 {
            break;
        }
        y += m;
        if is(h, y, b')') {
            y += 1;
        }
        x = y;
        n += 1;
    }
    (x, n)
}

/// [`PHONE`] at `s`. The optional `+`, `(` and `)` are taken when present: leaving one out
/// leaves a byte no later part matches. The first digit group takes up to four digits; only
/// when no group can follow does it give its last digit to the first group.
fn phone_at(h: &[u8], s: usize) -> Option<usize> {
    let mut p = s;
    if is(h, p, b'+') {
        p += 1;
    }
    if is(h, p, b'(') {
        p += 1;
    }
    let r = digits(h, p, 4);
    for k in (1..=r).rev() {
        let mut q = p + k;
        if is(h, q, b')') {
            q += 1;
        }
        let (end, n) = phone_groups(h, q, 6);
        if n >= 1 {
            return Some(end);
        }
    }
    None
}

fn phone(h: &[u8], from: usize) -> Option<(usize, usize)> {
    leftmost(h, from, phone_at)
}

fn phone_bare(h: &[u8], from: usize) -> Option<(usize, usize)> {
    leftmost(h, from, |h, s| {
        let p = s + usize::from(is(h, s, b'+'));
        let n = digits(h, p, 15);
        (n >= 10).then_some(p + n)
    })
}

/// Digit groups of the given lengths, each after the given separator (`None`: none; `Some`
/// of a set: one of them if present).
fn groups(h: &[u8], s: usize, parts: &[(usize, Sep)]) -> Option<usize> {
    let mut p = s;
    for &(n, sep) in parts {
        match sep {
            Sep::None => {}
            Sep::One(b) => {
                if !is(h, p, b) {
                    return None;
                }
                p += 1;
            }
            Sep::Optional => {
                if h.get(p).is_some_and(|b| matches!(b, b'-' | b' ' | b'.')) {
                    p += 1;
                }
            }
        }
        if digits(h, p, n) < n {
            return None;
        }
        p += n;
    }
    Some(p)
}

#[derive(Clone, Copy)]
enum Sep {
    None,
    One(u8),
    /// `[- .]?`, taken when present: without it, the next byte is not a digit.
    Optional,
}

fn ssn(h: &[u8], from: usize) -> Option<(usize, usize)> {
    leftmost(h, from, |h, s| {
        [b'-', b'.', b' ']
            .iter()
            .find_map(|&b| groups(h, s, &[(3, Sep::None), (2, Sep::One(b)), (4, Sep::One(b))]))
    })
}

fn ssn_any(h: &[u8], from: usize) -> Option<(usize, usize)> {
    leftmost(h, from, |h, s| {
        groups(
            h,
            s,
            &[(3, Sep::None), (2, Sep::Optional), (4, Sep::Optional)],
        )
        .or_else(|| groups(h, s, &[(3, Sep::None), (6, Sep::One(b'-'))]))
        .or_else(|| groups(h, s, &[(5, Sep::None), (4, Sep::One(b'-'))]))
    })
}

fn iban(h: &[u8], from: usize) -> Option<(usize, usize)> {
    leftmost(h, from, |h, s| {
        let head = h.get(s..s + 4)?;
        if !(head[..2].iter().all(u8::is_ascii_alphabetic)
            && head[2..].iter().all(u8::is_ascii_digit))
        {
            return None;
        }
        iban_groups(h, past_sep(h, s + 4), 0)
    })
}

/// Past the separator at `p`, if one stands there. The pattern's separators are each taken
/// when present: without one, nothing after it matches a separator.
fn past_sep(h: &[u8], p: usize) -> usize {
    p + usize::from(h.get(p).is_some_and(|b| matches!(b, b' ' | b'-')))
}

/// `(?:[A-Za-z0-9]{4}[ -]?){2,7}[A-Za-z0-9]{1,4}` from `p` with `n` groups already taken, in
/// the regex's order of preference: one more group, else the last one to four characters.
fn iban_groups(h: &[u8], p: usize, n: usize) -> Option<usize> {
    let alnum = |q: usize| h.get(q).is_some_and(u8::is_ascii_alphanumeric);
    if n < 7 && (p..p + 4).all(alnum) {
        if let Some(e) = iban_groups(h, past_sep(h, p + 4), n + 1) {
            return Some(e);
        }
    }
    let m = (p..p + 4).take_while(|&q| alnum(q)).count();
    (n >= 2 && m >= 1).then_some(p + m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_lite::Regex;

    type Spans = Vec<(usize, usize)>;

    /// Every match of `pattern` in `hay`, by the regex and by the finder.
    fn both(pattern: &str, hay: &str) -> (Spans, Spans) {
        let re = Regex::new(pattern).unwrap();
        let want: Vec<_> = re.find_iter(hay).map(|m| (m.start(), m.end())).collect();
        let f = finder(pattern).unwrap();
        let mut got = Vec::new();
        let mut at = 0;
        while let Some((s, e)) = f(hay.as_bytes(), at) {
            assert!(
                s >= at && e > s,
                "{pattern}: bad match {s}..{e} from {at} in {hay:?}"
            );
            got.push((s, e));
            at = e;
        }
        (want, got)
    }

    #[test]
    fn every_pattern_has_its_finder() {
        for (p, _) in FINDERS {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
        assert!(finder(r"[0-9]+").is_none());
    }

    #[test]
    fn known_texts() {
        for hay in [
            "call +1 (415) 555-2671 now",
            "01 42 68 53 00",
            "1234 ",
            "12345",
            "1234) 5",
            "+(12)",
            "536-22-8727 536.22.8727 536 22 8727 536-22 8727",
            "SSN 536228727 07805-1121 078-051121",
            "+14155550132 4155550132123456789",
            "IBAN DE89 3704 0044 0532 0130 00, de89370400440532013000 gb82 west 1234 5698 7654 32",
            "ab12 de89-3704-0044-0532-0130-00 from the RU02 0445 2560 0407 0281 0412 3456 7890 1",
        ] {
            for p in [PHONE, PHONE_BARE, SSN, SSN_ANY, IBAN] {
                let (want, got) = both(p, hay);
                assert_eq!(got, want, "{p} on {hay:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn finders_equal_their_regexes(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "0", "1", "23", "456", "7890", "12345", "+", "(", ")", " ", ".", "-", "x",
                    "  ", "--", "+1", "(415)", " 555", "-2671", "\u{e9}",
                ]),
                0..24,
            ),
        ) {
            let hay = parts.concat();
            for p in [PHONE, PHONE_BARE, SSN, SSN_ANY] {
                let (want, got) = both(p, &hay);
                prop_assert_eq!(got, want, "{} on {:?}", p, hay);
            }
        }

        #[test]
        fn iban_finder_equals_its_regex(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "de", "GB", "x", "Q", "8", "89", "0", "1234", "5678", "901", "abcd", "WEST",
                    "ab1", " ", "-", "  ", ".", "\u{e9}",
                ]),
                0..30,
            ),
        ) {
            let hay = parts.concat();
            let (want, got) = both(IBAN, &hay);
            prop_assert_eq!(got, want, "on {:?}", hay);
        }
    }
}
