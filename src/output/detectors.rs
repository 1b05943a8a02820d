//! The built-in output detectors: PII, secrets, canaries and system-prompt fingerprints, plus
//! custom detectors from configuration.
//!
//! Rule design follows the keyword-then-regex-then-validator pipeline: a cheap byte or prefix
//! test picks candidate runs, a bounded regex confirms the shape inside one run, and a validator
//! (Luhn, mod-97, issuer ranges, SSN ranges, JWT header, entropy) makes the decision.

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

use super::matcher::{ByteSet, Literals, Matcher, OpenEnd, RegexRun, TokenRun, Tri};

/// What a detector's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Pii,
    Secret,
    Canary,
    PromptLeak,
    Custom,
    /// A tool call naming a tool outside the key's allow-list.
    Tool,
}

/// What happens when a detector fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace the value with `[REDACTED:<id>]`.
    Redact,
    /// End the response cleanly before the value.
    Block,
    /// Let the value through and report it.
    Monitor,
    /// Do not run the detector.
    Off,
}

pub struct Detector {
    pub id: String,
    pub category: Category,
    pub action: Action,
    pub matcher: Matcher,
}

/// A custom detector from configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    pub name: String,
    pub regex: String,
    /// If set, a run must contain one of these (case-insensitive) to be examined.
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default = "default_custom_action")]
    pub action: Action,
}

fn default_custom_action() -> Action {
    Action::Redact
}

/// Settings the catalog is built from.
#[derive(Debug, Clone, Default)]
pub struct CatalogConfig {
    pub canaries: Vec<String>,
    pub fingerprints: Vec<String>,
    pub custom: Vec<CustomDetector>,
    /// Per-detector action overrides (`id -> action`).
    pub actions: Vec<(String, Action)>,
}

const EMAIL_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9._%+@-");
const ALNUM: ByteSet = ByteSet::from_spec(b"A-Za-z0-9");
const DIGIT: ByteSet = ByteSet::from_spec(b"0-9");
const PHONE_CLASS: ByteSet = ByteSet::from_spec(b"0-9 ()+.-");
const PHONE_START: ByteSet = ByteSet::from_spec(b"0-9+(");
const CARD_CLASS: ByteSet = ByteSet::from_spec(b"0-9 -");
const SSN_CLASS: ByteSet = ByteSet::from_spec(b"0-9 .-");
const IBAN_CLASS: ByteSet = ByteSet::from_spec(b"A-Z0-9 -");
const IBAN_START: ByteSet = ByteSet::from_spec(b"A-Z");
const IPV4_CLASS: ByteSet = ByteSet::from_spec(b"0-9.");
const IPV6_CLASS: ByteSet = ByteSet::from_spec(b"0-9A-Fa-f:.");
const IPV6_START: ByteSet = ByteSet::from_spec(b"0-9A-Fa-f:");
const COLON: ByteSet = ByteSet::from_spec(b":");
const PEM_CLASS: ByteSet = ByteSet::from_spec(b"A-Z0-9 _-");
const PEM_START: ByteSet = ByteSet::from_spec(b"-");
const TOKEN_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9_-");
const JWT_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9_.-");
const URL_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9_./:-");
/// Values of `key = value` assignments: printable, without quotes and separators.
const VALUE_CLASS: ByteSet = ByteSet::printable_except(b"\"'`,;<>(){}[]\\");
const NONSPACE: ByteSet = ByteSet::printable_except(b"");
/// What stands right before an assigned value: `=`, `:`, `=>`, `>` (XML), `,` (a call).
const ASSIGN: ByteSet = ByteSet::from_spec(b"=:>,");

fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

/// A PII rule: id, default action, pattern, run class, run start, trigger, validator.
type PiiRule = (
    &'static str,
    Action,
    &'static str,
    ByteSet,
    ByteSet,
    Option<ByteSet>,
    fn(&str) -> bool,
);

