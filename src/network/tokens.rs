//! Token arithmetic for the limits: a cheap estimate of a request's prompt, the size of the
//! reservation made before forwarding, and the tokens a finished response is settled with.

use serde_json::{Map, Value};

use super::limits::Tier;
use crate::protocol::Wire;

/// Completion tokens reserved when neither the request nor the tier names a maximum.
pub const DEFAULT_COMPLETION_RESERVE: u32 = 1024;
/// Response bytes per token when the origin reports no usage.
pub const BYTES_PER_TOKEN_ESTIMATE: usize = 16;

/// A rough token count for text: about four bytes a token for English, at least one per word.
pub fn estimate_tokens(text_bytes: usize, words: usize) -> u32 {
    let by_bytes = text_bytes.div_ceil(4);
    u32::try_from(by_bytes.max(words)).unwrap_or(u32::MAX)
}

/// Estimated prompt tokens of a request: every string in the fields the protocol counts.
pub fn prompt_tokens(wire: &dyn Wire, body: &Map<String, Value>) -> u32 {
    fn walk(v: &Value, bytes: &mut usize, words: &mut usize) {
        match v {
            Value::String(s) => {
                *bytes += s.len();
                *words += s.split_whitespace().count();
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, bytes, words)),
            Value::Object(o) => o.values().for_each(|x| walk(x, bytes, words)),
            _ => {}
        }
    }
    let (mut bytes, mut words) = (0, 0);
    for k in wire.prompt_fields() {
        if let Some(v) = body.get(*k) {
            walk(v, &mut bytes, &mut words);
        }
    }
    estimate_tokens(bytes, words)
}

/// The completion limit a request asks for: the first of the protocol's fields the origin
/// reads that is not `null` (counts are checked before, see [`crate::protocol::check_counts`]).
pub fn requested_completion(wire: &dyn Wire, body: &Map<String, Value>) -> Option<u64> {
    wire.completion_limit_fields()
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
}

/// Every completion limit the request sets (an origin may read any of them).
pub fn completion_limits(wire: &dyn Wire, body: &Map<String, Value>) -> Vec<u64> {
    wire.completion_limit_fields()
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_u64))
        .collect()
}

/// Lowers every completion limit the request sets above `cap` to `cap`.
pub fn clamp_completion(wire: &dyn Wire, body: &mut Map<String, Value>, cap: u32) {
    for k in wire.completion_limit_fields() {
        if let Some(v) = body.get_mut(*k) {
            if v.as_u64().is_some_and(|n| n > u64::from(cap)) {
                *v = Value::from(cap);
            }
        }
    }
}

/// How many completions the request asks for (`n`, default 1).
pub fn choices(body: &Map<String, Value>) -> u32 {
    body.get("n")
        .and_then(Value::as_u64)
        .map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

/// Tokens to reserve before forwarding: the prompt estimate plus the completion the request
/// (or else the tier) allows. Nothing when the tier has no token budget.
pub fn reservation(tier: &Tier, prompt: u32, requested: Option<u64>, choices: u32) -> u32 {
    if tier.tokens_per_minute.is_none() {
        return 0;
    }
    let completion = requested
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .or(tier.max_tokens)
        .unwrap_or(DEFAULT_COMPLETION_RESERVE);
    prompt.saturating_add(completion.saturating_mul(choices.max(1)))
}

/// Tokens a finished response is settled with: what the origin reported, else an estimate from
/// the bytes sent.
pub fn settled(reported: Option<u32>, response_bytes: usize) -> u32 {
    reported.unwrap_or_else(|| {
        u32::try_from(response_bytes / BYTES_PER_TOKEN_ESTIMATE).unwrap_or(u32::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn estimates() {
        assert_eq!(estimate_tokens(0, 0), 0);
        assert_eq!(estimate_tokens(9, 1), 3);
        assert_eq!(estimate_tokens(4, 10), 10);
        let wire = Protocol::OpenAiChat.wire();
        let b = body(
            json!({"model": "a-very-long-model-name-not-counted", "messages": [{"role": "user", "content": "abcdefgh"}]}),
        );
        // "user" and "abcdefgh": 12 bytes, 2 words.
        assert_eq!(prompt_tokens(wire, &b), 3);
    }

    #[test]
    fn reservation_sizes() {
        let wire = Protocol::OpenAiChat.wire();
        let budget = Tier {
            tokens_per_minute: Some(1000),
            max_tokens: Some(300),
            ..Tier::default()
        };
        assert_eq!(reservation(&Tier::default(), 10, Some(5), 1), 0);
        assert_eq!(reservation(&budget, 10, Some(5), 1), 15);
        assert_eq!(reservation(&budget, 10, None, 1), 310);
        assert_eq!(reservation(&budget, 10, Some(5), 4), 30);
        let no_cap = Tier {
            tokens_per_minute: Some(1000),
            ..Tier::default()
        };
        assert_eq!(
            reservation(&no_cap, 10, None, 1),
            10 + DEFAULT_COMPLETION_RESERVE
        );
        assert_eq!(reservation(&budget, 10, Some(u64::MAX), 1), u32::MAX);
        let b = body(json!({"max_completion_tokens": 7, "max_tokens": 9}));
        assert_eq!(requested_completion(wire, &b), Some(7));
        let b = body(json!({"max_tokens": 9}));
        assert_eq!(requested_completion(wire, &b), Some(9));
        // null means absent: the origin reads max_tokens.
        let b = body(json!({"max_completion_tokens": null, "max_tokens": 9}));
        assert_eq!(requested_completion(wire, &b), Some(9));
        assert_eq!(completion_limits(wire, &b), vec![9]);
        assert_eq!(choices(&body(json!({"n": 3}))), 3);
        assert_eq!(choices(&body(json!({}))), 1);
    }

    #[test]
    fn settlement() {
        assert_eq!(settled(Some(42), 10_000), 42);
        assert_eq!(settled(None, 1600), 100);
    }
}
