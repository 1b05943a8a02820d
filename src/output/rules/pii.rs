//! Personal data: payment cards, US social security numbers, IBANs, e-mail addresses, phone
//! numbers and IP addresses. Each is a value inside a run of its character class, shaped by a
//! regex and decided by a validator.

use super::{re, Rule, Spec};
use crate::output::detectors::{Action, Category};
use crate::output::matcher::{ByteSet, Head, Lookback, Matcher, RegexRun, DIGIT};
use crate::output::shapes;

const EMAIL_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9._%+@-");
const ALNUM: ByteSet = ByteSet::from_spec(b"A-Za-z0-9");
const PHONE_CLASS: ByteSet = ByteSet::from_spec(b"0-9 ()+.-");
const PHONE_START: ByteSet = ByteSet::from_spec(b"0-9+(");
const CARD_CLASS: ByteSet = ByteSet::from_spec(b"0-9 -");
const SSN_CLASS: ByteSet = ByteSet::from_spec(b"0-9 .-");
const IBAN_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9 -");
const LETTER: ByteSet = ByteSet::from_spec(b"A-Za-z");
const IPV4_CLASS: ByteSet = ByteSet::from_spec(b"0-9.");
const IPV6_CLASS: ByteSet = ByteSet::from_spec(b"0-9A-Fa-f:.");
const IPV6_START: ByteSet = ByteSet::from_spec(b"0-9A-Fa-f:");
const COLON: ByteSet = ByteSet::from_spec(b":");