/// Builds the detector list in priority order (earlier wins a tie at the same start).
/// Returns an error naming the detector whose pattern does not compile.
pub fn catalog(cfg: &CatalogConfig) -> Result<Vec<Detector>, String> {
    let mut out = Vec::new();
    let mut add = |id: &str, category: Category, action: Action, matcher: Option<Matcher>| {
        let matcher = matcher.ok_or_else(|| format!("detector {id}: pattern does not compile"))?;
        out.push(Detector {
            id: id.to_string(),
            category,
            action,
            matcher,
        });
        Ok::<(), String>(())
    };

    // Canaries and fingerprints first: a leak of the system prompt is the most specific finding.
    let canaries: Vec<String> = cfg
        .canaries
        .iter()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect();
    if !canaries.is_empty() {
        add(
            "canary",
            Category::Canary,
            Action::Block,
            Literals::new(&canaries, false).map(Matcher::Literals),
        )?;
    }
    if !cfg.fingerprints.is_empty() {
        add(
            "system_prompt_leak",
            Category::PromptLeak,
            Action::Block,
            Literals::new(&cfg.fingerprints, true).map(Matcher::Literals),
        )?;
    }

    // Secrets.
    let pem = re(r"^-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----").map(|r| {
        RegexRun::new(PEM_CLASS, PEM_START, r)
            .open_end(OpenEnd::PemEnd)
            .min_len(27)
    });
    add(
        "private_key",
        Category::Secret,
        Action::Redact,
        pem.map(|r| Matcher::Regex(Box::new(r))),
    )?;
    type Judge = fn(&str, bool) -> Tri;
    let tokens: [(&str, &[&'static str], Judge, ByteSet); 11] = [
        (
            "aws_access_key",
            &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
            judge_aws_key_id,
            ALNUM,
        ),
        (
            "github_token",
            &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
            judge_github,
            TOKEN_CLASS,
        ),
        (
            "github_token",
            &["github_pat_"],
            judge_github_pat,
            TOKEN_CLASS,
        ),
        (
            "gitlab_token",
            &["glpat-", "glptt-", "gldt-", "glrt-", "GR1348941"],
            judge_gitlab,
            TOKEN_CLASS,
        ),
        (
            "slack_token",
            &[
                "xoxb-",
                "xoxp-",
                "xoxa-",
                "xoxo-",
                "xoxr-",
                "xoxs-",
                "xoxe-",
                "xoxe.xoxp-",
                "xoxe.xoxb-",
                "xapp-",
            ],
            judge_slack,
            JWT_CLASS,
        ),
        (
            "slack_webhook",
            &[
                "https://hooks.slack.com/",
                "http://hooks.slack.com/",
                "hooks.slack.com/",
            ],
            judge_slack_webhook,
            URL_CLASS,
        ),
        (
            "stripe_key",
            &[
                "sk_live_", "rk_live_", "sk_test_", "rk_test_", "sk_prod_", "rk_prod_",
            ],
            judge_stripe,
            TOKEN_CLASS,
        ),
        (
            "anthropic_api_key",
            &["sk-ant-"],
            judge_anthropic,
            TOKEN_CLASS,
        ),
        ("openai_api_key", &["sk-"], judge_openai, TOKEN_CLASS),
        ("google_api_key", &["AIza"], judge_google, TOKEN_CLASS),
        ("jwt", &["eyJ"], judge_jwt, JWT_CLASS),
    ];
    for (id, leads, judge, class) in tokens {
        let m = TokenRun::new(class, leads.to_vec(), judge).map(Matcher::Token);
        add(id, Category::Secret, Action::Redact, m)?;
    }
    let b64 = ByteSet::from_spec(b"A-Za-z0-9/+");
    let aws_secret = re(r"^[A-Za-z0-9/+]{40}$").zip(re(
        r#"(?i)aws.{0,20}(?:secret|private).{0,20}[:=]{1,2}\s{0,3}["']?$"#,
    ));
    let aws_secret = aws_secret.map(|(r, ctx)| {
        RegexRun::new(b64, b64, r)
            .validate(|v| entropy(v) > 3.5)
            .context(ctx)
            .context_gate(ASSIGN)
            .min_len(40)
    });
    add(
        "aws_secret_key",
        Category::Secret,
        Action::Redact,
        aws_secret.map(|r| Matcher::Regex(Box::new(r))),
    )?;
    add(
        "secret_assignment",
        Category::Secret,
        Action::Redact,
        assignment_value().map(|r| Matcher::Regex(Box::new(r))),
    )?;
    add(
        "secret_assignment",
        Category::Secret,
        Action::Redact,
        assignment_inline().map(|r| Matcher::Regex(Box::new(r))),
    )?;

    // PII.
    let pii: [PiiRule; 7] = [
        (
            "credit_card",
            Action::Redact,
            r"[0-9]{4}(?:[ -]?[0-9]{2,7}){1,4}|[0-9]{12,19}",
            CARD_CLASS,
            DIGIT,
            None,
            valid_card,
        ),
        (
            "us_ssn",
            Action::Redact,
            r"[0-9]{3}[- .]?[0-9]{2}[- .]?[0-9]{4}|[0-9]{3}-[0-9]{6}|[0-9]{5}-[0-9]{4}",
            SSN_CLASS,
            DIGIT,
            None,
            valid_ssn,
        ),
        (
            "iban",
            Action::Redact,
            r"[A-Z]{2}[0-9]{2}[ -]?(?:[A-Z0-9]{4}[ -]?){2,7}[A-Z0-9]{1,4}",
            IBAN_CLASS,
            IBAN_START,
            Some(DIGIT),
            valid_iban,
        ),
        (
            "email",
            Action::Redact,
            r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}",
            EMAIL_CLASS,
            ALNUM,
            Some(ByteSet::from_spec(b"@")),
            valid_email,
        ),
        (
            "phone",
            Action::Redact,
            r"\+?\(?[0-9]{1,4}\)?(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}",
            PHONE_CLASS,
            PHONE_START,
            Some(DIGIT),
            valid_phone,
        ),
        (
            "ipv4",
            Action::Off,
            r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
            IPV4_CLASS,
            DIGIT,
            None,
            valid_ipv4,
        ),
        (
            "ipv6",
            Action::Off,
            r"[0-9A-Fa-f:]*:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f:]{2,39}",
            IPV6_CLASS,
            IPV6_START,
            Some(COLON),
            valid_ipv6,
        ),
    ];
    for (id, action, pattern, class, start, trigger, validate) in pii {
        let m = re(pattern).map(|r| {
            let group = usize::from(r.captures_len() > 1);
            let min_len = match id {
                "credit_card" => 12,
                "us_ssn" => 9,
                "iban" => 15,
                "email" => 6,
                "phone" => 7,
                "ipv4" => 7,
                _ => 2,
            };
            let run = RegexRun::new(class, start, r)
                .validate(validate)
                .bounded()
                .group(group)
                .min_len(min_len);
            // Cutting an IPv6 address at a dot leaves another valid address: never shrink it.
            let run = if id == "ipv6" { run } else { run.shrink() };
            Matcher::Regex(Box::new(match trigger {
                Some(t) => run.trigger(t),
                None => run,
            }))
        });
        add(id, Category::Pii, action, m)?;
    }

    for c in &cfg.custom {
        let regex = Regex::new(&c.regex)
            .map_err(|e| format!("custom detector {}: invalid regex: {e}", c.name))?;
        let mut run = RegexRun::new(NONSPACE, NONSPACE, regex);
        if !c.keywords.is_empty() {
            let alts = c
                .keywords
                .iter()
                .map(|k| regex_lite::escape(k))
                .collect::<Vec<_>>()
                .join("|");
            let req = Regex::new(&format!("(?i)(?:{alts})"))
                .map_err(|e| format!("custom detector {}: invalid keywords: {e}", c.name))?;
            run = run.require(req);
        }
        out.push(Detector {
            id: format!("custom:{}", c.name),
            category: Category::Custom,
            action: c.action,
            matcher: Matcher::Regex(Box::new(run)),
        });
    }

    for d in &mut out {
        if let Some((_, a)) = cfg.actions.iter().rev().find(|(id, _)| *id == d.id) {
            d.action = *a;
        }
    }
    Ok(out)
}

/// Names under which secrets are assigned in code, config files and prose.
const SECRET_NAMES: &str = r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?(?:key|token)|[_-]auth|client[_-]?secret|private[_-]?key|credential)s?[A-Za-z0-9_.-]{0,20}";

