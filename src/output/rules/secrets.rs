//! Secrets: provider API keys and tokens (recognized by their prefixes and judged as they
//! stream), PEM private keys, AWS secret keys next to their name, and values assigned to
//! secret-looking names.

use super::{re, Rule, Spec};
use crate::codec::base64_decode;
use crate::output::detectors::{Action, Category};
use crate::output::matcher::{ByteSet, Lookback, Matcher, OpenEnd, RegexRun, Tri, DIGIT};

const ALNUM: ByteSet = ByteSet::from_spec(b"A-Za-z0-9");
const PEM_CLASS: ByteSet = ByteSet::from_spec(b"A-Z0-9 _-");
const PEM_START: ByteSet = ByteSet::from_spec(b"-");
const TOKEN_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9_-");
const JWT_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9_.-");
const URL_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9_./:-");
const BASE64_CLASS: ByteSet = ByteSet::from_spec(b"A-Za-z0-9/+");
/// Values of `key = value` assignments: printable, without quotes and separators.
const VALUE_CLASS: ByteSet = ByteSet::printable_except(b"\"'`,;<>(){}[]\\");
/// What stands right before an assigned value: `=`, `:`, `=>`, `>` (XML), `,` (a call).
const ASSIGN: ByteSet = ByteSet::from_spec(b"=:>,");

const GITLAB_LEADS: &[&str] = &["glpat-", "glptt-", "gldt-", "glrt-", "GR1348941"];

