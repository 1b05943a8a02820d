//! The gateway's configuration, read once per isolate from environment bindings and validated.
//! A missing or invalid setting is an error naming the setting: the edge then fails every
//! request closed instead of running with a protection silently off.

use std::fmt;

use std::collections::BTreeMap;

use crate::audit::anomaly::Thresholds;
use crate::audit::event::AddressPolicy;
use crate::input::{InputPolicy, InvisiblePolicy};
use crate::network::limits::Tier;
use crate::output::filter::UnknownFields;
use crate::output::{Action, CatalogConfig, CustomDetector, DEFAULT_HOLDBACK};
use crate::protocol::PassThrough;
use crate::tools::ToolPolicy;

/// How the origin credential is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAuth {
    /// `Authorization: Bearer <secret>` (OpenAI-compatible origins).
    Bearer,
    /// `x-api-key: <secret>` (Anthropic-style origins).
    XApiKey,
}

/// What to do with an origin response the output filter cannot parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnparseablePolicy {
    /// Cut the response off with an error (default).
    Block,
    /// Pass it through, redacted at the byte level as plain text.
    RawScan,
}

/// What to do when the limiter cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterFailure {
    /// Refuse with 503 (default).
    Closed,
    /// Forward the request, mark it and log loudly.
    Open,
}

/// What happens when a request's injection score reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionAction {
    Block,
    Monitor,
    Off,
}

/// An AI origin: where a protocol's requests go and how the gateway authenticates there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub url: String,
    pub auth: OriginAuth,
    pub api_key: String,
    /// Query parameters of the client's request forwarded to this origin (exact names).
    pub query: Vec<String>,
}

/// One entry of `ORIGINS`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginSpec {
    url: String,
    #[serde(default)]
    auth: Option<String>,
    /// The name of the secret holding the credential.
    secret: String,
    #[serde(default)]
    query: Option<Vec<String>>,
}

fn check_url(setting: &'static str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/').to_string();
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
        return Err(err(setting, "must be an http(s) URL"));
    }
    Ok(url)
}

fn check_secret(
    setting: &'static str,
    name: &str,
    value: Option<String>,
) -> Result<String, ConfigError> {
    let v = value.filter(|k| !k.trim().is_empty()).ok_or_else(|| {
        err(
            setting,
            format!("secret {name} is missing (set it with `wrangler secret put {name}`)"),
        )
    })?;
    if v.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(err(
            setting,
            format!("secret {name} holds characters not allowed in a header"),
        ));
    }
    Ok(v)
}

