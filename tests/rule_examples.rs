//! Every rule carries its own examples; this one test checks them all, so adding a rule is
//! adding data. Output detectors: each example fires the rule alone one-shot, byte by byte as a
//! stream (with the same output and findings), and over every prefix (a finding reported on a
//! prefix is never taken back); each counter-example never fires it. Injection rules: each
//! attack fires the rule alone and inside the whole scanner; each benign text does not fire it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeguard::input::injection::{InjectionScanner, Source};
use edgeguard::input::rules::{PATTERNS, PHRASES};
use edgeguard::output::rules::{self, leaks, Rule};
use edgeguard::output::{catalog, Action, CatalogConfig, Detector, Finding, Scanner};

/// A scanner holding only `rule`, acting by redaction so the text stays comparable.
fn scanner_for(rule: &Rule) -> Scanner {
    let matcher = rule
        .build(&leaks::example_config())
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| {
            panic!(
                "detector {}: the example configuration leaves it empty",
                rule.id
            )
        });
    let d = Detector {
        id: rule.id.to_string(),
        category: rule.category,
        action: Action::Redact,
        matcher,
    };
    Scanner::new(vec![d], 256)
}

fn stream(s: &Scanner, text: &str, upto: usize, finish: bool) -> (String, Vec<Finding>) {
    let mut r = s.stream();
    let mut out = String::new();
    for b in text.as_bytes()[..upto].chunks(1) {
        r.push_bytes(b, &mut out);
    }
    if finish {
        r.finish(&mut out);
    }
    (out, r.take_findings())
}

fn which(rule: &Rule, n: usize) -> String {
    format!("detector {} (rule {n}: {})", rule.id, rule.about)
}

#[test]
fn every_detector_rule_has_examples_that_hold() {
    let mut checked = 0;
    for (n, rule) in rules::all().enumerate() {
        let name = which(rule, n);
        assert!(!rule.examples.is_empty(), "{name}: no examples");
        assert!(
            !rule.counter_examples.is_empty(),
            "{name}: no counter-examples"
        );
        let s = scanner_for(rule);
        for ex in rule.examples {
            let one = s.redact(ex);
            assert!(
                one.findings.iter().any(|f| f.detector == rule.id),
                "{name}: does not fire on its example {ex:?}"
            );
            assert!(
                !one.text.contains(ex),
                "{name}: example {ex:?} passes unredacted"
            );
            let (out, findings) = stream(&s, ex, ex.len(), true);
            assert_eq!(
                out, one.text,
                "{name}: streamed {ex:?} differs from one-shot"
            );
            assert_eq!(
                findings, one.findings,
                "{name}: streamed findings differ on {ex:?}"
            );
            // Monotone: whatever a prefix already reported stays reported.
            for upto in 0..=ex.len() {
                let (_, early) = stream(&s, ex, upto, false);
                for f in &early {
                    assert!(
                        one.findings.contains(f),
                        "{name}: prefix {:?} reported {f:?}, taken back later",
                        &ex.as_bytes()[..upto]
                    );
                }
            }
            checked += 1;
        }
        for ex in rule.counter_examples {
            let one = s.redact(ex);
            assert!(
                one.findings.is_empty(),
                "{name}: fires on its counter-example {ex:?}: {:?}",
                one.findings
            );
            let (out, _) = stream(&s, ex, ex.len(), true);
            assert_eq!(out, *ex, "{name}: streamed counter-example {ex:?} changed");
            // No prefix of a counter-example reports what the whole does not.
            for upto in 0..=ex.len() {
                let (_, early) = stream(&s, ex, upto, false);
                assert!(
                    early.is_empty(),
                    "{name}: prefix {:?} of counter-example {ex:?} reported {early:?}",
                    &ex.as_bytes()[..upto]
                );
            }
        }
    }
    assert!(checked > 20, "only {checked} examples checked");
}

#[test]
fn detector_examples_also_fire_in_the_full_catalog() {
    // With every rule on, each example is still caught (by its own rule or one earlier in
    // priority, which then claims the same bytes).
    let mut cfg = leaks::example_config();
    cfg.actions = rules::all()
        .map(|r| (r.id.to_string(), Action::Redact))
        .collect();
    let s = Scanner::new(catalog(&cfg).unwrap(), 256);
    for rule in rules::all() {
        for ex in rule.examples {
            let one = s.redact(ex);
            assert!(
                !one.findings.is_empty() && !one.text.contains(ex),
                "detector {}: example {ex:?} not caught by the full catalog",
                rule.id
            );
        }
    }
}

#[test]
fn a_bad_custom_rule_is_named() {
    let cfg = CatalogConfig {
        custom: vec![edgeguard::output::CustomDetector {
            name: "broken".into(),
            regex: "(".into(),
            keywords: vec![],
            action: Action::Redact,
        }],
        ..CatalogConfig::default()
    };
    let e = catalog(&cfg).err().unwrap();
    assert!(e.contains("broken"), "{e}");
}

#[test]
fn every_injection_rule_has_examples_that_hold() {
    let full = InjectionScanner::new().unwrap();
    let mut checked = 0;
    for (n, rule) in PHRASES.iter().enumerate() {
        let name = format!("injection phrase rule {} (#{n}: {})", rule.id, rule.about);
        let alone = InjectionScanner::from_rules(std::slice::from_ref(rule), &[])
            .unwrap_or_else(|e| panic!("{e}"));
        checked +=
            check_injection_examples(&name, rule.id, rule.attacks, rule.benign, &alone, &full);
    }
    for (n, rule) in PATTERNS.iter().enumerate() {
        let name = format!("injection pattern rule {} (#{n}: {})", rule.id, rule.about);
        let alone = InjectionScanner::from_rules(&[], std::slice::from_ref(rule))
            .unwrap_or_else(|e| panic!("{e}"));
        checked +=
            check_injection_examples(&name, rule.id, rule.attacks, rule.benign, &alone, &full);
    }
    assert!(checked >= 30, "only {checked} attack examples checked");
}

/// Checks one injection rule's examples: each attack fires the rule alone and in the full
/// scanner, no benign example fires it. Returns how many attacks were checked.
fn check_injection_examples(
    name: &str,
    id: &'static str,
    attacks: &[&str],
    benign: &[&str],
    alone: &InjectionScanner,
    full: &InjectionScanner,
) -> usize {
    assert!(!attacks.is_empty(), "{name}: no attack examples");
    assert!(!benign.is_empty(), "{name}: no benign examples");
    for t in attacks {
        let v = alone.scan([(Source::User, *t)]);
        assert!(v.rules.contains(&id), "{name}: misses its attack {t:?}");
        let v = full.scan([(Source::User, *t)]);
        assert!(
            v.rules.contains(&id),
            "{name}: {t:?} not flagged in the full scanner"
        );
    }
    for t in benign {
        let v = alone.scan([(Source::User, *t)]);
        assert!(!v.rules.contains(&id), "{name}: fires on benign {t:?}");
    }
    attacks.len()
}
