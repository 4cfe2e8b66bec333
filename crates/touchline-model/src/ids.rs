//! Validated scalar types shared by every entity: identifiers, kinds, currencies and timestamps.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Longest identifier accepted (`customer_id`, `campaign_id`, `order_id`, link codes, …).
pub const MAX_ID_LEN: usize = 128;

/// An external identifier: a non-empty string of at most [`MAX_ID_LEN`] characters.
///
/// The platforms we serve use integers, UUIDs and external ids alike, so a JSON integer is
/// accepted too and kept as its decimal text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    /// Validates `s` as an identifier.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        let n = trimmed.chars().count();
        if n > MAX_ID_LEN {
            return Err(format!("is {n} characters long, over the limit of {MAX_ID_LEN}"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        if trimmed.len() == s.len() {
            Ok(Id(s))
        } else {
            Ok(Id(trimmed.to_owned()))
        }
    }

    /// A UUID is always a valid identifier.
    pub fn from_uuid(u: uuid::Uuid) -> Self {
        Id(u.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an identifier (string or integer, at most {MAX_ID_LEN} characters)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Id::new(v).map_err(|m| E::custom(format!("identifier {m}")))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Id::new(v).map_err(|m| E::custom(format!("identifier {m}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A kind code (`purchase`, `signup`, `impression`, `click`, …): 1–64 characters of
/// `[a-z0-9_.-]`; upper case is folded and spaces become `_`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Kind(String);

impl Kind {
    pub fn new(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty".into());
        }
        if t.len() > 64 {
            return Err(format!("is {} characters long, over the limit of 64", t.len()));
        }
        let mut out = String::with_capacity(t.len());
        for c in t.chars() {
            match c {
                'a'..='z' | '0'..='9' | '_' | '.' | '-' => out.push(c),
                'A'..='Z' => out.push(c.to_ascii_lowercase()),
                ' ' => out.push('_'),
                other => return Err(format!("contains {other:?}; use letters, digits, '_', '.' or '-'")),
            }
        }
        Ok(Kind(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Kind::new(&s).map_err(|m| de::Error::custom(format!("kind {m}")))
    }
}

/// An ISO 4217 currency code, stored upper case.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn new(s: &str) -> Result<Self, String> {
        let b = s.trim().as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(format!("{s:?} is not an ISO 4217 currency code (three letters, e.g. USD)"));
        }
        Ok(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::new(&s).map_err(de::Error::custom)
    }
}

/// Parses a timestamp: RFC 3339 text (any offset) or integer epoch milliseconds.
pub fn parse_timestamp(v: &serde_json::Value) -> Result<DateTime<Utc>, String> {
    match v {
        serde_json::Value::String(s) => parse_timestamp_str(s),
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .ok_or_else(|| format!("{n} is not a valid epoch-milliseconds timestamp")),
        other => Err(format!("expected an RFC 3339 timestamp or epoch milliseconds, found {}", json_type(other))),
    }
}

/// Parses RFC 3339 text, or a string of epoch milliseconds (pixels send those).
pub fn parse_timestamp_str(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(ms) = s.trim().parse::<i64>() {
        if let Some(t) = Utc.timestamp_millis_opt(ms).single() {
            return Ok(t);
        }
    }
    Err(format!("{s:?} is not an RFC 3339 timestamp (e.g. 2026-11-21T09:30:00Z)"))
}

/// serde helper for timestamp fields inside entities.
pub(crate) mod ts {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        parse_timestamp(&v).map_err(de::Error::custom)
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            let v = serde_json::Value::deserialize(d)?;
            if v.is_null() {
                return Ok(None);
            }
            parse_timestamp(&v).map(Some).map_err(de::Error::custom)
        }
    }
}

pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_accepts_strings_and_integers_and_limits_length() {
        let id: Id = serde_json::from_str("42").unwrap();
        assert_eq!(id.as_str(), "42");
        let id: Id = serde_json::from_str("\" abc \"").unwrap();
        assert_eq!(id.as_str(), "abc");
        let long = format!("\"{}\"", "x".repeat(129));
        let err = serde_json::from_str::<Id>(&long).unwrap_err().to_string();
        assert!(err.contains("over the limit of 128"), "{err}");
        assert!(serde_json::from_str::<Id>("\"\"").is_err());
        assert!(serde_json::from_str::<Id>("true").is_err());
    }

    #[test]
    fn kind_normalises_case_and_rejects_symbols() {
        assert_eq!(Kind::new("Email Open").unwrap().as_str(), "email_open");
        assert!(Kind::new("a/b").unwrap_err().contains("'/'"));
    }

    #[test]
    fn currency_is_three_letters() {
        assert_eq!(Currency::new("vnd").unwrap().as_str(), "VND");
        assert!(Currency::new("US").is_err());
        assert!(Currency::new("U$D").is_err());
    }

    #[test]
    fn timestamps_in_rfc3339_or_epoch_ms() {
        let a = parse_timestamp(&serde_json::json!("2026-01-02T03:04:05+07:00")).unwrap();
        assert_eq!(a.to_rfc3339(), "2026-01-01T20:04:05+00:00");
        let b = parse_timestamp(&serde_json::json!(1_700_000_000_000i64)).unwrap();
        assert_eq!(b.timestamp(), 1_700_000_000);
        assert!(parse_timestamp(&serde_json::json!("yesterday")).unwrap_err().contains("RFC 3339"));
        assert!(parse_timestamp(&serde_json::json!(true)).is_err());
    }
}