/// Assignment operators across config files and languages.
const ASSIGN_OPS: &str = r"(?:::=|:::=|:=|=>|\?=|\.=|\|\|=|[:=])";

/// Names that hold identifiers, locations or public values, not secrets.
const NOT_SECRET_NAMES: &str = r#"(?i)(?:(?:id|ids|name|names|url|uri|path|file|dir|type|mode|public[a-z_]*)(?:["'\]>]|\s+[a-z]+)?|(?:csrf|xsrf|nonce)[A-Za-z0-9_.-]*)\s{0,3}"#;

/// `password: "value"`: the value is its own run; the name stands before it, as an
/// assignment, an XML element, or the first argument of a call (`set("api_token", "...")`).
fn assignment_value() -> Option<RegexRun> {
    let ctx = re(&format!(
        r#"(?i)(?:{SECRET_NAMES}["'\]]?(?:\s+(?:string|str|var|const|let))?\s{{0,3}}{ASSIGN_OPS}\s{{0,3}}["'`]?|<[A-Za-z0-9_.:-]*{SECRET_NAMES}>\s*|{SECRET_NAMES}["']\s*,\s*["'])$"#
    ))?;
    let deny = not_secret_names()?;
    let run = RegexRun::new(VALUE_CLASS, VALUE_CLASS, re(r"^[^\s=:]{8,200}={0,2}$")?);
    // A plausible secret has a digit: runs without one are not looked at.
    Some(
        run.validate(plausible_secret)
            .context(ctx)
            .context_deny(deny)
            .context_gate(ASSIGN)
            .trigger(DIGIT)
            .min_len(8),
    )
}

