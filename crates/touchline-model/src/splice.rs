//! The bus value of a native record, with its free JSON copied from the item's own bytes.
//!
//! ```text
//! {"v":1,"type":…,<meta and typed fields, serialised>,"properties":<the client's bytes>,…}
//! ```
//! An entity's free JSON (`properties`, `context`, `detail`, `traits`) is most of a record's
//! bytes and most of the cost of serialising it. The decoder changes none of it except the
//! context it fills from the request and the page URL, and the aggregator reads it back with the
//! same deserializer the collector decoded it with. So such a field goes to the bus as the
//! client sent it; everything typed (identifiers, kinds, money, times) is still serialised from
//! the record, so the value keeps the documented `v: 1` form (strings for identifiers and
//! decimals, normalised kinds). Field order and spacing inside the copied JSON may differ from
//! a serialised record; the record read back may not.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::entity::{Body, Context, Record};
use crate::fields::RawFields;

/// The free JSON of one record, taken out of it while the rest is serialised.
enum Taken {
    Map(Map<String, Value>),
    Context(Box<Context>),
}

/// The bus value of `record`, decoded from `fields`; `context_changed`: the decoder filled its
/// context, which is then serialised too.
pub(crate) fn bus_value(record: &mut Record, fields: &RawFields<'_>, context_changed: bool) -> Vec<u8> {
    let mut copied: Vec<(&'static str, &RawValue)> = Vec::with_capacity(2);
    let mut taken: Vec<Taken> = Vec::with_capacity(2);
    for name in free_json_fields(&record.body) {
        if *name == "context" && context_changed {
            continue;
        }
        if let Some(raw) = fields.get(name) {
            copied.push((name, raw));
            taken.push(take(&mut record.body, name));
        }
    }
    // Emptied, the taken fields are left out of the serialised record (they skip when empty).
    let mut out = record.to_json();
    for t in taken {
        put_back(&mut record.body, t);
    }
    if copied.is_empty() || out.last() != Some(&b'}') {
        return out;
    }
    out.pop();
    for (name, raw) in copied {
        out.push(b',');
        // Field names are plain identifiers; serde_json quotes them all the same.
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b':');
        out.extend_from_slice(raw.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// The free-JSON fields of each entity, by their wire names.
fn free_json_fields(body: &Body) -> &'static [&'static str] {
    match body {
        Body::Event(_) => &["properties", "context"],
        Body::Touchpoint(_) => &["detail"],
        Body::Conversion(_) => &["properties"],
        Body::Identify(_) => &["traits"],
        _ => &[],
    }
}

fn take(body: &mut Body, name: &'static str) -> Taken {
    match (body, name) {
        (Body::Event(e), "context") => Taken::Context(Box::new(std::mem::take(&mut e.context))),
        (Body::Event(e), _) => Taken::Map(std::mem::take(&mut e.properties)),
        (Body::Touchpoint(t), _) => Taken::Map(std::mem::take(&mut t.detail)),
        (Body::Conversion(c), _) => Taken::Map(std::mem::take(&mut c.properties)),
        (Body::Identify(i), _) => Taken::Map(std::mem::take(&mut i.traits)),
        (_, _) => Taken::Map(Map::new()),
    }
}

fn put_back(body: &mut Body, taken: Taken) {
    match (body, taken) {
        (Body::Event(e), Taken::Context(c)) => e.context = *c,
        (Body::Event(e), Taken::Map(m)) => e.properties = m,
        (Body::Touchpoint(t), Taken::Map(m)) => t.detail = m,
        (Body::Conversion(c), Taken::Map(m)) => c.properties = m,
        (Body::Identify(i), Taken::Map(m)) => i.traits = m,
        _ => {}
    }
}