fn parse_auth(setting: &'static str, v: Option<&str>) -> Result<OriginAuth, ConfigError> {
    match v.map(str::trim) {
        None | Some("bearer") => Ok(OriginAuth::Bearer),
        Some("x-api-key") => Ok(OriginAuth::XApiKey),
        Some(other) => Err(err(
            setting,
            format!("auth must be bearer or x-api-key, got {other:?}"),
        )),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The default origin (`ORIGIN_URL`, `ORIGIN_API_KEY`, `ORIGIN_AUTH`,
    /// `ORIGIN_QUERY_PARAMS`).
    pub origin: Origin,
    /// Per-protocol origins (`ORIGINS`, keys `openai` and `anthropic`); a protocol without one
    /// goes to the default origin.
    pub origins: BTreeMap<String, Origin>,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub upstream_timeout_ms: u64,
    pub stream_idle_timeout_ms: u64,
    /// Paths forwarded without inspection (after authentication), exact match.
    pub pass_through_paths: Vec<PassThrough>,
    pub output_holdback: usize,
    pub unparseable: UnparseablePolicy,
    /// Response fields outside the protocol's schema: dropped (default) or the response cut.
    pub unknown_fields: UnknownFields,
    pub detectors: CatalogConfig,
    /// Named limit tiers; keys pick one by name (`default` when they name none).
    pub tiers: BTreeMap<String, Tier>,
    pub limiter_failure: LimiterFailure,
    pub limiter_timeout_ms: u64,
    /// How long a concurrency lease lives when its release never arrives.
    pub lease_ttl_ms: u64,
    /// Unknown-key attempts per minute from one address before it is refused.
    pub auth_failures_per_minute: u32,
    pub input: InputPolicy,
    pub injection_threshold: f64,
    /// Whether the learned classifier scores beside the rules (`INJECTION_MODEL`).
    pub injection_model: bool,
    /// SHA-256 (hex) of system prompts whose text is trusted (not scored).
    pub trusted_system_prompts: Vec<String>,
    pub injection_action: InjectionAction,
    /// The audit layer (`AUDIT = "on"`, the default), or `None` when turned off.
    pub audit: Option<AuditConfig>,
}

/// Where audit events go and what they keep.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `AUDIT_HMAC_KEY` (a secret): fingerprints of detected values and batch signatures.
    pub hmac_key: Vec<u8>,
    /// `AUDIT_CLIENT_ADDRESS`: full, truncated (/24, /48; the default) or omit.
    pub address: AddressPolicy,
    /// `AUDIT_WEBHOOK_URL` and the secret `AUDIT_WEBHOOK_SECRET` that signs its bodies.
    pub webhook: Option<Webhook>,
    /// `ANOMALY_THRESHOLDS`.
    pub anomaly: Thresholds,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Vec<u8>,
}

/// Reads the audit settings: off, or on with every piece it needs.
fn audit_config(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<AuditConfig>, ConfigError> {
    if !choice(get, "AUDIT", &[("on", true), ("off", false)])? {
        return Ok(None);
    }
    let hmac_key = get("AUDIT_HMAC_KEY").unwrap_or_default();
    if hmac_key.trim().len() < 32 {
        return Err(err(
            "AUDIT_HMAC_KEY",
            "missing or shorter than 32 characters (set it with `wrangler secret put AUDIT_HMAC_KEY`, or AUDIT = \"off\")",
        ));
    }
    let address = match get("AUDIT_CLIENT_ADDRESS") {
        None => AddressPolicy::Truncated,
        Some(v) => AddressPolicy::parse(v.trim()).ok_or_else(|| {
            err(
                "AUDIT_CLIENT_ADDRESS",
                format!("expected one of full, truncated, omit, got {v:?}"),
            )
        })?,
    };
    let webhook = match get("AUDIT_WEBHOOK_URL").filter(|u| !u.trim().is_empty()) {
        None => None,
        Some(url) => {
            let url = url.trim().to_string();
            let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                .iter()
                .any(|p| url.starts_with(p));
            if !(url.starts_with("https://") || loopback) || url.len() < 12 {
                return Err(err(
                    "AUDIT_WEBHOOK_URL",
                    "must be an https URL (http only to a loopback address)",
                ));
            }
            let secret = get("AUDIT_WEBHOOK_SECRET").unwrap_or_default();
            if secret.trim().len() < 16 {
                return Err(err(
                    "AUDIT_WEBHOOK_SECRET",
                    "missing or shorter than 16 characters while AUDIT_WEBHOOK_URL is set",
                ));
            }
            Some(Webhook {
                url,
                secret: secret.trim().as_bytes().to_vec(),
            })
        }
    };
    let anomaly = match get("ANOMALY_THRESHOLDS").filter(|v| !v.trim().is_empty()) {
        None => Thresholds::default(),
        Some(v) => Thresholds::parse(&v).map_err(|e| err("ANOMALY_THRESHOLDS", e))?,
    };
    Ok(Some(AuditConfig {
        hmac_key: hmac_key.trim().as_bytes().to_vec(),
        address,
        webhook,
        anomaly,
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {}: {}", self.setting, self.problem)
    }
}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
    get: &dyn Fn(&str) -> Option<String>,
    setting: &'static str,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    match get(setting) {
        None => Ok(default),
        Some(v) => {
            let n: T = v
                .trim()
                .parse()
                .map_err(|_| err(setting, format!("not a number: {v:?}")))?;
            if n < min || n > max {
                return Err(err(setting, format!("{n} is outside {min}..={max}")));
            }
            Ok(n)
        }
    }
}

/// A setting that names one of a few choices; the first is the default.
fn choice<T: Copy>(
    get: &dyn Fn(&str) -> Option<String>,
    setting: &'static str,
    options: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(v) = get(setting) else {
        return options
            .first()
            .map(|(_, t)| *t)
            .ok_or_else(|| err(setting, "no options"));
    };
    let v = v.trim();
    options
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            err(
                setting,
                format!("expected one of {}, got {v:?}", names.join(", ")),
            )
        })
}

fn json_list(
    get: &dyn Fn(&str) -> Option<String>,
    setting: &'static str,
) -> Result<Vec<String>, ConfigError> {
    match get(setting) {
        None => Ok(Vec::new()),
        Some(v) if v.trim().is_empty() => Ok(Vec::new()),
        Some(v) => serde_json::from_str::<Vec<String>>(&v)
            .map_err(|e| err(setting, format!("expected a JSON array of strings: {e}"))),
    }
}