fn not_secret_names() -> Option<Regex> {
    re(&format!(
        r#"{NOT_SECRET_NAMES}(?:{ASSIGN_OPS}|,)?\s{{0,3}}["'`]?$"#
    ))
}

/// `password=value` in one run.
fn assignment_inline() -> Option<RegexRun> {
    let r = re(&format!(
        r"(?i){SECRET_NAMES}{ASSIGN_OPS}([^\s=]{{8,200}}={{0,2}})$"
    ))?;
    let run = RegexRun::new(VALUE_CLASS, VALUE_CLASS, r);
    Some(
        run.trigger(ByteSet::from_spec(b"=:"))
            .group(1)
            .validate(plausible_secret)
            .context_deny(not_secret_names()?)
            .min_len(11),
    )
}

// ---------------------------------------------------------------------------------------------
// Token judges. Each must be monotone: a Yes or No on a prefix of an open run holds for every
// extension of that run (checked by property tests).

fn all_in(s: &str, class: &ByteSet) -> bool {
    s.bytes().all(|b| class.has(b))
}

/// A random part that is a placeholder: low entropy (`xxxx`, `1231231`) or documentation.
fn placeholder_part(part: &str) -> bool {
    entropy(part) < 3.0 || part.contains("EXAMPLE") || part.contains("example")
}

/// Exactly `total` bytes, judged when the run is complete.
fn fixed_len(run: &str, complete: bool, total: usize, lead: usize) -> Tri {
    if run.len() > total {
        Tri::No
    } else if complete {
        if run.len() == total && !placeholder_part(&run[lead..]) {
            Tri::Yes
        } else {
            Tri::No
        }
    } else {
        Tri::NeedMore
    }
}