pub const RULES: &[Rule] = &[
    Rule {
        id: "credit_card",
        category: Category::Pii,
        about: "Payment card numbers: 12 to 19 digits in groups, Luhn and issuer ranges.",
        action: Action::Redact,
        claims: &["CREDIT_CARD"],
        spec: Spec::Run {
            pattern: r"[0-9]{4}(?:[ -]?[0-9]{2,7}){1,4}|[0-9]{12,19}",
            class: CARD_CLASS,
            start: DIGIT,
            trigger: None,
            validate: valid_card,
            min_len: 12,
            min_digits: 12,
            head: None,
            shrink: true,
        },
        examples: &[
            "card 4111 1111 1111 1111 exp 12/29",
            "5500-0000-0000-0004",
            "4111\u{00A0}1111\u{00A0}1111\u{00A0}1111",
            "4111\u{2011}1111\u{2011}1111\u{2011}1111",
        ],
        counter_examples: &[
            "4111-1111-1111-1112",
            "order 1234 5678",
        ],
    },
    Rule {
        id: "us_ssn",
        category: Category::Pii,
        about: "US social security numbers written as such (3-2-4 digits, one separator), valid ranges, published examples excluded.",
        action: Action::Redact,
        claims: &["US_SSN"],
        spec: Spec::Run {
            pattern: shapes::SSN,
            class: SSN_CLASS,
            start: DIGIT,
            trigger: None,
            validate: valid_ssn,
            min_len: 11,
            min_digits: 9,
            head: None,
            shrink: true,
        },
        examples: &["SSN: 536-22-8727", "on file: 536 22 8727.", "078.05.1123"],
        counter_examples: &[
            "000-12-3456",
            "078-05-1120",
            "666-12-3456",
            "pub const NS_GET_NSTYPE: u32 = 536917763;",
            "17151 2450 Main Street",
            "Boston, MA 02110-1301, USA",
            "536-22 8727",
        ],
    },
    Rule {
        id: "us_ssn",
        category: Category::Pii,
        about: "Nine digits in any grouping (078051121, 07805-1121) only right after a social security context (SSN, social security number).",
        action: Action::Redact,
        claims: &["US_SSN"],
        spec: Spec::Built(ssn_in_context),
        examples: &[
            "SSN 536228727",
            "Social Security Number: 07805-1121",
            "her social security no. is 078-051121",
        ],
        counter_examples: &[
            "order 536228727",
            "SSN 078051120",
            "social security numbers have nine digits; 536228727 is a count",
        ],
    },
    Rule {
        id: "iban",
        category: Category::Pii,
        about: "International bank account numbers in upper or lower case, grouped in fours or as one word: country length and the mod-97 check.",
        action: Action::Redact,
        claims: &["IBAN_CODE"],
        spec: Spec::Run {
            pattern: shapes::IBAN,
            class: IBAN_CLASS,
            start: LETTER,
            trigger: Some(DIGIT),
            validate: valid_iban,
            min_len: 15,
            min_digits: 2,
            // The country code and check digits, at the start of a word. Runs begin there,
            // so lower-case prose around them (this class's stretches) is never held back
            // or looked at.
            head: Some(Head {
                before: LETTER,
                letters: 2,
                digits: 2,
                // 34 characters and a separator after each group of four.
                reach: 42,
            }),
            shrink: true,
        },
        // (Norway's are the shortest: exactly `min_len`.)
        examples: &[
            "IBAN DE89 3704 0044 0532 0130 00.",
            "GB82WEST12345698765432",
            "NO9386011117947",
            "iban de89370400440532013000.",
            "to gb82 west 1234 5698 7654 32 today",
            "pay ab12 then de89-3704-0044-0532-0130-00 please",
            // (Russia's are the longest: 33 characters, 41 grouped, within `reach`.)
            "RU02 0445 2560 0407 0281 0412 3456 7890 1",
        ],
        counter_examples: &[
            "DE89 3704 0044 0532 0130 01",
            "GB82WEST1234",
            "de89370400440532013001",
            "xde89370400440532013000",
            "de89370400440532013000a",
            "sha256 ae12f0a9c3b4d5e6f7a8b9c0d1",
            "de89 3704 0044 0532 0130 01 and more words here",
            "Gb82 West 1234 5698 7654 32",
            "De89370400440532013000",
        ],
    },
    Rule {
        id: "email",
        category: Category::Pii,
        about: "E-mail addresses.",
        action: Action::Redact,
        claims: &["EMAIL_ADDRESS"],
        spec: Spec::Run {
            pattern: r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}",
            class: EMAIL_CLASS,
            start: ALNUM,
            trigger: Some(ByteSet::from_spec(b"@")),
            validate: valid_email,
            min_len: 6,
            min_digits: 0,
            head: None,
            shrink: true,
        },
        examples: &[
            "write to alice.smith@northwind-mail.io today",
            "bob+tag@mail.corp.io",
            "alice\u{FF20}northwind-mail.io",
            "ali\u{200B}ce@north\u{00AD}wind.io",
        ],
        counter_examples: &[
            "bob@",
            "@example.org",
            "user@localhost",
            "write to alice.smith@example.com today",
            "ops@mail.example",
            "test@app.test",
            "oyvindln@users.noreply.github.com",
            "no-reply@northwind-mail.io",
        ],
    },
    Rule {
        id: "email_reserved",
        category: Category::Pii,
        about: "E-mail addresses at reserved example domains (RFC 2606, RFC 6761) and no-reply senders: not personal data, so off by default; DETECTOR_ACTIONS can turn them on.",
        action: Action::Off,
        claims: &[],
        spec: Spec::Run {
            pattern: r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}",
            class: EMAIL_CLASS,
            start: ALNUM,
            trigger: Some(ByteSet::from_spec(b"@")),
            validate: reserved_email,
            min_len: 6,
            min_digits: 0,
            head: None,
            shrink: true,
        },
        examples: &[
            "write to alice.smith@example.com today",
            "noreply@northwind-mail.io",
        ],
        counter_examples: &["alice.smith@northwind-mail.io"],
    },
    Rule {
        id: "phone",
        category: Category::Pii,
        about: "Phone numbers in E.164 and national formats.",
        action: Action::Redact,
        claims: &["PHONE_NUMBER"],
        spec: Spec::Run {
            pattern: shapes::PHONE,
            class: PHONE_CLASS,
            start: PHONE_START,
            trigger: Some(DIGIT),
            validate: valid_phone,
            min_len: 7,
            min_digits: 7,
            head: None,
            shrink: false,
        },
        examples: &[
            "call +1 415 555 2671 now",
            "(415) 555-2671",
            "415.555.2671",
            "+1 (415) 555-2671",
            "01 42 68 53 00",
            "030 12345678",
        ],
        counter_examples: &[
            "in 2023 we",
            "page 12",
            "at 2023-07-16 02:30:00 UTC",
            "epoch 1970-01-01 00:00:00",
            "from 23.251.146.189 port",
            "limit 59.999999999 s",
            "r-xp 00000000 00:00 0",
            "write_u32(1205419366)",
            "see /20031008-00/?p=42",
            "12 34 56 78 90",
            "on 08.03.2015 12:30",
            "\"+262143-01-01T01:59:59Z\"",
            "check(\"+12345678\")",
            "30 1D 06 09 60 86 48 01 65 03 04 01 2A",
            "at 1800-11-15 01:15:37",
            "pub const HWCAP_FPRCVT: u64 = 17179869184;",
            "\"9999-12-31 23:59:59 +0900\"",
        ],
    },
    Rule {
        id: "phone",
        category: Category::Pii,
        about: "Phone numbers written as bare digits (a mainland-China mobile, a 10-digit national number, E.164 without separators) right after a phone context.",
        action: Action::Redact,
        claims: &["PHONE_NUMBER"],
        spec: Spec::Built(phone_in_context),
        examples: &[
            "My CN number is 13812345678",
            "Phone: 4155550132",
            "tel. +14155550132",
        ],
        counter_examples: &[
            "pub const BTRFS_FLAG: u64 = 17179869184;",
            "see issue 13924913068",
            "Phone: 1234567890",
            "phone numbers are 10 digits; 4155550132 is an id",
        ],
    },
    Rule {
        id: "ipv4",
        category: Category::Pii,
        about: "IPv4 addresses (off by default: most are not personal data).",
        action: Action::Off,
        claims: &["IP_ADDRESS"],
        spec: Spec::Run {
            pattern: r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
            class: IPV4_CLASS,
            start: DIGIT,
            trigger: None,
            validate: valid_ipv4,
            min_len: 7,
            min_digits: 4,
            head: None,
            shrink: true,
        },
        examples: &["host 192.168.10.20 is up"],
        counter_examples: &["999.1.1.1", "1.2.3"],
    },
    Rule {
        id: "ipv6",
        category: Category::Pii,
        about: "IPv6 addresses (off by default). Never shrunk: cutting one at a dot leaves another valid address.",
        action: Action::Off,
        claims: &["IP_ADDRESS"],
        spec: Spec::Run {
            pattern: r"[0-9A-Fa-f:]*:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f:]{2,39}",
            class: IPV6_CLASS,
            start: IPV6_START,
            trigger: Some(COLON),
            validate: valid_ipv6,
            min_len: 2,
            min_digits: 0,
            head: None,
            shrink: false,
        },
        examples: &["addr 2001:db8::8a2e:370:7334 ok"],
        counter_examples: &["at 12:30 today"],
    },
];

