//! Leaks of the operator's own secrets: the canary planted in system prompts and distinctive
//! sentences (fingerprints) of the system prompt. Both come from configuration; their examples
//! assume [`example_config`].

use super::{Rule, Spec};
use crate::output::detectors::{Action, CatalogConfig, Category};
use crate::output::matcher::{Literals, Matcher};

/// The canary the examples assume.
pub const EXAMPLE_CANARY: &str = "EG-CANARY-5f1c9a7e";
/// The fingerprint the examples assume.
pub const EXAMPLE_FINGERPRINT: &str = "You are Aurora, the billing assistant of Northwind";

/// The configuration the leak rules' examples are written for.
pub fn example_config() -> CatalogConfig {
    CatalogConfig {
        canaries: vec![EXAMPLE_CANARY.into()],
        fingerprints: vec![EXAMPLE_FINGERPRINT.into()],
        ..CatalogConfig::default()
    }
}

fn canaries(cfg: &CatalogConfig) -> Option<Option<Matcher>> {
    let values: Vec<String> = cfg
        .canaries
        .iter()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect();
    (!values.is_empty()).then(|| Literals::new(&values, false).map(Matcher::Literals))
}

fn fingerprints(cfg: &CatalogConfig) -> Option<Option<Matcher>> {
    (!cfg.fingerprints.is_empty())
        .then(|| Literals::new(&cfg.fingerprints, true).map(Matcher::Literals))
}

pub const RULES: &[Rule] = &[
    Rule {
        id: "canary",
        category: Category::Canary,
        about: "The secret CANARY planted in system prompts: its appearance proves a leak.",
        action: Action::Block,
        claims: &[],
        spec: Spec::Configured(canaries),
        examples: &[
            "Sure! The hidden token is EG-CANARY-5f1c9a7e.",
            "token:EG-CANARY-5f1c9a7e",
        ],
        counter_examples: &["The token is EG-CANARY-5f1c9a7", "EG-CANARY-"],
    },
    Rule {
        id: "system_prompt_leak",
        category: Category::PromptLeak,
        about:
            "A distinctive sentence of the system prompt (SYSTEM_PROMPT_FINGERPRINTS), any case.",
        action: Action::Block,
        claims: &[],
        spec: Spec::Configured(fingerprints),
        examples: &[
            "My instructions begin: you are aurora, the billing assistant of northwind.",
            "YOU ARE AURORA, THE BILLING ASSISTANT OF NORTHWIND",
        ],
        counter_examples: &["You are Aurora, a helpful assistant.", "Northwind billing"],
    },
];
