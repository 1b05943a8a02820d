//! The built-in output detectors as data, in the spirit of gitleaks' rule files: each
//! [`Rule`] names its id, category, default action, the public labelled categories it answers
//! for, how it matches, and the texts it must and must not fire on. `tests/rule_examples.rs`
//! runs every rule's examples one-shot, byte by byte as a stream, and over every prefix, so
//! adding a detector is adding a record with examples.
//!
//! Rules live by family: [`leaks`] (canaries and system-prompt fingerprints), [`secrets`]
//! (provider keys, private keys, assignments) and [`pii`] (personal data). Matching follows the
//! keyword-then-regex-then-validator pipeline: a cheap byte or prefix test picks candidate runs,
//! a bounded regex confirms the shape inside one run, and a validator (Luhn, mod-97, issuer
//! ranges, SSN ranges, JWT header, entropy) decides.

pub mod leaks;
pub mod pii;
pub mod secrets;

use regex_lite::Regex;

use super::detectors::{Action, CatalogConfig, Category};
use super::matcher::{ByteSet, Head, Matcher, RegexRun, TokenRun, Tri};
use crate::tools::glob_match;

/// How a rule finds its values.
pub enum Spec {
    /// Values taken from configuration (canaries, fingerprints); `None` when none are set.
    Configured(fn(&CatalogConfig) -> Option<Option<Matcher>>),
    /// A token with a distinctive prefix, judged as it grows (the judge must be monotone: a
    /// verdict on a prefix of an open run holds for every extension).
    Token {
        leads: &'static [&'static str],
        class: ByteSet,
        judge: fn(&str, bool) -> Tri,
        /// The leads are distinctive: found inside a run too (`xAKIA...`).
        glued: bool,
    },
    /// A value inside a run of `class` starting with a byte of `start`: runs that contain a
    /// `trigger` byte are matched against `pattern` (anchored by the matcher) and `validate`
    /// decides. `shrink` lets the matcher retry a shorter value when a longer one fails.
    Run {
        pattern: &'static str,
        class: ByteSet,
        start: ByteSet,
        trigger: Option<ByteSet>,
        validate: fn(&str) -> bool,
        min_len: usize,
        /// The fewest ASCII digits a value holds: runs with fewer are not matched at all (a
        /// byte count spares the regex on most runs of code and prose).
        min_digits: usize,
        /// How every value of `pattern` begins, when that is rarer than a digit: runs begin
        /// there (a rule test holds the rule to a direct reading of its pattern from heads).
        head: Option<Head>,
        shrink: bool,
    },
    /// A matcher that needs context or an open end, built by code.
    Built(fn() -> Option<Matcher>),
}

/// One output detector rule.
pub struct Rule {
    /// The detector id in findings, `[REDACTED:<id>]` and `DETECTOR_ACTIONS`.
    pub id: &'static str,
    pub category: Category,
    pub about: &'static str,
    pub action: Action,
    /// Labelled categories (gitleaks rule ids, presidio entities; globs) this rule answers for.
    pub claims: &'static [&'static str],
    pub spec: Spec,
    /// Texts the rule must fire on.
    pub examples: &'static [&'static str],
    /// Near misses the rule must not fire on.
    pub counter_examples: &'static [&'static str],
}

impl Rule {
    /// Builds the rule's matcher: `Ok(None)` when configuration leaves it empty, an error
    /// naming the rule when its pattern does not compile.
    pub fn build(&self, cfg: &CatalogConfig) -> Result<Option<Matcher>, String> {
        let bad = || format!("detector {}: pattern does not compile", self.id);
        match &self.spec {
            Spec::Configured(f) => match f(cfg) {
                None => Ok(None),
                Some(m) => m.map(Some).ok_or_else(bad),
            },
            Spec::Token {
                leads,
                class,
                judge,
                glued,
            } => TokenRun::new(*class, leads.to_vec(), *judge)
                .map(|t| Some(Matcher::Token(t.glued(*glued))))
                .ok_or_else(bad),
            Spec::Run {
                pattern,
                class,
                start,
                trigger,
                validate,
                min_len,
                min_digits,
                head,
                shrink,
            } => {
                let r = Regex::new(pattern).map_err(|_| bad())?;
                let group = usize::from(r.captures_len() > 1);
                let mut run = RegexRun::new(*class, *start, r)
                    .validate(*validate)
                    .bounded()
                    .group(group)
                    .min_len(*min_len)
                    .min_digits(*min_digits);
                if *shrink {
                    run = run.shrink();
                }
                if let Some(t) = trigger {
                    run = run.trigger(*t);
                }
                if let Some(h) = head {
                    run = run.head(*h);
                }
                Ok(Some(Matcher::Regex(Box::new(run))))
            }
            Spec::Built(f) => f().map(Some).ok_or_else(bad),
        }
    }

    /// Whether the rule answers for a labelled category.
    pub fn claims(&self, category: &str) -> bool {
        self.claims.iter().any(|g| glob_match(g, category))
    }
}

/// Every built-in rule, in priority order (earlier wins a tie at the same start): leaks first
/// (the most specific finding), then secrets, then personal data.
pub fn all() -> impl Iterator<Item = &'static Rule> {
    leaks::RULES
        .iter()
        .chain(secrets::RULES.iter())
        .chain(pii::RULES.iter())
}

/// The detector ids that answer for a labelled category; empty when no rule claims it.
pub fn claimed(category: &str) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = all().filter(|r| r.claims(category)).map(|r| r.id).collect();
    ids.dedup();
    ids
}

pub(crate) fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

/// Checks a reversed look-back pattern against its forward definition: both must accept
/// exactly the same texts. Look-backs are built shape by shape and slot by slot, one choice
/// from each slot (the names, words, operators, quotes and blanks the pattern reads, in the
/// order it reads them, with near misses and empty choices), so many of them nearly match;
/// a third are the same choices in any order.
#[cfg(test)]
pub(crate) fn check_reversed_lookback(
    forward: &str,
    reversed: &str,
    shapes: &'static [&'static [&'static [&'static str]]],
) {
    use proptest::prelude::*;
    use proptest::strategy::{BoxedStrategy, Union};
    use proptest::test_runner::{Config, TestRunner};
    let (Ok(f), Ok(r)) = (Regex::new(forward), Regex::new(reversed)) else {
        panic!("look-back patterns do not compile");
    };
    let (fwd, rev) = (
        super::matcher::Lookback::forward(f),
        super::matcher::Lookback::reversed(r),
    );
    let mut strategies: Vec<BoxedStrategy<String>> = shapes
        .iter()
        .map(|slots| {
            slots
                .iter()
                .map(|slot| proptest::sample::select(*slot))
                .collect::<Vec<_>>()
                .prop_map(|p| p.concat())
                .boxed()
        })
        .collect();
    let all: Vec<&'static str> = shapes
        .iter()
        .flat_map(|slots| slots.iter().flat_map(|s| s.iter().copied()))
        .collect();
    let mixed = proptest::collection::vec(proptest::sample::select(all), 0..12)
        .prop_map(|p| p.concat())
        .boxed();
    for _ in 0..shapes.len().div_ceil(2) {
        strategies.push(mixed.clone());
    }
    let matched = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config::with_cases(6000));
    let result = runner.run(&Union::new(strategies), |text| {
        let want = fwd.is_match(&text);
        matched.set(matched.get() + usize::from(want));
        prop_assert_eq!(want, rev.is_match(&text), "look-back {:?}", text);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must reach the pattern, not only its misses.
    let matched = matched.get();
    assert!(matched >= 300, "only {matched} look-backs matched");
}