// ---------------------------------------------------------------------------------------------
// Validators.

pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn digits_of(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

fn valid_card(s: &str) -> bool {
    // One separator style, used consistently (or none).
    let seps: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let d = digits_of(s);
    if !(12..=19).contains(&d.len()) || !luhn(&d) {
        return false;
    }
    if d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),                          // Visa
        5 => ((51..=55).contains(&p2) || p4 == 5019) && len == 16, // Mastercard, Dankort
        2 => (2221..=2720).contains(&p4) && len == 16,             // Mastercard 2-series
        3 => {
            ((p2 == 34 || p2 == 37) && len == 15)                  // Amex
                || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&len) // Diners
                || (3528..=3589).contains(&p4) && (16..=19).contains(&len) // JCB
        }
        6 => {
            (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622126..=622925).contains(&p6))
                && (16..=19).contains(&len)                       // Discover
                || p2 == 62 && (16..=19).contains(&len)            // UnionPay
                || matches!(p4, 6304 | 6759 | 6761 | 6762 | 6763) && (12..=19).contains(&len)
            // Maestro
        }
        1 => len == 15, // UATP
        _ => false,
    }
}

/// The look-back of a social-security number: its name, then words like "is" or "number" and a
/// colon, on the same line. The definition; the detector matches `SSN_CONTEXT_REV`.
#[cfg(test)]
const SSN_CONTEXT: &str = r"(?i)(?:\bssns?|social[ -]security(?:[ -](?:numbers?|nos?\.?|#))?|\bss ?#)[ \t]*(?:(?:is|was|of|number|no\.?|#)[ \t]*)*[:=]?[ \t]*$";
/// `SSN_CONTEXT` read backwards, anchored at the look-back's end.
const SSN_CONTEXT_REV: &str = r"(?i)^[ \t]*[:=]?(?:[ \t]*(?:si|saw|fo|rebmun|\.?on|#))*[ \t]*(?:s?nss\b|(?:(?:s?rebmun|\.?s?on|#)[ -])?ytiruces[ -]laicos|# ?ss\b)";