/// At least `min` bytes; only the first `min` are judged, so a verdict never changes as the
/// run grows.
fn at_least(run: &str, complete: bool, min: usize, lead: usize) -> Tri {
    if run.len() >= min {
        if placeholder_part(&run[lead.min(min)..min]) {
            Tri::No
        } else {
            Tri::Yes
        }
    } else if complete {
        Tri::No
    } else {
        Tri::NeedMore
    }
}

fn lead_len(run: &str, leads: &[&str]) -> usize {
    leads
        .iter()
        .filter(|l| run.starts_with(**l))
        .map(|l| l.len())
        .max()
        .unwrap_or(0)
}

fn judge_aws_key_id(run: &str, complete: bool) -> Tri {
    // Four-letter prefix, then 16 base32 characters (A-Z, 2-7).
    let body = run.get(4..).unwrap_or("");
    if !body
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    {
        return Tri::No;
    }
    fixed_len(run, complete, 20, 0)
}

fn judge_github(run: &str, complete: bool) -> Tri {
    // ghp_ + 36 alphanumerics; whatever follows in the same run goes with it. Only the first
    // 40 bytes are judged, so a verdict never changes as the run grows.
    if !all_in(&run[4..run.len().min(40)], &ALNUM) {
        return Tri::No;
    }
    at_least(run, complete, 40, 4)
}

fn judge_github_pat(run: &str, complete: bool) -> Tri {
    at_least(run, complete, "github_pat_".len() + 70, "github_pat_".len())
}

fn judge_gitlab(run: &str, complete: bool) -> Tri {
    let lead = lead_len(run, &["glpat-", "glptt-", "gldt-", "glrt-", "GR1348941"]);
    at_least(run, complete, lead + 20, lead)
}

fn judge_slack(run: &str, complete: bool) -> Tri {
    // Slack tokens: digit groups (team, user, bot ids) and a random part, or one long random
    // part (configuration and refresh tokens). Every condition only grows with the run.
    let body = run.split_once('-').map_or("", |(_, b)| b);
    let groups: Vec<&str> = body.split('-').collect();
    let ids = groups
        .iter()
        .filter(|g| g.len() >= 6 && g.bytes().all(|b| b.is_ascii_digit()))
        .count();
    let random = groups
        .iter()
        .any(|g| g.len() >= 10 && g.bytes().any(|b| b.is_ascii_alphabetic()));
    let long = groups.iter().any(|g| g.len() >= 40);
    if (ids >= 1 && random) || long {
        Tri::Yes
    } else if complete {
        Tri::No
    } else {
        Tri::NeedMore
    }
}

fn judge_slack_webhook(run: &str, complete: bool) -> Tri {
    let path = run
        .split_once("hooks.slack.com/")
        .map(|(_, p)| p)
        .unwrap_or("");
    let ok_path = ["services/", "workflows/", "triggers/"]
        .iter()
        .any(|p| path.starts_with(p) || p.starts_with(path));
    if !ok_path && !path.is_empty() {
        return Tri::No;
    }
    if path.len() >= 30 {
        Tri::Yes
    } else if complete {
        Tri::No
    } else {
        Tri::NeedMore
    }
}

fn judge_stripe(run: &str, complete: bool) -> Tri {
    at_least(run, complete, 8 + 20, 8)
}

fn judge_anthropic(run: &str, complete: bool) -> Tri {
    // sk-ant-<kind><nn>- then 93 characters and "AA".
    let Some(kind_end) = run[7..].find('-').map(|i| i + 8) else {
        return if complete { Tri::No } else { Tri::NeedMore };
    };
    let total = kind_end + 93 + 2;
    if run.len() > total {
        Tri::No
    } else if complete {
        if run.len() == total && run.ends_with("AA") {
            Tri::Yes
        } else {
            Tri::No
        }
    } else {
        Tri::NeedMore
    }
}