pub const RULES: &[Rule] = &[
    Rule {
        id: "private_key",
        category: Category::Secret,
        about: "PEM private keys (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted): a header followed by a base64 body, suppressed from the header to the END line.",
        action: Action::Redact,
        claims: &["private-key"],
        spec: Spec::Built(pem),
        examples: &[
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yL4Wn2ZPnBNkZ7zG9DJ1p3N0r4I1ggNJx0VpIbDnbi0B1cJpMAK+\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,5AB1F2C3D4E5F60718293A4B5C6D7E8F\n\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n-----END RSA PRIVATE KEY-----",
            // A service-account key file: the PEM inside a JSON string, its line breaks escaped.
            r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n"}"#,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v1\n\nlQOYBF0hZ6kBCADGm8m4kZ9YJ3uM2zqXqS3LrKX8vTnLqjvJ8Xw9b0kZl3oA2kQn\n-----END PGP PRIVATE KEY BLOCK-----",
        ],
        counter_examples: &[
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----",
            // A header with no body (an answer explaining the format, a string literal) is
            // not a key, and must not hide the rest of the answer.
            "A key file starts with -----BEGIN RSA PRIVATE KEY----- and ends with an END line.",
            "const HEADER: &str = \"-----BEGIN PRIVATE KEY-----\";\nfn main() {}",
            "-----BEGIN EC PRIVATE KEY-----\n...\n-----END EC PRIVATE KEY-----",
        ],
    },
    Rule {
        id: "aws_access_key",
        category: Category::Secret,
        about: "AWS access key ids: a four-letter prefix and 16 base32 characters.",
        action: Action::Redact,
        claims: &["aws-access-token"],
        spec: Spec::Token {
            leads: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
            class: ALNUM,
            judge: judge_aws_key_id,
            glued: true,
        },
        examples: &[
            "key id AKIAZ3MSJV4WWNKWW5FG here",
            "AKIAZ3MSJV4WWNKWW5FG",
            // Obfuscated: a letter glued in front, an invisible character inside, full-width
            // and Cyrillic look-alike letters.
            "xAKIAZ3MSJV4WWNKWW5FG",
            "AKIA\u{200B}Z3MSJV4WWNKWW5FG",
            "AKIA\u{00AD}Z3MSJV\u{FE0F}4WWNKWW5FG",
            "\u{FF21}\u{FF2B}\u{FF29}\u{FF21}Z3MSJV4WWNKWW5FG",
            "\u{0410}KIAZ3MSJV4WWNKWW5FG",
        ],
        counter_examples: &[
            "AKIAZ3MSJV4WWNKWW5F",
            "AKIAIOSFODNN7EXAMPLE",
            "AKIAZ3MSJV4WWNKWW5FGX",
        ],
    },
    Rule {
        id: "github_token",
        category: Category::Secret,
        about: "GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens.",
        action: Action::Redact,
        claims: &["github-*"],
        spec: Spec::Token {
            leads: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
            class: TOKEN_CLASS,
            judge: judge_github,
            glued: true,
        },
        examples: &[
            "token: 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",
            "token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",
            "ghp_wWPw5k4aXcaT4fNP\u{2060}0UcnZwJUVFk6LO0pINUx",
        ],
        counter_examples: &["ghp_short", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
    },
    Rule {
        id: "github_token",
        category: Category::Secret,
        about: "GitHub fine-grained personal access tokens.",
        action: Action::Redact,
        claims: &["github-fine-grained-pat"],
        spec: Spec::Token {
            leads: &["github_pat_"],
            class: TOKEN_CLASS,
            judge: judge_github_pat,
            glued: true,
        },
        examples: &[
            "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",
        ],
        counter_examples: &["github_pat_11u8jzPde0IgxLd6GncfBA", "github_pat_"],
    },
    Rule {
        id: "gitlab_token",
        category: Category::Secret,
        about: "GitLab personal, pipeline-trigger, deploy and runner tokens.",
        action: Action::Redact,
        claims: &[
            "gitlab-pat",
            "gitlab-ptt",
            "gitlab-rrt",
            "gitlab-pat-routable",
            "gitlab-runner-authentication-token-routable",
        ],
        spec: Spec::Token {
            leads: GITLAB_LEADS,
            class: TOKEN_CLASS,
            judge: judge_gitlab,
            glued: true,
        },
        examples: &["export GITLAB_TOKEN=glpat-P3fS2qHx6kwXoIIXGvOo"],
        counter_examples: &["glpat-short", "glpat-xxxxxxxxxxxxxxxxxxxx"],
    },
    Rule {
        id: "slack_token",
        category: Category::Secret,
        about: "Slack bot, user, app, legacy and configuration tokens.",
        action: Action::Redact,
        claims: &[
            "slack-bot-token",
            "slack-user-token",
            "slack-app-token",
            "slack-legacy-bot-token",
            "slack-legacy-token",
            "slack-legacy-workspace-token",
            "slack-config-access-token",
            "slack-config-refresh-token",
        ],
        spec: Spec::Token {
            leads: &[
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
            class: JWT_CLASS,
            judge: judge_slack,
            glued: true,
        },
        examples: &["xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"],
        counter_examples: &["xoxb-not-a-token", "xoxb-", "xoxb-888889ssEG-888888G"],
    },
    Rule {
        id: "slack_webhook",
        category: Category::Secret,
        about: "Slack incoming-webhook, workflow and trigger URLs.",
        action: Action::Redact,
        claims: &["slack-webhook-url"],
        spec: Spec::Token {
            leads: &[
                "https://hooks.slack.com/",
                "http://hooks.slack.com/",
                "hooks.slack.com/",
            ],
            class: URL_CLASS,
            judge: judge_slack_webhook,
            glued: false,
        },
        examples: &[
            "POST to https://hooks.slack.com/services/T024BE7LD/B01ABCDEF12/zL9kQ2wX7mN4pR8sT1vY5bC3",
        ],
        counter_examples: &["https://hooks.slack.com/help", "see hooks.slack.com/ for docs"],
    },
    Rule {
        id: "stripe_key",
        category: Category::Secret,
        about: "Stripe secret and restricted keys, live, test and prod.",
        action: Action::Redact,
        claims: &["stripe-access-token"],
        spec: Spec::Token {
            leads: &[
                "sk_live_", "rk_live_", "sk_test_", "rk_test_", "sk_prod_", "rk_prod_",
            ],
            class: TOKEN_CLASS,
            judge: judge_stripe,
            glued: true,
        },
        examples: &["stripe.api_key = sk_live_51HqLyjWDarjtT1zdp7dcXYZ0aBcDeFgHiJ"],
        counter_examples: &["sk_live_short", "sk_test_xxxxxxxxxxxxxxxxxxxxxxxx"],
    },
    Rule {
        id: "anthropic_api_key",
        category: Category::Secret,
        about: "Anthropic API and admin keys: sk-ant-<kind><nn>-, 93 characters, AA.",
        action: Action::Redact,
        claims: &["anthropic-api-key", "anthropic-admin-api-key"],
        spec: Spec::Token {
            leads: &["sk-ant-"],
            class: TOKEN_CLASS,
            judge: judge_anthropic,
            glued: true,
        },
        examples: &[
            "sk-ant-api03-6UMFxFkM-R5Kjp1vRt_1fjORS-6ilI8ihN5KXSc7Tvo-hBKqFYY-kv5ZJr3J1TWDtkwtDDb_xHKas1VOqg6YYZYn9ZhyiAA",
        ],
        counter_examples: &["sk-ant-api03-short", "sk-ant-"],
    },
    Rule {
        id: "openai_api_key",
        category: Category::Secret,
        about: "OpenAI project, service-account, admin and legacy keys (letters and digits mixed).",
        action: Action::Redact,
        claims: &["openai-api-key"],
        spec: Spec::Token {
            leads: &["sk-"],
            class: TOKEN_CLASS,
            judge: judge_openai,
            glued: false,
        },
        examples: &["OPENAI_API_KEY=sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"],
        counter_examples: &[
            "sk-learn-tutorial-for-beginners-and-experts-alike",
            "sk-learn",
        ],
    },
    Rule {
        id: "google_api_key",
        category: Category::Secret,
        about: "Google Cloud API keys: AIza and 35 more characters.",
        action: Action::Redact,
        claims: &["gcp-api-key"],
        spec: Spec::Token {
            leads: &["AIza"],
            class: TOKEN_CLASS,
            judge: judge_google,
            // Four letters are too little to trust inside a longer random run.
            glued: false,
        },
        examples: &["key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&q=x"],
        counter_examples: &["AIzaShort", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeX"],
    },
    Rule {
        id: "jwt",
        category: Category::Secret,
        about: "JSON Web Tokens: a base64url JSON header, a dot, and a JSON payload.",
        action: Action::Redact,
        claims: &["jwt"],
        spec: Spec::Token {
            leads: &["eyJ"],
            class: JWT_CLASS,
            judge: judge_jwt,
            glued: false,
        },
        examples: &[
            "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ],
        counter_examples: &["eyJnotajwt", "eyJhbGciOiJIUzI1NiJ9.notjson"],
    },
    Rule {
        id: "npm_token",
        category: Category::Secret,
        about: "npm access tokens: npm_ and 36 letters and digits.",
        action: Action::Redact,
        claims: &["npm-access-token"],
        spec: Spec::Token {
            leads: &["npm_"],
            class: TOKEN_CLASS,
            judge: judge_npm,
            glued: true,
        },
        examples: &["//registry.npmjs.org/:_authToken=npm_Xw3kP9qLm2Rt7Vz5Yb8Nc4Hd6Jf1Gs0Ka2Qe"],
        counter_examples: &["npm_config_cache", "npm_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
    },
    Rule {
        id: "pypi_token",
        category: Category::Secret,
        about: "PyPI upload tokens: a macaroon starting pypi-AgEIcHlwaS5vcmc.",
        action: Action::Redact,
        claims: &["pypi-upload-token"],
        spec: Spec::Token {
            leads: &["pypi-AgEIcHlwaS5vcmc"],
            class: TOKEN_CLASS,
            judge: judge_pypi,
            glued: true,
        },
        examples: &["password = pypi-AgEIcHlwaS5vcmcCJGI4YmNhMDA5LTg1NWItNDEzOC05YzE1LTE3ZjZjNjYwNzkwMQACKlsz"],
        counter_examples: &["pypi-AgEIcHlwaS5vcmc", "pypi-token"],
    },
    Rule {
        id: "docker_hub_token",
        category: Category::Secret,
        about: "Docker Hub personal access tokens: dckr_pat_ and 27 characters.",
        action: Action::Redact,
        claims: &["docker-*"],
        spec: Spec::Token {
            leads: &["dckr_pat_"],
            class: TOKEN_CLASS,
            judge: judge_docker,
            glued: true,
        },
        examples: &["docker login -u me -p dckr_pat_2b3e36beeb386dfdaacb9b46004"],
        counter_examples: &["dckr_pat_short", "dckr_pat_"],
    },
    Rule {
        id: "vault_token",
        category: Category::Secret,
        about: "HashiCorp Vault service and batch tokens: hvs. or hvb. and 90 or more characters.",
        action: Action::Redact,
        claims: &["vault-*"],
        spec: Spec::Token {
            leads: &["hvs.", "hvb."],
            class: JWT_CLASS,
            judge: judge_vault,
            glued: true,
        },
        examples: &["VAULT_TOKEN=hvs.CAESIJlU9JMYEhOPYv4igdhm9PnZDrabYTobQ4Ymnlq1qY-LGh4KHGh2cy5WSEpPbjZoZnBLM3RkeTdlOEF2RzJ6OHM"],
        counter_examples: &["hvs.short", "hvs."],
    },
    Rule {
        id: "twilio_api_key",
        category: Category::Secret,
        about: "Twilio API key SIDs: SK and 32 hex digits.",
        action: Action::Redact,
        claims: &["twilio-api-key"],
        spec: Spec::Token {
            leads: &["SK"],
            class: ALNUM,
            judge: judge_twilio,
            glued: false,
        },
        examples: &["TWILIO_API_KEY=SKa4f2e8b17c9d03e5f6a7b8c9d0e1f2a3"],
        counter_examples: &["SKIPPED", "SK00000000000000000000000000000000"],
    },
    Rule {
        id: "sendgrid_api_key",
        category: Category::Secret,
        about: "SendGrid API keys: SG., 22 characters, a dot, 43 characters.",
        action: Action::Redact,
        claims: &["sendgrid-api-token"],
        spec: Spec::Token {
            leads: &["SG."],
            class: JWT_CLASS,
            judge: judge_sendgrid,
            glued: true,
        },
        examples: &["SENDGRID_API_KEY=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"],
        counter_examples: &["SG.short", "SG.ngeVfQFYQlKU0ufo8x5d1A"],
    },
    Rule {
        id: "mailgun_api_key",
        category: Category::Secret,
        about: "Mailgun private API keys: key- and 32 lower-case hex digits.",
        action: Action::Redact,
        claims: &["mailgun-private-api-token"],
        spec: Spec::Token {
            leads: &["key-"],
            class: TOKEN_CLASS,
            judge: judge_mailgun,
            glued: false,
        },
        examples: &["api_key: key-3a96f1c8e2b74d05a9c6e1f28b3d7a40"],
        counter_examples: &["key-value store", "key-0123456789abcdef0123456789abcdef0"],
    },
    Rule {
        id: "huggingface_token",
        category: Category::Secret,
        about: "Hugging Face access tokens: hf_ (or api_org_) and 34 letters.",
        action: Action::Redact,
        claims: &["huggingface-*"],
        spec: Spec::Token {
            leads: &["hf_", "api_org_"],
            class: TOKEN_CLASS,
            judge: judge_huggingface,
            glued: true,
        },
        examples: &["HF_TOKEN=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"],
        counter_examples: &["hf_hub_download", "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
    },
    Rule {
        id: "databricks_token",
        category: Category::Secret,
        about: "Databricks personal access tokens: dapi and 32 hex digits (and -N).",
        action: Action::Redact,
        claims: &["databricks-api-token"],
        spec: Spec::Token {
            leads: &["dapi"],
            class: TOKEN_CLASS,
            judge: judge_databricks,
            glued: false,
        },
        examples: &["token = dapi8f4e2b1c9d7a6e5f3b2c1d0e9f8a7b6c-2"],
        counter_examples: &["dapi_version", "dapi00000000000000000000000000000000"],
    },
    Rule {
        id: "shopify_token",
        category: Category::Secret,
        about: "Shopify access, custom-app, private-app and shared-secret tokens: shpat_/shpca_/shppa_/shpss_ and 32 hex digits.",
        action: Action::Redact,
        claims: &["shopify-*"],
        spec: Spec::Token {
            leads: &["shpat_", "shpca_", "shppa_", "shpss_"],
            class: TOKEN_CLASS,
            judge: judge_shopify,
            glued: true,
        },
        examples: &["X-Shopify-Access-Token: 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"],
        counter_examples: &["shpat_short", "shpat_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"],
    },
    Rule {
        id: "sentry_token",
        category: Category::Secret,
        about: "Sentry organization and user auth tokens: sntrys_ and a signed payload, sntryu_ and 64 hex digits.",
        action: Action::Redact,
        claims: &["sentry-*"],
        spec: Spec::Token {
            leads: &["sntrys_", "sntryu_"],
            class: JWT_CLASS,
            judge: judge_sentry,
            glued: true,
        },
        examples: &["SENTRY_AUTH_TOKEN=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"],
        counter_examples: &["sntryu_short", "sntrys_"],
    },
    Rule {
        id: "url_credentials",
        category: Category::Secret,
        about: "Passwords in URLs and connection strings (postgres://user:password@host, https://user:password@host).",
        action: Action::Redact,
        claims: &[],
        spec: Spec::Built(url_password),
        examples: &[
            "DATABASE_URL=postgres://app:Xk29fLq0Zt7w@db.internal:5432/app",
            "mongodb+srv://admin:S3cr3tPassw0rd@cluster0.ab1cd.mongodb.net/test",
            "git clone https://deploy:q8Rt2vLm9Xw1@git.corp.io/team/repo.git",
        ],
        counter_examples: &[
            "postgres://user:password@localhost/db",
            "redis://:${REDIS_PASSWORD}@cache:6379",
            "https://user:<password>@host",
            "see http://example.org:8080/path",
            "postgres://app@db.internal/app",
        ],
    },
    Rule {
        id: "aws_secret_key",
        category: Category::Secret,
        about: "AWS secret access keys: 40 base64 characters assigned to an AWS secret name.",
        action: Action::Redact,
        claims: &[],
        spec: Spec::Built(aws_secret),
        examples: &["aws_secret_access_key = \"A4uoRgnatmUdjAWtGSU8po/799NksnRH9ucAUsdM\""],
        counter_examples: &[
            "aws_region = \"A4uoRgnatmUdjAWtGSU8po/799NksnRH9ucAUsdM\"",
            "aws_secret_access_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"",
        ],
    },
    Rule {
        id: "secret_assignment",
        category: Category::Secret,
        about: "A random-looking value assigned to a secret name (password: \"...\", <token>...</token>, set(\"api_key\", \"...\")).",
        action: Action::Redact,
        claims: &["generic-api-key"],
        spec: Spec::Built(assignment_value),
        examples: &[
            "password = \"h7Gk29fLq0Xz\"",
            "<apiToken>Qm93ZXJ5X2x5a2U4</apiToken>",
        ],
        counter_examples: &[
            "password = \"changeme\"",
            "user_id = \"h7Gk29fLq0Xz\"",
            "password = \"correcthorse\"",
            "pub const IFLA_INET6_TOKEN: _bindgen_ty_7 = _bindgen_ty_7::IFLA_INET6_TOKEN;",
            "NL80211_AUTHTYPE_MAX: nl80211_auth_type = 4",
        ],
    },
    Rule {
        id: "secret_assignment",
        category: Category::Secret,
        about: "name=value with no space, the value random-looking (query strings, env files).",
        action: Action::Redact,
        claims: &["generic-api-key"],
        spec: Spec::Built(assignment_inline),
        examples: &[
            "curl https://api.test/?api_key=Zx81LmQ0pR7tVw2Y",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJDREVGR0g0NTY3OA==;EndpointSuffix=core.windows.net",
        ],
        counter_examples: &[
            "api_key=your_api_key_here",
            "version=1.2.3",
            "--md5-authentication-key=MD5_AUTHENTICATION_KEY",
        ],
    },
];

fn pem() -> Option<Matcher> {
    let r = re(r"^-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----")?;
    let run = RegexRun::new(PEM_CLASS, PEM_START, r)
        .open_end(OpenEnd::PemEnd)
        .min_len(27);
    Some(Matcher::Regex(Box::new(run)))
}

fn aws_secret() -> Option<Matcher> {
    let ctx = re(r#"(?i)aws.{0,20}(?:secret|private).{0,20}[:=]{1,2}\s{0,3}["']?$"#)?;
    // The value is a whole run of exactly 40 bytes of the class.
    let run = RegexRun::whole(BASE64_CLASS, BASE64_CLASS)
        .validate(|v| v.len() == 40 && entropy(v) > 3.5)
        .context(Lookback::forward(ctx))
        .context_words(&["aws"])
        .context_gate(ASSIGN)
        .min_len(40);
    Some(Matcher::Regex(Box::new(run)))
}

/// Names under which secrets are assigned in code, config files and prose.
const SECRET_NAMES: &str = r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|account[_-]?key|sharedaccesskey|auth[_-]?(?:key|token)|[_-]auth|client[_-]?secret|private[_-]?key|credential)s?[A-Za-z0-9_.-]{0,20}";
/// [`SECRET_NAMES`] read backwards.
const SECRET_NAMES_REV: &str = r"[A-Za-z0-9_.-]{0,20}s?(?:(?:drow|dw|esarhp)?ssap|dwp|terces|nekot|yek[_-]?ipa|yekipa|yek[_-]?ssecca|yek[_-]?tnuocca|yeksseccaderahs|(?:yek|nekot)[_-]?htua|htua[_-]|terces[_-]?tneilc|yek[_-]?etavirp|laitnederc)";

/// Words one of which every name in [`SECRET_NAMES`] contains (a cheap filter before it).
pub(crate) const SECRET_NAME_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
];

/// Assignment operators across config files and languages.
const ASSIGN_OPS: &str = r"(?:::=|:::=|:=|=>|\?=|\.=|\|\|=|[:=])";
/// [`ASSIGN_OPS`] read backwards.
const ASSIGN_OPS_REV: &str = r"(?:=::|=:::|=:|>=|=\?|=\.|=\|\||[:=])";

/// Names that hold identifiers, locations or public values, not secrets.
#[cfg(test)]
const NOT_SECRET_NAMES: &str = r#"(?i)(?:(?:id|ids|name|names|url|uri|path|file|dir|type|mode|public[a-z_]*)(?:["'\]>]|\s+[a-z]+)?|(?:csrf|xsrf|nonce)[A-Za-z0-9_.-]*)\s{0,3}"#;
/// `NOT_SECRET_NAMES` read backwards.
const NOT_SECRET_NAMES_REV: &str = r#"(?i)\s{0,3}(?:(?:["'\]>]|[a-z]+\s+)?(?:di|sdi|eman|seman|lru|iru|htap|elif|rid|epyt|edom|[a-z_]*cilbup)|[A-Za-z0-9_.-]*(?:frsc|frsx|ecnon))"#;

/// The look-back of a value assigned to a secret name: an assignment, an XML element, or the
/// first argument of a call. The definition; the detector matches [`assignment_context_rev`].
#[cfg(test)]
fn assignment_context() -> String {
    format!(
        r#"(?i)(?:{SECRET_NAMES}["'\]]?(?:\s+(?:string|str|var|const|let))?\s{{0,3}}{ASSIGN_OPS}\s{{0,3}}["'`]?|<[A-Za-z0-9_.:-]*{SECRET_NAMES}>\s*|{SECRET_NAMES}["']\s*,\s*["'])$"#
    )
}

/// `assignment_context` read backwards, anchored at the look-back's end.
fn assignment_context_rev() -> String {
    format!(
        r#"(?i)^(?:["'`]?\s{{0,3}}{ASSIGN_OPS_REV}\s{{0,3}}(?:(?:gnirts|rts|rav|tsnoc|tel)\s+)?["'\]]?{SECRET_NAMES_REV}|\s*>{SECRET_NAMES_REV}[A-Za-z0-9_.:-]*<|["']\s*,\s*["']{SECRET_NAMES_REV})"#
    )
}

/// A name that holds no secret right before the value. The definition; the detectors match
/// [`not_secret_names_rev`].
#[cfg(test)]
fn not_secret_names() -> String {
    format!(r#"{NOT_SECRET_NAMES}(?:{ASSIGN_OPS}|,)?\s{{0,3}}["'`]?$"#)
}

/// `not_secret_names` read backwards, anchored at the look-back's end.
fn not_secret_names_rev() -> String {
    format!(r#"(?i)^["'`]?\s{{0,3}}(?:{ASSIGN_OPS_REV}|,)?{NOT_SECRET_NAMES_REV}"#)
}

/// `password: "value"`: the value is its own run; the name stands before it, as an
/// assignment, an XML element, or the first argument of a call (`set("api_token", "...")`).
fn assignment_value() -> Option<Matcher> {
    let ctx = re(&assignment_context_rev())?;
    let deny = re(&not_secret_names_rev())?;
    // The value is the whole run: 8 to 200 bytes without `=` or `:`, then at most two `=`
    // of padding (the class holds no white space).
    let run = RegexRun::whole(VALUE_CLASS, VALUE_CLASS);
    // A plausible secret has a digit: runs without one are not looked at, and stretches
    // without one are passed over.
    Some(Matcher::Regex(Box::new(
        run.validate(|v| assigned_value_shape(v) && plausible_secret(v))
            .context(Lookback::reversed(ctx))
            .context_words(SECRET_NAME_WORDS)
            .context_deny(Lookback::reversed(deny))
            .context_gate(ASSIGN)
            .trigger(DIGIT)
            .min_digits(1)
            .min_len(8),
    )))
}

/// 8 to 200 bytes without `=` or `:`, then at most two `=` of padding.
fn assigned_value_shape(v: &str) -> bool {
    let body = v.trim_end_matches('=');
    v.len() - body.len() <= 2 && (8..=200).contains(&body.len()) && !body.contains([':', '='])
}

/// The password of `scheme://user:password@host`, in URLs and connection strings.
fn url_password() -> Option<Matcher> {
    let r = re(r"[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{0,64}:([^\s/@]{4,128})@[A-Za-z0-9.-]+")?;
    // The value class of assignments: a URL ends at a comma or semicolon too, so a word
    // followed by punctuation is released at once.
    let run = RegexRun::new(VALUE_CLASS, ALNUM, r)
        .keywords(&["://"])
        .group(1)
        .validate(plausible_secret)
        .trigger(ByteSet::from_spec(b"@"))
        .min_len(12);
    Some(Matcher::Regex(Box::new(run)))
}

/// `password=value` in one run.
fn assignment_inline() -> Option<Matcher> {
    let r = re(&format!(
        r"(?i){SECRET_NAMES}{ASSIGN_OPS}([^\s=]{{8,200}}={{0,2}})$"
    ))?;
    let run = RegexRun::new(VALUE_CLASS, VALUE_CLASS, r);
    Some(Matcher::Regex(Box::new(
        run.trigger(ByteSet::from_spec(b"=:"))
            .keywords(SECRET_NAME_WORDS)
            .group(1)
            .validate(plausible_secret)
            .context_deny(Lookback::reversed(re(&not_secret_names_rev())?))
            .min_digits(1)
            .min_len(11),
    )))
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
    let lead = lead_len(run, GITLAB_LEADS);
    at_least(run, complete, lead + 20, lead)
}

fn judge_slack(run: &str, complete: bool) -> Tri {
    // Slack tokens: digit groups (team, user, bot ids) and a random part, or one long random
    // part (configuration and refresh tokens). Every condition only grows with the run: the
    // last group of an unfinished run may still gain letters, so it is not an id yet.
    let body = run.split_once('-').map_or("", |(_, b)| b);
    let groups: Vec<&str> = body.split('-').collect();
    let settled = if complete {
        groups.len()
    } else {
        groups.len().saturating_sub(1)
    };
    let ids = groups[..settled]
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

fn hex_from(run: &str, lead: usize, upto: usize) -> bool {
    run.get(lead..run.len().min(upto))
        .is_some_and(|b| b.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn lower_hex_from(run: &str, lead: usize, upto: usize) -> bool {
    run.get(lead..run.len().min(upto)).is_some_and(|b| {
        b.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

fn judge_npm(run: &str, complete: bool) -> Tri {
    if !run
        .get(4..run.len().min(40))
        .is_some_and(|b| all_in(b, &ALNUM))
    {
        return Tri::No;
    }
    fixed_len(run, complete, 40, 4)
}

fn judge_pypi(run: &str, complete: bool) -> Tri {
    at_least(run, complete, 20 + 50, 20)
}

fn judge_docker(run: &str, complete: bool) -> Tri {
    fixed_len(run, complete, 9 + 27, 9)
}

fn judge_vault(run: &str, complete: bool) -> Tri {
    at_least(run, complete, 4 + 90, 4)
}

fn judge_twilio(run: &str, complete: bool) -> Tri {
    if !hex_from(run, 2, 34) {
        return Tri::No;
    }
    fixed_len(run, complete, 34, 2)
}

fn judge_sendgrid(run: &str, complete: bool) -> Tri {
    // SG. + 22 + . + 43: the dots only where the format puts them.
    let b = run.as_bytes();
    let dots_ok = b
        .iter()
        .enumerate()
        .skip(3)
        .all(|(i, &c)| (c == b'.') == (i == 25));
    if !dots_ok {
        return Tri::No;
    }
    fixed_len(run, complete, 69, 3)
}

fn judge_mailgun(run: &str, complete: bool) -> Tri {
    if !lower_hex_from(run, 4, 36) {
        return Tri::No;
    }
    fixed_len(run, complete, 36, 4)
}

fn judge_huggingface(run: &str, complete: bool) -> Tri {
    let lead = if run.starts_with("api_org_") { 8 } else { 3 };
    let total = lead + 34;
    if !run
        .get(lead..run.len().min(total))
        .is_some_and(|b| b.bytes().all(|c| c.is_ascii_alphabetic()))
    {
        return Tri::No;
    }
    fixed_len(run, complete, total, lead)
}

fn judge_databricks(run: &str, complete: bool) -> Tri {
    // dapi + 32 lower-case hex digits, optionally -N.
    if !lower_hex_from(run, 4, 36) {
        return Tri::No;
    }
    let b = run.as_bytes();
    let suffix_ok = match b.len() {
        0..=36 => true,
        37 => b[36] == b'-',
        38 => b[36] == b'-' && b[37].is_ascii_digit(),
        _ => false,
    };
    if !suffix_ok {
        return Tri::No;
    }
    // Any run may still grow past the format: decided when it ends.
    if !complete {
        return Tri::NeedMore;
    }
    match b.len() {
        36 | 38 => fixed_len(&run[..36], true, 36, 4),
        _ => Tri::No,
    }
}

fn judge_shopify(run: &str, complete: bool) -> Tri {
    if !hex_from(run, 6, 38) {
        return Tri::No;
    }
    fixed_len(run, complete, 38, 6)
}

fn judge_sentry(run: &str, complete: bool) -> Tri {
    if run.starts_with("sntryu_") {
        if !lower_hex_from(run, 7, 71) {
            return Tri::No;
        }
        return fixed_len(run, complete, 71, 7);
    }
    at_least(run, complete, 7 + 50, 7)
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

// ---------------------------------------------------------------------------------------------
// Validators.

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
    if identifier(v) {
        return false;
    }
    let has_digit = v.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = v.bytes().any(|b| b.is_ascii_alphabetic());
    v.len() >= 8 && has_digit && has_alpha && entropy(v) >= 3.0
}

/// A name in code rather than a secret: words joined by underscores, each all letters or a
/// short number (`_bindgen_ty_7`, `nl80211_auth_type`, `MD5_AUTHENTICATION_KEY`), or a path
/// (`Type::Variant`).
fn identifier(v: &str) -> bool {
    if v.contains("::") {
        return true;
    }
    let word_chars = v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !word_chars || !v.contains('_') {
        return false;
    }
    v.split('_').filter(|p| !p.is_empty()).all(|p| {
        let digits = p.bytes().filter(u8::is_ascii_digit).count();
        // A word, or a word ending in a short number (`nl80211`, `ty7`), or a short number.
        digits <= 5 && p.bytes().take_while(u8::is_ascii_alphabetic).count() + digits >= p.len()
            || (p.len() <= 3 && digits == p.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::rules::check_reversed_lookback;

    const NAMES: &[&str] = &[
        "pass",
        "Password",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access-key",
        "accountKey",
        "sharedaccesskey",
        "auth_token",
        "authkey",
        "-auth",
        "client_secret",
        "private-key",
        "credential",
        "key",
        "id",
        "names",
        "url",
        "path",
        "type",
        "mode",
        "public_x",
        "csrf",
        "xsrf_t",
        "nonce",
        "x",
    ];
    /// Name suffixes, around the twenty bytes a name may carry.
    const SUFFIX: &[&str] = &[
        "",
        "",
        "s",
        "_x",
        ".y9",
        "sx_a_b_c_d_e_f_g_h_ij",
        "_a_b_c_d_e_f_g_h_i_j",
        "a_b_c_d_e_f_g_h_i_j",
        "-",
        " value",
    ];
    const BLANKS: &[&str] = &["", "", " ", "   ", "    ", "\t", "\n"];
    const OPS: &[&str] = &[
        "=", ":", ":=", "::=", ":::=", "=>", "?=", ".=", "||=", "|=", ",", "", "-",
    ];
    const QUOTE: &[&str] = &["", "", "\"", "'", "`", "]"];
    const BEFORE: &[&str] = &["", "", "x", " ", "é", "\n", "<", "<a.b:", "<a é", "9", "_"];
    const END: &[&str] = &["", "", "", "x", " "];

    /// Look-backs of assignments, elements and calls (and of names that hold no secret).
    const SHAPES: &[&[&[&str]]] = &[
        // name = "
        &[
            BEFORE,
            NAMES,
            SUFFIX,
            QUOTE,
            &[
                "", "", " string", " const", "  let", " var", " str", "string",
            ],
            BLANKS,
            OPS,
            BLANKS,
            QUOTE,
            END,
        ],
        // <name>
        &[
            BEFORE,
            &["<", "<a.b:", "<x", "", "< "],
            NAMES,
            SUFFIX,
            &[">", ">", "", "]"],
            BLANKS,
            END,
        ],
        // set("name", "
        &[
            BEFORE,
            NAMES,
            SUFFIX,
            QUOTE,
            BLANKS,
            &[",", ",", "", ";"],
            BLANKS,
            QUOTE,
            END,
        ],
        // names that hold no secret: id = , url" , type value:
        &[
            BEFORE,
            NAMES,
            &["", "\"", "]", ">", " word", "  a", " 9"],
            BLANKS,
            OPS,
            BLANKS,
            QUOTE,
            END,
        ],
    ];

    #[test]
    fn reversed_assignment_context_matches_its_definition() {
        check_reversed_lookback(&assignment_context(), &assignment_context_rev(), SHAPES);
    }

    #[test]
    fn reversed_secret_name_denial_matches_its_definition() {
        check_reversed_lookback(&not_secret_names(), &not_secret_names_rev(), SHAPES);
    }
}