/// Nine digits in any grouping, after a social-security context within the same line.
fn ssn_in_context() -> Option<Matcher> {
    let r = re(shapes::SSN_ANY)?;
    number_after(
        RegexRun::new(SSN_CLASS, DIGIT, r)
            .shrink()
            .context_words(&["ss", "social"]),
        Lookback::reversed(re(SSN_CONTEXT_REV)?),
        valid_ssn,
        9,
    )
}

/// A number that counts only right after its context on the same line: at least `digits`
/// digits, not touching letters or digits, accepted by `validate`.
fn number_after(
    run: RegexRun,
    context: Lookback,
    validate: fn(&str) -> bool,
    digits: usize,
) -> Option<Matcher> {
    let run = run
        .validate(validate)
        .bounded()
        .context(context)
        .min_len(digits)
        .min_digits(digits);
    Some(Matcher::Regex(Box::new(run)))
}

fn valid_ssn(s: &str) -> bool {
    let d = digits_of(s);
    let seps: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if d.len() != 9 || seps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    // Runs of one digit, counting sequences, and numbers published as examples (the
    // Woolworth wallet card 078-05-1120, the 219-09-9999 advertisement).
    let plain: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    !(d.iter().all(|&x| x == d[0])
        || ["123456789", "987654321", "078051120", "219099999"].contains(&plain.as_str()))
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// An IBAN written in one case throughout (`GB82WEST...` or `gb82west...`, not `Gb82West...`),
/// with its country's length, groups of four and the mod-97 check.
fn valid_iban(s: &str) -> bool {
    if s.bytes().any(|b| b.is_ascii_lowercase()) && s.bytes().any(|b| b.is_ascii_uppercase()) {
        return false;
    }
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'-'))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if compact.len() < 15 {
        return false;
    }
    let Ok(country) = std::str::from_utf8(&compact[..2]) else {
        return false;
    };
    match IBAN_LENGTHS.iter().find(|(c, _)| *c == country) {
        Some((_, l)) if *l == compact.len() => {}
        _ => return false,
    }
    // Spaces, if any, every four characters.
    if s.contains([' ', '-']) {
        let groups: Vec<&str> = s.split([' ', '-']).collect();
        if groups[..groups.len() - 1].iter().any(|g| g.len() != 4) {
            return false;
        }
    }
    let rearranged = compact[4..].iter().chain(compact[..4].iter());
    let mut rem: u32 = 0;
    for &b in rearranged {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn well_formed_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let tld_ok = domain
        .rsplit_once('.')
        .is_some_and(|(_, tld)| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains("..")
        && !domain.starts_with('-')
        && tld_ok
}

/// Documentation domains (RFC 2606 and RFC 6761: example.com/.net/.org, .example, .test,
/// .invalid, .localhost) and no-reply senders (`noreply@`, `no-reply@`,
/// a `noreply` domain label as in `users.noreply.github.com`).
fn reserved_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    let local = local.to_ascii_lowercase();
    let under = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    [
        "example.com",
        "example.net",
        "example.org",
        "example",
        "test",
        "invalid",
        "localhost",
    ]
    .iter()
    .any(|d| under(d))
        || domain
            .split('.')
            .any(|l| matches!(l, "noreply" | "no-reply"))
        || ["noreply", "no-reply", "donotreply", "do-not-reply"]
            .iter()
            .any(|p| local == *p || local.starts_with(&format!("{p}+")))
}

