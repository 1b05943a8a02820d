//! Strict JSON for request bodies: size and nesting caps, UTF-8, one object, no duplicate keys.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api_error::ApiError;

/// Parses a JSON request body strictly: size and nesting caps, no duplicate keys, an object at
/// the top. What is forwarded is the re-serialization of exactly what was inspected.
pub fn parse_body(
    body: &[u8],
    max_bytes: usize,
    max_depth: usize,
) -> Result<Map<String, Value>, ApiError> {
    if body.len() > max_bytes {
        return Err(ApiError::too_large(max_bytes));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "The request body is empty.",
        ));
    }
    let depth = json_depth(body);
    if depth > max_depth {
        return Err(ApiError::bad_request(
            "json_too_deep",
            format!("The request body nests deeper than {max_depth} levels."),
        ));
    }
    if !integers_fit(body) {
        return Err(ApiError::bad_request(
            "number_out_of_range",
            "The request body holds an integer outside the 64-bit range.",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "The request body is not UTF-8."))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict::deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("The request body is not valid JSON: {e}"),
            )
        })?;
    match v.0 {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "invalid_json",
            "The request body must be a JSON object.",
        )),
    }
}

/// Maximum bracket nesting, outside strings; linear, no recursion.
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in body {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Whether every integer literal outside strings fits in 64 bits. A larger one would be read
/// as a float and forwarded changed, so it is refused instead. Linear, no allocation.
pub fn integers_fit(body: &[u8]) -> bool {
    let (mut in_str, mut esc) = (false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_str = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < body.len() && body[i].is_ascii_digit() {
                i += 1;
            }
            let fraction = i < body.len() && matches!(body[i], b'.' | b'e' | b'E');
            if !fraction {
                let lit = std::str::from_utf8(&body[start..i]).unwrap_or("");
                if lit != "-" && lit.parse::<i64>().is_err() && lit.parse::<u64>().is_err() {
                    return false;
                }
            }
            continue;
        }
        i += 1;
    }
    true
}

/// A JSON value that refuses duplicate object keys (a classic way to show a scanner one value
/// and the origin another).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let Strict(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing() {
        assert!(parse_body(br#"{"a":1}"#, 100, 4).is_ok());
        assert_eq!(
            parse_body(br#"{"a":1,"a":2}"#, 100, 4).unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(
            parse_body(b"[[[[[[1]]]]]]", 100, 4).unwrap_err().code,
            "json_too_deep"
        );
        assert_eq!(parse_body(b"{\"a\":1}", 3, 4).unwrap_err().status, 413);
        assert_eq!(parse_body(b"[1]", 100, 4).unwrap_err().code, "invalid_json");
        assert_eq!(
            parse_body(b"{\"a\":1} x", 100, 4).unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(json_depth(br#"{"a":"[[[[","b":[{}]}"#), 3);
    }

    #[test]
    fn huge_integers_are_refused_not_rounded() {
        assert!(parse_body(
            br#"{"a":18446744073709551615,"b":-9223372036854775808}"#,
            200,
            4
        )
        .is_ok());
        for bad in [
            &br#"{"max_tokens":18446744073709551616}"#[..],
            br#"{"a":[1,-9223372036854775809]}"#,
            br#"{"a":100000000000000000000000}"#,
        ] {
            assert_eq!(
                parse_body(bad, 200, 4).unwrap_err().code,
                "number_out_of_range"
            );
        }
        // Digits inside strings and floats are not integers.
        assert!(parse_body(
            br#"{"a":"100000000000000000000000","b":1e30,"c":1.5}"#,
            200,
            4
        )
        .is_ok());
    }

    #[test]
    fn deep_input_does_not_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            parse_body(deep.as_bytes(), 1 << 20, 32).unwrap_err().code,
            "json_too_deep"
        );
    }
}
