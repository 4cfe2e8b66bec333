//! Reading a record back from its bus JSON in one pass over the envelope.
//!
//! The envelope is flat: `v`, `type`, the [`Meta`] fields and the entity's fields side by side.
//! serde's `flatten` reads such a shape by first copying every value into a tree of its own,
//! which made the aggregator spend more on decoding the bus than the collector spends on
//! decoding HTTP bodies. Here the [`Meta`] fields and `v` are decoded in place; the entity's
//! fields are kept as borrowed slices of the input and decoded once the `type` is known, with
//! the entity struct's own rules (required fields, `deny_unknown_fields`). The result is the
//! same [`Record`] the derived `Deserialize` gives.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::value::MapDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::entity::{Alias, Body, Conversion, Event, Identify, LinkClick, Meta, Record, Session, Spend, Touchpoint};
use crate::ids::Id;

/// Decodes `bytes` (one bus value) as a [`Record`].
pub(crate) fn record_from_slice(bytes: &[u8]) -> Result<Record, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let record = de.deserialize_map(EnvelopeVisitor)?;
    de.end()?;
    Ok(record)
}

/// The entity's fields of one envelope, borrowed from the input until the `type` is known.
type BodyFields<'de> = Vec<(Cow<'de, str>, &'de RawValue)>;

#[derive(Default)]
struct MetaSlots {
    record_id: Option<Id>,
    account_id: Option<Uuid>,
    timestamp: Option<DateTime<Utc>>,
    received_at: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    anonymous_id: Option<Id>,
    customer_id: Option<Id>,
}