fn valid_email(s: &str) -> bool {
    well_formed_email(s) && !reserved_address(s)
}

fn reserved_email(s: &str) -> bool {
    well_formed_email(s) && reserved_address(s)
}

fn valid_phone(s: &str) -> bool {
    let d = digits_of(s);
    let opens = s.bytes().filter(|&b| b == b'(').count();
    let closes = s.bytes().filter(|&b| b == b')').count();
    if d.len() < 7 || opens != closes || opens > 1 || s.ends_with(['-', '.', ' ', '(']) {
        return false;
    }
    // Parentheses hold an area code of 1-4 digits, first (after a country code): `(415)`, not
    // a call's argument `(1205419366)`.
    if let (Some(o), Some(c)) = (s.find('('), s.find(')')) {
        let inner = s.get(o + 1..c).unwrap_or("");
        let before = s.get(..o).unwrap_or("").trim_end();
        let cc = before.is_empty()
            || (before.starts_with('+') && before[1..].bytes().all(|b| b.is_ascii_digit()));
        if c < o
            || !(1..=4).contains(&inner.len())
            || !inner.bytes().all(|b| b.is_ascii_digit())
            || !cc
        {
            return false;
        }
    }
    let groups: Vec<&str> = s
        .split([' ', '-', '.', '(', ')'])
        .filter(|g| !g.is_empty())
        .collect();
    if looks_like_date(&groups) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    // Dots separate a whole number (415.555.2671), never with other separators, never one
    // dot (a decimal), never four groups of at most three digits (an IPv4 address).
    if s.contains('.') {
        let mixed = s.bytes().any(|b| matches!(b, b' ' | b'-' | b'(' | b')'));
        let ipv4 = groups.len() == 4 && groups.iter().all(|g| g.len() <= 3);
        if mixed || groups.len() < 3 || ipv4 {
            return false;
        }
    }
    // Counting sequences are test data (12345678, 0123456789).
    if d.windows(2).all(|w| w[1] == (w[0] + 1) % 10) {
        return false;
    }
    if let Some(rest) = s.strip_prefix('+') {
        // E.164: country code then up to 15 digits in all; written without separators, at
        // least 10 (shorter ones are other numbers with a sign).
        let bare = rest.bytes().all(|b| b.is_ascii_digit());
        let min = if bare { 10 } else { 8 };
        return (min..=15).contains(&d.len()) && d[0] != 0;
    }
    // National formats: 10 or 11 digits with separators, or 9 or more after a 0 trunk
    // prefix with separators. Digits alone are a phone number only after a phone context
    // (the next rule).
    let has_sep = s.bytes().any(|b| matches!(b, b' ' | b'-' | b'.' | b'('));
    if !has_sep {
        return false;
    }
    let trunk = d[0] == 0 && d[1] != 0 && (9..=11).contains(&d.len());
    if !(10..=11).contains(&d.len()) && !trunk {
        return false;
    }
    // `00` starts an international call, never a national number (`00000000 00`).
    if d[0] == 0 && d[1] == 0 {
        return false;
    }
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    // Subscriber groups are 2-4 digits; a longer one only last, after a trunk prefix
    // (030 12345678). Groups of two are a French-style number only after the trunk 0; without
    // it they are a list of numbers.
    let long_ok = |i: usize, g: usize| g <= 4 || (trunk && i + 1 == lens.len() && g <= 8);
    let pairs = lens.iter().all(|&g| g == 2);
    lens.iter().all(|&g| g >= 2)
        && lens.len() <= 5
        && lens.iter().enumerate().all(|(i, &g)| long_ok(i, g))
        && !(pairs && d[0] != 0)
}

