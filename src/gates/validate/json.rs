//! Body hygiene: JSON parsed under limits, before any schema sees it.
//!
//! Refused, with the line and column: malformed JSON, invalid UTF-8 and lone
//! surrogates, duplicate object keys (parsers disagree on which one wins, a
//! classic way to slip a value past a check), nesting deeper than
//! `max_depth`, strings longer than `max_string`, arrays longer than
//! `max_array`, objects with more than `max_keys` keys, and numbers out of
//! range. Parsing is one pass and stops at the first problem, so a hostile
//! body costs at most its (already capped) size in time and memory.
//!
//! ```
//! use portcullis::gates::validate::json::{BodyLimits, parse};
//! let limits = BodyLimits::default();
//! assert!(parse(br#"{"name": "widget", "price": 12.5}"#, &limits).is_ok());
//! let error = parse(br#"{"role": "user", "role": "admin"}"#, &limits).unwrap_err();
//! assert_eq!(error.to_string(), "duplicate object key at line 1, column 23");
//! ```

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Limits on the shape of a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Deepest nesting of arrays and objects (default 32, at most 128).
    pub max_depth: usize,
    /// Longest string or key, in characters (default 65,536).
    pub max_string: usize,
    /// Most elements in one array (default 10,000).
    pub max_array: usize,
    /// Most keys in one object (default 1,000).
    pub max_keys: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self { max_depth: 32, max_string: 65_536, max_array: 10_000, max_keys: 1_000 }
    }
}

/// Why a body is not acceptable JSON, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What is wrong (never contains the body's content).
    pub message: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at line {}, column {}", self.message, self.line, self.column)
    }
}

/// Parses `bytes` as one JSON value under `limits`.
pub fn parse(bytes: &[u8], limits: &BodyLimits) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Seed { limits, depth: 0 }.deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(value)
}

fn json_error(error: serde_json::Error) -> JsonError {
    // serde_json's own messages are fixed texts; ours never quote the input.
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let message = match message.as_str() {
        "EOF while parsing a value" | "EOF while parsing an object" | "EOF while parsing a list" => {
            "the JSON ends too early".to_owned()
        }
        _ => message,
    };
    JsonError { message, line: error.line(), column: error.column() }
}

/// Builds a [`Value`] at nesting `depth`, checking the limits.
#[derive(Clone, Copy)]
struct Seed<'a> {
    limits: &'a BodyLimits,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seed<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.limits.max_depth {
            return Err(E::custom(format!("nested deeper than {} levels", self.limits.max_depth)));
        }
        Ok(Self { depth: self.depth + 1, ..self })
    }

    fn string<E: de::Error>(self, text: &str) -> Result<String, E> {
        // Bytes bound characters from above: count only when it may matter.
        if text.len() > self.limits.max_string && text.chars().count() > self.limits.max_string {
            return Err(E::custom(format!("a string is longer than {} characters", self.limits.max_string)));
        }
        Ok(text.to_owned())
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
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

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number is out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v).map(Value::String)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            if items.len() == self.limits.max_array {
                return Err(de::Error::custom(format!("an array has more than {} items", self.limits.max_array)));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed(inner))? {
            if object.len() == self.limits.max_keys {
                return Err(de::Error::custom(format!("an object has more than {} keys", self.limits.max_keys)));
            }
            if object.contains_key(&key) {
                return Err(de::Error::custom("duplicate object key"));
            }
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// An object key, under the string limit.
struct KeySeed<'a>(Seed<'a>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.string(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &[u8]) -> String {
        parse(body, &BodyLimits::default()).unwrap_err().to_string()
    }

    #[test]
    fn hostile_bodies_are_refused_with_a_position() {
        let bomb = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(refused(bomb.as_bytes()), "nested deeper than 32 levels at line 1, column 33");
        let long = format!("{{\"a\": \"{}\"}}", "x".repeat(1 << 20));
        assert!(refused(long.as_bytes()).starts_with("a string is longer than 65536 characters"));
        assert!(refused(b"{\"a\": 1, \"a\": 2}").starts_with("duplicate object key"));
        assert!(refused(b"{\"a\": \"\xff\xfe\"}").starts_with("invalid unicode code point"));
        assert!(refused(br#"{"a": "\ud800"}"#).contains("escape"), "a lone surrogate");
        assert!(refused(b"{\"a\": 1").starts_with("the JSON ends too early at line 1"));
        assert!(refused(b"{\"a\": 1} x").starts_with("trailing characters"));
        assert!(refused(format!("[1{}]", "0".repeat(400)).as_bytes()).contains("out of range"));
        assert!(refused(b"[1e999]").contains("out of range"));
        let many = format!("[{}]", vec!["0"; 10_001].join(","));
        assert!(refused(many.as_bytes()).starts_with("an array has more than 10000 items"));
        let keys: Vec<String> = (0..1001).map(|i| format!("\"k{i}\": 0")).collect();
        assert!(refused(format!("{{{}}}", keys.join(",")).as_bytes()).starts_with("an object has more than 1000 keys"));
    }

    #[test]
    fn messages_never_quote_the_body() {
        for body in [&br#"{"secret-value": 1, "secret-value": 2}"#[..], br#"{"x": "secret-value"#, b"secret-value"] {
            assert!(!refused(body).contains("secret"), "{}", refused(body));
        }
    }

    proptest::proptest! {
        /// Any bytes: a value or an error, never a panic.
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse(&bytes, &BodyLimits::default());
        }

        /// Any JSON text serde_json accepts without duplicates or excess parses to the same value.
        #[test]
        fn accepts_what_it_should(value in super::super::arbitrary_json()) {
            let text = value.to_string();
            proptest::prop_assert_eq!(parse(text.as_bytes(), &BodyLimits::default()).unwrap(), value);
        }
    }
}