impl MetaSlots {
    fn into_meta<E: de::Error>(self) -> Result<Meta, E> {
        Ok(Meta {
            record_id: self.record_id.ok_or_else(|| E::missing_field("record_id"))?,
            account_id: self.account_id.ok_or_else(|| E::missing_field("account_id"))?,
            timestamp: self.timestamp.ok_or_else(|| E::missing_field("timestamp"))?,
            received_at: self.received_at.ok_or_else(|| E::missing_field("received_at"))?,
            sent_at: self.sent_at,
            anonymous_id: self.anonymous_id,
            customer_id: self.customer_id,
        })
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut v: Option<u8> = None;
        let mut kind: Option<Cow<'de, str>> = None;
        let mut meta = MetaSlots::default();
        let mut fields: BodyFields<'de> = Vec::with_capacity(8);
        while let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? {
            match key.as_ref() {
                "v" => once(&mut v, "v", map.next_value()?)?,
                "type" => once(&mut kind, "type", map.next_value::<CowStr<'de>>()?.0)?,
                "record_id" => once(&mut meta.record_id, "record_id", map.next_value()?)?,
                "account_id" => once(&mut meta.account_id, "account_id", map.next_value()?)?,
                "timestamp" => once(&mut meta.timestamp, "timestamp", map.next_value()?)?,
                "received_at" => once(&mut meta.received_at, "received_at", map.next_value()?)?,
                // Optional fields: `null` is the same as absent, as for the derived reader.
                "sent_at" => once_optional(&mut meta.sent_at, "sent_at", map.next_value()?)?,
                "anonymous_id" => once_optional(&mut meta.anonymous_id, "anonymous_id", map.next_value()?)?,
                "customer_id" => once_optional(&mut meta.customer_id, "customer_id", map.next_value()?)?,
                _ => fields.push((key, map.next_value::<&'de RawValue>()?)),
            }
        }
        let v = v.ok_or_else(|| de::Error::missing_field("v"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        let body = body_of(&kind, fields).map_err(de::Error::custom)?;
        Ok(Record { v, meta: meta.into_meta()?, body })
    }
}

/// A string borrowed from the input when it has no escapes (serde's own `Cow<str>` always
/// copies).
pub(crate) struct CowStr<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

fn once_optional<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: Option<T>) -> Result<(), E> {
    match value {
        Some(v) => once(slot, name, v),
        None => Ok(()),
    }
}

const BODY_TYPES: &[&str] = &["event", "session", "touchpoint", "link_click", "conversion", "spend", "identify", "alias"];

/// The entity of `kind`, decoded from its fields with the entity struct's own rules.
fn body_of(kind: &str, fields: BodyFields<'_>) -> Result<Body, serde_json::Error> {
    fn entity<'de, T: Deserialize<'de>>(fields: BodyFields<'de>) -> Result<T, serde_json::Error> {
        T::deserialize(MapDeserializer::new(fields.into_iter()))
    }
    Ok(match kind {
        "event" => Body::Event(entity::<Event>(fields)?),
        "session" => Body::Session(entity::<Session>(fields)?),
        "touchpoint" => Body::Touchpoint(entity::<Touchpoint>(fields)?),
        "link_click" => Body::LinkClick(entity::<LinkClick>(fields)?),
        "conversion" => Body::Conversion(entity::<Conversion>(fields)?),
        "spend" => Body::Spend(entity::<Spend>(fields)?),
        "identify" => Body::Identify(entity::<Identify>(fields)?),
        "alias" => Body::Alias(entity::<Alias>(fields)?),
        other => return Err(de::Error::unknown_variant(other, BODY_TYPES)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"v":1,"type":"event","record_id":"r1","account_id":"00000000-0000-0000-0000-000000000001","timestamp":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:01Z","anonymous_id":"a","event_name":"page","properties":{"price":59.9,"tags":["x"]},"context":{"page_url":"https://x.example/","library":{"name":"l"}}}"#;

    /// The one-pass reader and serde's derived one (through `flatten`) agree, field for field.
    #[test]
    fn reads_what_the_derived_reader_reads() {
        let derived: Record = serde_json::from_str(EVENT).unwrap();
        assert_eq!(record_from_slice(EVENT.as_bytes()).unwrap(), derived);
    }

    /// Entity fields before `type`, meta fields last: the body waits for its type.
    #[test]
    fn field_order_does_not_matter() {
        let reordered = r#"{"context":{"library":{"name":"l"},"page_url":"https://x.example/"},"properties":{"tags":["x"],"price":59.9},"event_name":"page","type":"event","anonymous_id":"a","received_at":"2026-01-01T00:00:01Z","timestamp":"2026-01-01T00:00:00Z","account_id":"00000000-0000-0000-0000-000000000001","record_id":"r1","v":1}"#;
        assert_eq!(record_from_slice(reordered.as_bytes()).unwrap(), record_from_slice(EVENT.as_bytes()).unwrap());
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |json: &str| record_from_slice(json.as_bytes()).unwrap_err().to_string();
        assert!(err(&EVENT.replace(r#""event_name":"page""#, r#""event_nam":"page""#)).contains("unknown field `event_nam`"));
        assert!(err(&EVENT.replace(r#""type":"event""#, r#""type":"evnt""#)).contains("unknown variant `evnt`"));
        assert!(err(&EVENT.replace(r#""type":"event","#, "")).contains("missing field `type`"));
        assert!(err(&EVENT.replace(r#""record_id":"r1","#, "")).contains("missing field `record_id`"));
        assert!(err(&EVENT.replace(r#""v":1,"#, r#""v":1,"v":1,"#)).contains("duplicate field `v`"));
        assert!(err(&format!("{EVENT} x")).contains("trailing characters"));
        assert!(err("[1]").contains("a record envelope"));
    }

    #[test]
    fn null_optional_meta_is_absent() {
        let json = EVENT.replace(r#""anonymous_id":"a""#, r#""anonymous_id":null,"customer_id":"c""#);
        let r = record_from_slice(json.as_bytes()).unwrap();
        assert_eq!((r.meta.anonymous_id, r.meta.customer_id.map(|c| c.to_string())), (None, Some("c".to_owned())));
    }

    #[test]
    fn escaped_keys_are_read() {
        let json = EVENT.replace(r#""event_name""#, r#""event\u005fname""#);
        assert_eq!(record_from_slice(json.as_bytes()).unwrap(), record_from_slice(EVENT.as_bytes()).unwrap());
    }
}