fn judge_openai(run: &str, complete: bool) -> Tri {
    // sk-proj-, sk-svcacct-, sk-admin- or legacy sk- followed by a long random part; require a
    // mix of letters and digits so that prose like "sk-learn-tutorial-..." does not qualify.
    let body = &run[3..];
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    let upper = body.bytes().filter(u8::is_ascii_uppercase).count();
    if body.len() >= 32 && digits >= 3 && upper >= 3 {
        Tri::Yes
    } else if complete {
        Tri::No
    } else {
        Tri::NeedMore
    }
}

fn judge_google(run: &str, complete: bool) -> Tri {
    fixed_len(run, complete, 39, 4)
}

fn judge_jwt(run: &str, complete: bool) -> Tri {
    // Header segment, a dot, then a payload that starts like a JSON object.
    let Some((header, rest)) = run.split_once('.') else {
        return if complete || run.len() > 2048 {
            Tri::No
        } else {
            Tri::NeedMore
        };
    };
    // The start of a JSON object (a header may be damaged past its first key).
    match base64_decode(header) {
        Some(h) if h.starts_with(b"{\"") => {}
        _ => return Tri::No,
    }
    if rest.len() >= 4 {
        if rest.starts_with("eyJ") {
            Tri::Yes
        } else {
            Tri::No
        }
    } else if complete {
        Tri::No
    } else if "eyJ".starts_with(rest) {
        Tri::NeedMore
    } else {
        Tri::No
    }
}

/// Decodes standard or URL-safe base64, padded or not; `None` on a byte outside the alphabet.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

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

fn valid_iban(s: &str) -> bool {
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

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !domain.contains("..")
        && !domain.starts_with('-')
}

fn valid_phone(s: &str) -> bool {
    let d = digits_of(s);
    let opens = s.bytes().filter(|&b| b == b'(').count();
    let closes = s.bytes().filter(|&b| b == b')').count();
    if opens != closes || opens > 1 || s.ends_with(['-', '.', ' ', '(']) {
        return false;
    }
    if s.starts_with('+') {
        // E.164: country code then up to 15 digits in all.
        return (8..=15).contains(&d.len()) && d[0] != 0;
    }
    // National formats: 10 or 11 digits with separators, 9 or more after a 0 trunk prefix
    // with separators, or a mainland-China mobile number (1[3-9] and 9 digits).
    let has_sep = s.bytes().any(|b| matches!(b, b' ' | b'-' | b'.' | b'('));
    if !has_sep {
        return d.len() == 11 && d[0] == 1 && (3..=9).contains(&d[1]);
    }
    let trunk = d[0] == 0 && d[1] != 0 && (9..=11).contains(&d.len());
    if !(10..=11).contains(&d.len()) && !trunk {
        return false;
    }
    // Dates, versions and plain counts look different: reject dotted groups of 1-2 digits.
    let groups: Vec<usize> = s
        .split([' ', '-', '.', '(', ')'])
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    groups.iter().all(|&g| g >= 2) && groups.len() <= 5
}

fn valid_ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

fn valid_ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A value assigned to a secret-looking name: long enough, random enough, not a placeholder.
fn plausible_secret(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "example",
        "xxxx",
        "placeholder",
        "changeme",
        "your_",
        "your-",
        "<",
        "${",
        "{{",
        "redacted",
        "password",
        "secret",
        "process.env",
        "os.environ",
        "getenv",
        "true",
        "false",
        "null",
        "undefined",
        "none",
    ];
    if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return false;
    }
    // Host names (`lb1.api.example.com`) are not secrets.
    if v.matches('.').count() >= 2
        && v.rsplit('.').next().is_some_and(|tld| {
            let tld = tld.split(':').next().unwrap_or(tld);
            (2..=6).contains(&tld.len()) && tld.bytes().all(|b| b.is_ascii_lowercase())
        })
    {
        return false;
    }
    // Dotted versions (`jackson-0.11.2`) are not secrets.
    let b = v.as_bytes();
    if b.windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
    {
        return false;
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = v.bytes().any(|b| b.is_ascii_alphabetic());
    v.len() >= 8 && has_digit && has_alpha && entropy(v) >= 3.0
}