impl Config {
    /// Reads every setting through `get` (vars and secrets by name).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let origin_url = get("ORIGIN_URL").ok_or_else(|| err("ORIGIN_URL", "missing"))?;
        let origin_url = origin_url.trim().trim_end_matches('/').to_string();
        if !(origin_url.starts_with("https://") || origin_url.starts_with("http://"))
            || origin_url.len() < 10
        {
            return Err(err("ORIGIN_URL", "must be an http(s) URL"));
        }
        let origin_api_key = get("ORIGIN_API_KEY")
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                err(
                    "ORIGIN_API_KEY",
                    "missing (set it with `wrangler secret put ORIGIN_API_KEY`)",
                )
            })?;
        if origin_api_key.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(err(
                "ORIGIN_API_KEY",
                "contains characters not allowed in a header",
            ));
        }
        let origin_auth = choice(
            get,
            "ORIGIN_AUTH",
            &[
                ("bearer", OriginAuth::Bearer),
                ("x-api-key", OriginAuth::XApiKey),
            ],
        )?;
        let unparseable = choice(
            get,
            "UNPARSEABLE_RESPONSE",
            &[
                ("block", UnparseablePolicy::Block),
                ("raw_scan", UnparseablePolicy::RawScan),
            ],
        )?;
        let unknown_fields = choice(
            get,
            "UNKNOWN_RESPONSE_FIELDS",
            &[
                ("drop", UnknownFields::Drop),
                ("block", UnknownFields::Block),
            ],
        )?;
        let trusted_system_prompts = json_list(get, "TRUSTED_SYSTEM_PROMPTS")?;
        if let Some(h) = trusted_system_prompts
            .iter()
            .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(err(
                "TRUSTED_SYSTEM_PROMPTS",
                format!("{h:?} is not a hex SHA-256"),
            ));
        }
        let origin_query = match get("ORIGIN_QUERY_PARAMS") {
            None => vec!["api-version".to_string()],
            Some(_) => json_list(get, "ORIGIN_QUERY_PARAMS")?,
        };
        let mut origins = BTreeMap::new();
        if let Some(v) = get("ORIGINS").filter(|v| !v.trim().is_empty()) {
            let specs: BTreeMap<String, OriginSpec> =
                serde_json::from_str(&v).map_err(|e| err("ORIGINS", format!("invalid: {e}")))?;
            for (name, spec) in specs {
                if !matches!(name.as_str(), "openai" | "anthropic") {
                    return Err(err(
                        "ORIGINS",
                        format!("unknown origin {name:?} (openai, anthropic)"),
                    ));
                }
                let origin = Origin {
                    url: check_url("ORIGINS", &spec.url)?,
                    auth: parse_auth("ORIGINS", spec.auth.as_deref())?,
                    api_key: check_secret("ORIGINS", &spec.secret, get(&spec.secret))?,
                    query: spec
                        .query
                        .unwrap_or_else(|| vec!["api-version".to_string()]),
                };
                origins.insert(name, origin);
            }
        }
        let pass_through_paths = json_list(get, "PASS_THROUGH_PATHS")?
            .iter()
            .map(|p| PassThrough::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("PASS_THROUGH_PATHS", e))?;
        let custom = match get("CUSTOM_DETECTORS") {
            None => Vec::new(),
            Some(v) if v.trim().is_empty() => Vec::new(),
            Some(v) => serde_json::from_str::<Vec<CustomDetector>>(&v)
                .map_err(|e| err("CUSTOM_DETECTORS", format!("invalid: {e}")))?,
        };
        let actions = match get("DETECTOR_ACTIONS") {
            None => Vec::new(),
            Some(v) if v.trim().is_empty() => Vec::new(),
            Some(v) => serde_json::from_str::<std::collections::BTreeMap<String, Action>>(&v)
                .map_err(|e| {
                    err(
                        "DETECTOR_ACTIONS",
                        format!("expected {{\"detector\": \"redact|block|monitor|off\"}}: {e}"),
                    )
                })?
                .into_iter()
                .collect(),
        };
        let canaries = get("CANARY")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect::<Vec<_>>();
        if let Some(c) = canaries.first() {
            if c.len() < 8 {
                return Err(err("CANARY", "must be at least 8 characters"));
            }
        }
        let fingerprints = json_list(get, "SYSTEM_PROMPT_FINGERPRINTS")?;
        if let Some(f) = fingerprints.iter().find(|f| f.len() < 16) {
            return Err(err(
                "SYSTEM_PROMPT_FINGERPRINTS",
                format!(
                    "fingerprint {:?}... is shorter than 16 bytes",
                    f.chars().take(8).collect::<String>()
                ),
            ));
        }
        let detectors = CatalogConfig {
            canaries,
            fingerprints,
            custom,
            actions,
        };
        // Compile once here so a bad pattern is a configuration error, not a per-request one.
        crate::output::catalog(&detectors).map_err(|e| err("CUSTOM_DETECTORS", e))?;
        let tiers: BTreeMap<String, Tier> = match get("LIMIT_TIERS") {
            None => BTreeMap::new(),
            Some(v) if v.trim().is_empty() => BTreeMap::new(),
            Some(v) => serde_json::from_str(&v).map_err(|e| {
                err(
                    "LIMIT_TIERS",
                    format!("expected {{\"tier\": {{\"requests_per_minute\": n, ...}}}}: {e}"),
                )
            })?,
        };
        let limiter_failure = choice(
            get,
            "LIMITER_FAILURE",
            &[
                ("closed", LimiterFailure::Closed),
                ("open", LimiterFailure::Open),
            ],
        )?;
        let injection_action = choice(
            get,
            "INJECTION_ACTION",
            &[
                ("block", InjectionAction::Block),
                ("monitor", InjectionAction::Monitor),
                ("off", InjectionAction::Off),
            ],
        )?;
        let invisible = choice(
            get,
            "INVISIBLE_CHARACTERS",
            &[
                ("strip", InvisiblePolicy::Strip),
                ("reject", InvisiblePolicy::Reject),
            ],
        )?;
        let tools = choice(
            get,
            "TOOL_POLICY",
            &[("refuse", ToolPolicy::Refuse), ("strip", ToolPolicy::Strip)],
        )?;
        let threshold_pct: u32 = number(get, "INJECTION_THRESHOLD_PERCENT", 50, 1, 100)?;
        Ok(Config {
            input: InputPolicy {
                invisible,
                max_messages: number(get, "MAX_MESSAGES", 256, 1, 10_000)?,
                max_text_bytes: number(get, "MAX_TEXT_BYTES", 512 << 10, 1024, 32 << 20)?,
                tools,
            },
            injection_threshold: f64::from(threshold_pct) / 100.0,
            injection_model: choice(get, "INJECTION_MODEL", &[("on", true), ("off", false)])?,
            trusted_system_prompts,
            injection_action,
            audit: audit_config(get)?,
            tiers,
            limiter_failure,
            limiter_timeout_ms: number(get, "LIMITER_TIMEOUT_MS", 2_000, 50, 30_000)?,
            lease_ttl_ms: number(get, "LEASE_TTL_MS", 900_000, 1_000, 86_400_000)?,
            auth_failures_per_minute: number(get, "AUTH_FAILURES_PER_MINUTE", 20, 1, 10_000)?,
            origin: Origin {
                url: origin_url,
                auth: origin_auth,
                api_key: origin_api_key,
                query: origin_query,
            },
            origins,
            max_body_bytes: number(get, "MAX_BODY_BYTES", 1 << 20, 1024, 32 << 20)?,
            max_json_depth: number(get, "MAX_JSON_DEPTH", 32, 4, 128)?,
            upstream_timeout_ms: number(get, "UPSTREAM_TIMEOUT_MS", 30_000, 100, 600_000)?,
            stream_idle_timeout_ms: number(get, "STREAM_IDLE_TIMEOUT_MS", 60_000, 100, 600_000)?,
            pass_through_paths,
            output_holdback: number(
                get,
                "OUTPUT_HOLDBACK_BYTES",
                DEFAULT_HOLDBACK,
                256,
                16 << 10,
            )?,
            unparseable,
            unknown_fields,
            detectors,
        })
    }
}

