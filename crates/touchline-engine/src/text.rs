//! [`Text`]: an immutable, cheaply clonable string (`Arc<str>`) for the engine's output rows and
//! touches, so that emitting the same touch under six models shares one allocation instead of
//! copying its strings into every row. It compares, hashes, orders, prints and serialises exactly
//! like the string it holds.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable shared string (`Arc<str>`): `clone` is a reference-count increment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Arc<str>);

impl Text {
    pub fn new(s: &str) -> Text {
        Text(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are handles to the same allocation (not just equal strings).
    pub(crate) fn ptr_eq(&self, o: &Text) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }

    /// Whether this is the only handle to the string (an interner entry nobody uses any more).
    pub(crate) fn is_unique(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }
}

/// Deduplicates the strings the state holds many times (identities, touch kinds, channels,
/// campaign/ad ids, UTMs): one shared [`Text`] per distinct string, so storing a touch or
/// crediting a reach does not allocate. Not part of the snapshot; [`Interner::gc`] drops the
/// strings the state no longer references.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner(crate::util::FastSet<Text>, [[Option<Text>; WAYS]; SLOTS], [u8; SLOTS]);

/// Entries of each [`Interner::get_at`] slot (replaced round robin).
const WAYS: usize = 4;

/// Number of [`Interner::get_at`] slots.
pub(crate) const SLOTS: usize = 10;

impl Interner {
    pub fn get(&mut self, s: &str) -> Text {
        if let Some(t) = self.0.get(s) {
            return t.clone();
        }
        let t = Text::new(s);
        self.0.insert(t.clone());
        t
    }

    /// [`Interner::get`] through a small cache per call site (`slot`, the last few distinct
    /// values): a field that repeats a recent record's value (same identity, kind, channel,
    /// campaign, …) costs a few word compares instead of a hash-table probe.
    #[inline]
    pub fn get_at(&mut self, slot: usize, s: &str) -> Text {
        let Some(ways) = self.1.get_mut(slot) else { return self.get(s) };
        for t in ways.iter().flatten() {
            if crate::held::str_eq(t.as_str(), s) {
                return t.clone();
            }
        }
        let t = match self.0.get(s) {
            Some(t) => t.clone(),
            None => {
                let t = Text::new(s);
                self.0.insert(t.clone());
                t
            }
        };
        if let (Some(ways), Some(next)) = (self.1.get_mut(slot), self.2.get_mut(slot)) {
            if let Some(w) = ways.get_mut(usize::from(*next) % WAYS) {
                *w = Some(t.clone());
            }
            *next = next.wrapping_add(1);
        }
        t
    }

    /// An optional string through slot `slot` (see [`Interner::get_at`]).
    #[inline]
    pub fn opt_at(&mut self, slot: usize, s: Option<&str>) -> Option<Text> {
        s.map(|s| self.get_at(slot, s))
    }

    /// Drops the strings only the interner still holds.
    pub fn gc(&mut self) {
        self.1 = Default::default();
        self.0.retain(|t| !t.is_unique());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Arc::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::new(s)
    }
}

impl From<&touchline_model::Id> for Text {
    fn from(s: &touchline_model::Id) -> Text {
        Text::new(s.as_str())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, o: &str) -> bool {
        &*self.0 == o
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, o: &&str) -> bool {
        &*self.0 == *o
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, o: &String) -> bool {
        &*self.0 == o.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, o: &Text) -> bool {
        self == &*o.0
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, o: &Text) -> bool {
        *self == &*o.0
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, o: &Text) -> bool {
        self.as_str() == &*o.0
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_string() {
        let t = Text::from("tp1");
        assert_eq!(t, "tp1");
        assert_eq!("tp1", t);
        assert_eq!(t, "tp1".to_owned());
        assert_eq!(t.as_str(), "tp1");
        assert_eq!(format!("{t}|{t:?}"), "tp1|\"tp1\"");
        assert_eq!(serde_json::to_string(&t).unwrap_or_default(), "\"tp1\"");
        let back: Text = serde_json::from_str("\"tp1\"").unwrap_or_default();
        assert_eq!(back, t);
        assert_eq!(Text::from("a").cmp(&Text::from("b")), std::cmp::Ordering::Less);
    }
}
