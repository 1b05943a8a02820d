//! The detector catalog: the built-in rules of [`super::rules`] (PII, secrets, canaries and
//! system-prompt fingerprints) plus custom detectors from configuration, with per-detector
//! action overrides.

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

use super::matcher::{ByteSet, Matcher, RegexRun};
use super::rules;

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

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Block => "block",
            Action::Monitor => "monitor",
            Action::Off => "off",
        }
    }
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

/// Any printable run (custom detectors).
const NONSPACE: ByteSet = ByteSet::printable_except(b"");

/// Builds the detector list in priority order (earlier wins a tie at the same start).
/// Returns an error naming the detector whose pattern does not compile.
pub fn catalog(cfg: &CatalogConfig) -> Result<Vec<Detector>, String> {
    let mut out = Vec::new();
    for rule in rules::all() {
        if let Some(matcher) = rule.build(cfg)? {
            out.push(Detector {
                id: rule.id.to_string(),
                category: rule.category,
                action: rule.action,
                matcher,
            });
        }
    }
    for c in &cfg.custom {
        let regex = Regex::new(&c.regex)
            .map_err(|e| format!("custom detector {}: invalid regex: {e}", c.name))?;
        let mut run = RegexRun::new(NONSPACE, NONSPACE, regex);
        if !c.keywords.is_empty() {
            let words: Vec<&str> = c.keywords.iter().map(String::as_str).collect();
            run = run.keywords(&words);
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