impl Config {
    /// The origin a protocol's requests go to (`None`: pass-through paths, the default origin).
    pub fn origin_for(&self, name: Option<&str>) -> &Origin {
        name.and_then(|n| self.origins.get(n))
            .unwrap_or(&self.origin)
    }

    /// The limits for a key: its tier (or `default`), with the key's own overrides on top.
    /// A key naming a tier that does not exist gets `None`: it fails closed.
    pub fn limits_for(&self, tier: &str, overrides: Option<&Tier>) -> Option<Tier> {
        let base = match self.tiers.get(tier) {
            Some(t) => *t,
            None if tier == "default" => Tier::default(),
            None => return None,
        };
        Some(match overrides {
            Some(o) => base.overridden_by(o),
            None => base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|k| m.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("ORIGIN_URL", "http://127.0.0.1:9000/"),
        ("ORIGIN_API_KEY", "sk-origin"),
        ("AUDIT_HMAC_KEY", "an-audit-key-of-at-least-32-characters"),
    ];

    #[test]
    fn audit_settings_fail_closed() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v: Vec<(&str, &str)> = BASE.to_vec();
            v.extend_from_slice(extra);
            cfg(&v)
        };
        let a = with(&[]).unwrap().audit.unwrap();
        assert_eq!(a.address, AddressPolicy::Truncated);
        assert!(a.webhook.is_none());
        assert!(with(&[("AUDIT", "off")]).unwrap().audit.is_none());
        let no_key = cfg(&BASE[..2]).unwrap_err();
        assert_eq!(no_key.setting, "AUDIT_HMAC_KEY");
        assert!(cfg(&[BASE[0], BASE[1], ("AUDIT", "off")]).is_ok());
        assert_eq!(with(&[("AUDIT", "maybe")]).unwrap_err().setting, "AUDIT");
        assert_eq!(
            with(&[("AUDIT_CLIENT_ADDRESS", "half")])
                .unwrap_err()
                .setting,
            "AUDIT_CLIENT_ADDRESS"
        );
        assert_eq!(
            with(&[("AUDIT_WEBHOOK_URL", "https://siem.example.com/in")])
                .unwrap_err()
                .setting,
            "AUDIT_WEBHOOK_SECRET"
        );
        assert_eq!(
            with(&[
                ("AUDIT_WEBHOOK_URL", "http://siem.example.com/in"),
                ("AUDIT_WEBHOOK_SECRET", "0123456789abcdef")
            ])
            .unwrap_err()
            .setting,
            "AUDIT_WEBHOOK_URL"
        );
        let w = with(&[
            ("AUDIT_WEBHOOK_URL", "http://127.0.0.1:9/audit"),
            ("AUDIT_WEBHOOK_SECRET", "0123456789abcdef"),
        ])
        .unwrap();
        assert!(w.audit.unwrap().webhook.is_some());
        assert_eq!(
            with(&[("ANOMALY_THRESHOLDS", r#"{"blocked": -1}"#)])
                .unwrap_err()
                .setting,
            "ANOMALY_THRESHOLDS"
        );
    }

    #[test]
    fn defaults() {
        let c = cfg(&BASE).unwrap();
        assert_eq!(c.origin.url, "http://127.0.0.1:9000");
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.origin.auth, OriginAuth::Bearer);
    }

    #[test]
    fn missing_and_invalid_settings_are_named() {
        assert_eq!(cfg(&[]).unwrap_err().setting, "ORIGIN_URL");
        assert_eq!(cfg(&BASE[..1]).unwrap_err().setting, "ORIGIN_API_KEY");
        let mut v = BASE.to_vec();
        v.push(("MAX_BODY_BYTES", "lots"));
        assert_eq!(cfg(&v).unwrap_err().setting, "MAX_BODY_BYTES");
        let mut v = BASE.to_vec();
        v.push(("CUSTOM_DETECTORS", r#"[{"name":"x","regex":"("}]"#));
        assert_eq!(cfg(&v).unwrap_err().setting, "CUSTOM_DETECTORS");
        let mut v = BASE.to_vec();
        v.push(("DETECTOR_ACTIONS", r#"{"email":"shout"}"#));
        assert_eq!(cfg(&v).unwrap_err().setting, "DETECTOR_ACTIONS");
        let mut v = BASE.to_vec();
        v.push(("INJECTION_ACTION", "shout"));
        let e = cfg(&v).unwrap_err();
        assert_eq!(e.setting, "INJECTION_ACTION");
        assert!(e.problem.contains("block, monitor, off"), "{}", e.problem);
        // The learned injection model is on unless turned off, and nothing else is accepted.
        assert!(cfg(&BASE).unwrap().injection_model);
        let mut v = BASE.to_vec();
        v.push(("INJECTION_MODEL", "off"));
        assert!(!cfg(&v).unwrap().injection_model);
        let mut v = BASE.to_vec();
        v.push(("INJECTION_MODEL", "maybe"));
        assert_eq!(cfg(&v).unwrap_err().setting, "INJECTION_MODEL");
        let mut v = BASE.to_vec();
        v.push(("ORIGIN_URL", "ftp://x"));
        assert!(cfg(&v[1..]).is_err());
    }
}