/// The look-back of a phone number in bare digits: a phone word, then words like "is" or "no."
/// and a colon, on the same line. The definition; the detector matches `PHONE_CONTEXT_REV`.
#[cfg(test)]
const PHONE_CONTEXT: &str = r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|sms|call|number|no)(?:[ \t]+(?:is|number|no\.?|#))*[ \t]*[.:#=]?[ \t]*$";
/// `PHONE_CONTEXT` read backwards, anchored at the look-back's end.
const PHONE_CONTEXT_REV: &str = r"(?i)^[ \t]*[.:#=]?[ \t]*(?:(?:si|rebmun|\.?on|#)[ \t]+)*(?:enohp|let|enohpelet|elibom|llec|xaf|ppastahw|sms|llac|rebmun|on)\b";

/// Bare digits after a phone context within the same line.
fn phone_in_context() -> Option<Matcher> {
    let r = re(shapes::PHONE_BARE)?;
    number_after(
        RegexRun::new(PHONE_CLASS, PHONE_START, r),
        Lookback::reversed(re(PHONE_CONTEXT_REV)?),
        bare_phone,
        10,
    )
}

/// A phone number in bare digits: E.164 (`+` and 10-15 digits), a mainland-China mobile
/// (1[3-9] and 9 more digits), or 10 digits of a national number not starting with 0 or 1.
fn bare_phone(s: &str) -> bool {
    let d = digits_of(s);
    if d.windows(2).all(|w| w[1] == (w[0] + 1) % 10) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    if s.starts_with('+') {
        return (10..=15).contains(&d.len()) && d[0] != 0;
    }
    match d.len() {
        11 => d[0] == 1 && (3..=9).contains(&d[1]),
        10 => d[0] > 1,
        _ => false,
    }
}

/// Dates written with digits: a year then a month (2015-03-08, 2015 03, 20031008), or a day,
/// a month and a year (08.03.2015).
fn looks_like_date(groups: &[&str]) -> bool {
    let num = |g: &str| g.parse::<u32>().ok();
    let year = |g: &str| g.len() == 4 && num(g).is_some_and(|y| y >= 1000);
    let month = |g: &str| g.len() == 2 && num(g).is_some_and(|m| (1..=12).contains(&m));
    let day = |g: &str| (1..=2).contains(&g.len()) && num(g).is_some_and(|x| (1..=31).contains(&x));
    let day2 = |g: &str| g.len() == 2 && day(g);
    match groups {
        [y, m, ..] if year(y) && month(m) => true,
        // Years past 9999 as ISO 8601 writes them (+262143-01-01).
        [y, m, dd, ..] if y.len() > 4 && month(m) && day2(dd) => true,
        [ymd, ..] if ymd.len() == 8 && year(&ymd[..4]) && month(&ymd[4..6]) && day(&ymd[6..]) => {
            true
        }
        [a, b, y, ..] if day(a) && day(b) && year(y) => true,
        _ => false,
    }
}

fn valid_ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

fn valid_ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::rules::check_reversed_lookback;

    /// Look-backs of numbers after their context: words, joining words, separators.
    const SHAPES: &[&[&[&str]]] = &[&[
        &["", "", "x", "x ", "\n", "9", "é", "_"],
        &[
            "ssn",
            "SSNs",
            "ss",
            "ss #",
            "ss#",
            "social security",
            "Social-Security number",
            "social security nos.",
            "social security #",
            "socialsecurity",
            "phone",
            "Tel",
            "telephone",
            "mobile",
            "cell",
            "fax",
            "whatsapp",
            "sms",
            "call",
            "number",
            "no",
            "cellar",
            "",
        ],
        &["", "", " ", "  ", "\t", "\n", "x"],
        &[
            "",
            "",
            "is",
            "was",
            "of",
            "number",
            "no.",
            "no",
            "#",
            "is number",
        ],
        &["", " ", "\t", " is"],
        &["", "", ":", "=", ".", "#", "-"],
        &["", "", " ", "  ", "\t", "\n"],
    ]];

    /// The values of a rule with a head, read straight from its definition: at each head
    /// that begins a word, left to right, the first match of the pattern within the head's
    /// reach and class stretch that is not glued to a letter or digit and passes the
    /// validator (cut back at separators with `shrink`); the search goes on after a value,
    /// or at the next head.
    fn head_values(rule: &Rule, text: &str) -> Vec<(usize, usize)> {
        let Spec::Run {
            pattern,
            class,
            validate,
            min_len,
            head: Some(head),
            shrink,
            ..
        } = &rule.spec
        else {
            panic!("{}: no head", rule.id);
        };
        let re = regex_lite::Regex::new(pattern).unwrap();
        let b = text.as_bytes();
        let glued = |p: Option<usize>| {
            p.and_then(|p| b.get(p))
                .is_some_and(u8::is_ascii_alphanumeric)
        };
        let (l, d) = (head.letters, head.digits);
        let mut out = Vec::new();
        let mut h = 0;
        while h + l + d <= b.len() {
            let is_head = b[h..h + l].iter().all(|&x| head.before.has(x))
                && b[h + l..h + l + d].iter().all(u8::is_ascii_digit)
                && !glued(h.checked_sub(1));
            if !is_head {
                h += 1;
                continue;
            }
            let mut e = h;
            while e < b.len() && class.has(b[e]) {
                e += 1;
            }
            let piece = &text[h..e.min(h + head.reach)];
            let found = re
                .find_iter(piece)
                .filter(|_| piece.len() >= *min_len)
                .filter(|m| !glued((h + m.start()).checked_sub(1)))
                .find_map(|m| {
                    let s = h + m.start();
                    let mut len = Some(m.len());
                    while let Some(n) = len {
                        if n > 0 && !glued(Some(s + n)) && validate(&m.as_str()[..n]) {
                            return Some((s, s + n));
                        }
                        len = m.as_str()[..n]
                            .rfind([' ', '-', '.'])
                            .filter(|&c| *shrink && c > 0);
                    }
                    None
                });
            match found {
                Some((s, e)) => {
                    out.push((s, e));
                    h = e;
                }
                None => h += 1,
            }
        }
        out
    }

    /// A scanner with `rule` alone, redacting.
    fn scanner_of(rule: &Rule) -> crate::output::Scanner {
        use crate::output::{Action, Detector, Scanner};
        Scanner::new(
            vec![Detector {
                id: rule.id.into(),
                category: rule.category,
                action: Action::Redact,
                matcher: rule.build(&Default::default()).unwrap().unwrap(),
            }],
            64,
        )
    }

    /// A stream holds back for a head rule only the end of the text that may begin a head:
    /// letters at the start of a word, then digits.
    #[test]
    fn head_rules_hold_only_what_may_begin_a_head() {
        let rule = RULES.iter().find(|r| r.id == "iban").unwrap();
        let scanner = scanner_of(rule);
        for (text, held) in [
            ("so the boxes went", 0),
            ("so the bo", 2),
            ("so the box", 0),
            ("so the b", 1),
            ("so the bo1", 3),
            ("so the bo12 3", 6),
            ("so the box1", 0),
            ("to de89 3704 0044 0532 0130 0", 26),
            // (Words after a value may still belong to it, up to the head's reach.)
            ("to de89 3704 0044 0532 0130 00 and", 31),
            ("to de89 3704 0044 0532 0130 00 and then some more", 0),
        ] {
            let mut st = scanner.stream();
            let mut out = String::new();
            st.push_str(text, &mut out);
            assert_eq!(st.held(), held, "{text:?}: {out:?}");
        }
    }

    /// A rule with a head finds the values its definition gives ([`head_values`]), one shot,
    /// whole with the digit map and streamed. Texts are made of the rule's examples, their
    /// pieces, heads cut short and stretches of the class.
    #[test]
    fn head_rules_find_what_their_definition_gives() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        for rule in RULES {
            let Spec::Run {
                head: Some(head),
                min_digits,
                min_len,
                ..
            } = &rule.spec
            else {
                continue;
            };
            // (Head search passes over the rows after the first in a stretch of digits.)
            assert!(
                !(b'0'..=b'9').any(|d| head.before.has(d)),
                "{}: a head's letters are never digits",
                rule.id
            );
            assert!(
                *min_digits <= head.digits,
                "{}: the head's digits suffice",
                rule.id
            );
            assert!(
                *min_len <= head.reach,
                "{}: a value fits in the reach",
                rule.id
            );
            let scanner = scanner_of(rule);
            let mut pieces: Vec<String> = Vec::new();
            for ex in rule.examples.iter().chain(rule.counter_examples) {
                pieces.push(ex.to_string());
                pieces.extend(ex.split(' ').map(String::from));
                pieces.extend((1..ex.len()).filter_map(|n| ex.get(..n)).map(String::from));
            }
            let whole: Vec<&str> = rule.examples.to_vec();
            let piece = prop_oneof![
                2 => proptest::sample::select(whole).prop_map(|e| format!("{e} ")),
                3 => proptest::sample::select(pieces),
                1 => "[A-Z0-9 -]{1,8}",
                1 => "[a-z0-9 ]{1,8}",
                1 => "[a-z.,\n]{1,2}",
            ];
            let texts = proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat());
            let found = std::cell::Cell::new(0usize);
            let mut runner = TestRunner::new(Config::with_cases(2000));
            let result = runner.run(&texts, |text| {
                let want = head_values(rule, &text);
                found.set(found.get() + usize::from(!want.is_empty()));
                let spans = |r: &crate::output::Redaction| -> Vec<(usize, usize)> {
                    r.findings.iter().map(|f| (f.start, f.end)).collect()
                };
                let got = scanner.redact(&text);
                prop_assert_eq!(spans(&got), want.clone(), "{} on {:?}", rule.id, text);
                // (Whole texts read the digit map; short pieces of a stream do not.)
                let whole = scanner.redact_whole(&text);
                prop_assert_eq!(&whole.text, &got.text, "{} whole", rule.id);
                let mut st = scanner.stream();
                let mut out = String::new();
                for c in text.as_bytes().chunks(5) {
                    st.push_bytes(c, &mut out);
                }
                st.finish(&mut out);
                prop_assert_eq!(&out, &got.text, "{} streamed", rule.id);
                Ok(())
            });
            if let Err(e) = result {
                panic!("{}: {e}", rule.id);
            }
            // The texts must hold values too, not only misses.
            assert!(
                found.get() >= 500,
                "{}: only {} texts with a value",
                rule.id,
                found.get()
            );
        }
    }

    #[test]
    fn reversed_ssn_context_matches_its_definition() {
        check_reversed_lookback(SSN_CONTEXT, SSN_CONTEXT_REV, SHAPES);
    }

    #[test]
    fn reversed_phone_context_matches_its_definition() {
        check_reversed_lookback(PHONE_CONTEXT, PHONE_CONTEXT_REV, SHAPES);
    }
}
