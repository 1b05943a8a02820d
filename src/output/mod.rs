//! The model-output layer: detectors for PII, secrets and leaked system prompts, a streaming
//! redactor that never lets a detected value through, and protocol-aware filters for OpenAI and
//! Anthropic responses (streamed and whole).

pub mod detectors;
pub mod fingerprints;
pub mod matcher;
pub mod redact;
pub mod rules;
pub mod shapes;
pub mod words;

pub use detectors::{catalog, Action, CatalogConfig, Category, CustomDetector, Detector};
pub use redact::{Finding, Redaction, Scanner, StreamRedactor, DEFAULT_HOLDBACK};
pub mod filter;
