//! The top-level fields of one item, as the decoder takes them apart.
//!
//! Two sources: a parsed JSON map (pixels, [`crate::decode_map`], Segment messages), or the
//! item's own bytes split into borrowed fields ([`RawFields`]). With the second, a native
//! record's values are decoded once, straight into the entity struct, instead of first into a
//! `serde_json::Value` tree that is then taken apart again: the tree cost the collector more
//! than the JSON parse itself.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Why the remaining fields did not decode: the path of the field at fault (none for the
/// record as a whole), and the message.
pub struct FieldError {
    pub path: Option<String>,
    pub message: String,
}

/// The fields of one item, taken one by one, then the rest decoded as an entity.
pub trait ItemFields: Sized {
    /// Removes `field` and returns its value.
    fn take(&mut self, field: &str) -> Result<Option<Value>, String>;
    /// Removes `field` unread.
    fn discard(&mut self, field: &str);
    /// True when `field` is present.
    fn has(&self, field: &str) -> bool;
    /// The value of `field`, left in place.
    fn peek(&self, field: &str) -> Option<Value>;
    /// The remaining fields decoded as `T`.
    fn decode<T: DeserializeOwned>(self) -> Result<T, FieldError>;
    /// The remaining fields as a parsed map (the path of Segment messages).
    fn into_map(self) -> Result<Map<String, Value>, String>;
}

fn field_error<E: fmt::Display>(path: String, message: E) -> FieldError {
    let path = if path == "." || path.is_empty() { None } else { Some(path) };
    FieldError { path, message: message.to_string() }
}

impl ItemFields for Map<String, Value> {
    fn take(&mut self, field: &str) -> Result<Option<Value>, String> {
        Ok(self.remove(field))
    }

    fn discard(&mut self, field: &str) {
        self.remove(field);
    }

    fn has(&self, field: &str) -> bool {
        self.contains_key(field)
    }

    fn peek(&self, field: &str) -> Option<Value> {
        self.get(field).cloned()
    }

    fn decode<T: DeserializeOwned>(self) -> Result<T, FieldError> {
        serde_path_to_error::deserialize(Value::Object(self)).map_err(|e| field_error(e.path().to_string(), e.inner()))
    }

    fn into_map(self) -> Result<Map<String, Value>, String> {
        Ok(self)
    }
}

/// An item's fields borrowed from the request body, sorted by name. A name sent twice keeps its
/// last value, as a parsed map would.
pub struct RawFields<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawFields<'a> {
    /// Splits `json`, one item, into its fields. Fails when it is not a JSON object.
    pub fn parse(json: &'a str) -> Result<RawFields<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        let mut fields = de.deserialize_map(FieldsVisitor)?;
        de.end()?;
        // Stable: of the fields sharing a name, the last one sent ends its run and is kept.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(fields.len());
        for f in fields {
            match kept.last_mut() {
                Some(last) if last.0 == f.0 => *last = f,
                _ => kept.push(f),
            }
        }
        Ok(RawFields { fields: kept })
    }

    fn position(&self, field: &str) -> Result<usize, usize> {
        self.fields.binary_search_by(|(k, _)| k.as_ref().cmp(field))
    }
}

/// serde_json appends the position to every message; inside one item's field it says nothing
/// the field path does not, and the messages stay those of a parsed map.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.line() == 0 {
        return text;
    }
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).map(str::to_owned).unwrap_or(text)
}

impl ItemFields for RawFields<'_> {
    fn take(&mut self, field: &str) -> Result<Option<Value>, String> {
        let Ok(i) = self.position(field) else { return Ok(None) };
        let (_, raw) = self.fields.remove(i);
        serde_json::from_str(raw.get()).map(Some).map_err(|e| without_position(&e))
    }

    fn discard(&mut self, field: &str) {
        if let Ok(i) = self.position(field) {
            self.fields.remove(i);
        }
    }

    fn has(&self, field: &str) -> bool {
        self.position(field).is_ok()
    }

    fn peek(&self, field: &str) -> Option<Value> {
        let raw = self.fields[self.position(field).ok()?].1;
        serde_json::from_str(raw.get()).ok()
    }

    fn into_map(self) -> Result<Map<String, Value>, String> {
        let mut map = Map::new();
        for (k, raw) in self.fields {
            map.insert(k.into_owned(), serde_json::from_str(raw.get()).map_err(|e| without_position(&e))?);
        }
        Ok(map)
    }

    fn decode<T: DeserializeOwned>(self) -> Result<T, FieldError> {
        let de = MapDeserializer::<_, serde_json::Error>::new(self.fields.into_iter());
        serde_path_to_error::deserialize(de).map_err(|e| field_error(e.path().to_string(), without_position(e.inner())))
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<crate::envelope::CowStr<'de>>()? {
            fields.push((key.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn a_name_sent_twice_keeps_its_last_value_like_a_map() {
        let json = r#"{"b": 1, "a": "x", "b": 2, "c\u0041": null}"#;
        let mut raw = RawFields::parse(json).unwrap();
        let mut map: Map<String, Value> = serde_json::from_str(json).unwrap();
        for field in ["a", "b", "cA", "missing"] {
            assert_eq!(raw.has(field), map.has(field), "{field}");
            assert_eq!(raw.take(field).unwrap(), map.take(field).unwrap(), "{field}");
        }
    }

    #[test]
    fn entity_errors_name_the_field_without_a_position() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Entity {
            name: String,
            inner: Option<Inner>,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            depth: u8,
        }
        for (json, path, message) in [
            (r#"{"name": 5}"#, Some("name"), "invalid type: integer `5`, expected a string"),
            (r#"{"name": "n", "inner": {"depth": "deep"}}"#, Some("inner.depth"), "invalid type: string \"deep\", expected u8"),
            (r#"{}"#, None, "missing field `name`"),
        ] {
            let from_raw = RawFields::parse(json).unwrap().decode::<Entity>().unwrap_err();
            let from_map = serde_json::from_str::<Map<String, Value>>(json).unwrap().decode::<Entity>().unwrap_err();
            assert_eq!((from_raw.path.as_deref(), from_raw.message.as_str()), (path, message), "{json}");
            assert_eq!((from_map.path.as_deref(), from_map.message.as_str()), (path, message), "{json}");
        }
    }

    #[test]
    fn not_an_object_is_refused() {
        assert!(RawFields::parse("[1]").is_err());
        assert!(RawFields::parse("{\"a\":").is_err());
    }
}
