//! Per-identity state under a dense numeric id: an identity key (`{account}:{identity}`) is
//! hashed once per record to find its id, and its touches and conversions are then reached by
//! index instead of by hashing and comparing the key in one map each. Serialised as the two maps
//! it replaced (identity key → touches, identity key → conversion keys, both in key order), so
//! snapshots keep their format and bytes; ids are not part of the snapshot.

use std::collections::BTreeSet;

use serde::{Serialize, Serializer};

use crate::held::Held;
use crate::text::Text;
use crate::util::FastMap;

/// One identity's entries (empty when it has none of that kind).
#[derive(Clone, Debug, Default)]
pub(crate) struct Slot {
    pub key: Text,
    /// Sorted by `(timestamp, record id, received_at)`, unique by dedup key.
    pub touches: Vec<Held>,
    /// Keys of the conversions of this identity.
    pub convs: BTreeSet<Text>,
    /// The identity itself (the key without its `{account}:` prefix) as the interner's shared
    /// string, once a local record of it was kept (not in snapshots): a conversion of a known
    /// identity takes it from here instead of probing the interner.
    pub identity: Option<Text>,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.touches.is_empty() && self.convs.is_empty()
    }
}

/// Identity key → id → [`Slot`]. An id whose slot becomes empty is released ([`Idents::release`])
/// and reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Idents {
    ix: FastMap<Text, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Idents {
    #[inline]
    pub fn id(&self, key: &str) -> Option<u32> {
        self.ix.get(key).copied()
    }

    /// The id of `key`, allocated (with an empty slot) if it has none.
    pub fn intern(&mut self, key: &str) -> u32 {
        if let Some(id) = self.ix.get(key) {
            return *id;
        }
        let key = Text::new(key);
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(s) = self.slots.get_mut(id as usize) {
                    *s = Slot { key: key.clone(), ..Slot::default() };
                }
                id
            }
            None => {
                self.slots.push(Slot { key: key.clone(), ..Slot::default() });
                (self.slots.len() - 1) as u32
            }
        };
        self.ix.insert(key, id);
        id
    }

    #[inline]
    pub fn slot(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize)
    }

    #[inline]
    pub fn slot_mut(&mut self, id: u32) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize)
    }

    /// Frees `id` if its slot is empty.
    pub fn release(&mut self, id: u32) {
        if let Some(s) = self.slots.get_mut(id as usize) {
            if s.is_empty() && !s.key.is_empty() {
                let key = std::mem::take(&mut s.key);
                self.ix.remove(key.as_str());
                self.free.push(id);
            }
        }
    }

    /// The touches of identity key `key` (none: `None`, like a map without the key).
    pub fn touches(&self, key: &str) -> Option<&Vec<Held>> {
        self.id(key).and_then(|id| self.slot(id)).map(|s| &s.touches).filter(|t| !t.is_empty())
    }

    /// The conversion keys of identity key `key`.
    pub fn convs(&self, key: &str) -> Option<&BTreeSet<Text>> {
        self.id(key).and_then(|id| self.slot(id)).map(|s| &s.convs).filter(|c| !c.is_empty())
    }

    /// The slots in use.
    pub fn live(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| !s.key.is_empty())
    }

    pub fn live_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut().filter(|s| !s.key.is_empty())
    }

    /// Releases every slot left empty (after bulk removals).
    pub fn release_empty(&mut self) {
        for id in 0..self.slots.len() as u32 {
            self.release(id);
        }
    }

    /// Rebuilds from the two maps of a snapshot.
    pub fn from_maps(touches: FastMap<String, Vec<Held>>, convs: FastMap<String, BTreeSet<Text>>) -> Idents {
        let mut me = Idents::default();
        for (k, list) in touches {
            if list.is_empty() {
                continue;
            }
            let id = me.intern(&k);
            if let Some(s) = me.slot_mut(id) {
                s.touches = list;
            }
        }
        for (k, set) in convs {
            if set.is_empty() {
                continue;
            }
            let id = me.intern(&k);
            if let Some(s) = me.slot_mut(id) {
                s.convs = set;
            }
        }
        me
    }

    /// identity key → touches, in key order (the snapshot's `touches` map).
    pub fn ser_touches(&self) -> impl Serialize + '_ {
        fn has(s: &Slot) -> bool {
            !s.touches.is_empty()
        }
        fn get(s: &Slot) -> &Vec<Held> {
            &s.touches
        }
        Sorted(self, has, get)
    }

    /// identity key → conversion keys, in key order (the snapshot's `convs_by_ident` map).
    pub fn ser_convs(&self) -> impl Serialize + '_ {
        fn has(s: &Slot) -> bool {
            !s.convs.is_empty()
        }
        fn get(s: &Slot) -> &BTreeSet<Text> {
            &s.convs
        }
        Sorted(self, has, get)
    }
}

struct Sorted<'a, V: 'static>(&'a Idents, fn(&Slot) -> bool, fn(&Slot) -> &V);

impl<V: Serialize + 'static> Serialize for Sorted<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<&Slot> = self.0.live().filter(|x| (self.1)(x)).collect();
        v.sort_unstable_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        s.collect_map(v.into_iter().map(|x| (x.key.as_str(), (self.2)(x))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_released_when_empty_and_reused() {
        let mut ids = Idents::default();
        let a = ids.intern("acct:a");
        let b = ids.intern("acct:b");
        assert_ne!(a, b);
        assert_eq!(ids.intern("acct:a"), a);
        ids.slot_mut(b).map(|s| s.convs.insert(Text::new("k")));
        // `a` holds nothing: released; `b` holds a conversion: kept.
        ids.release_empty();
        assert_eq!(ids.id("acct:a"), None);
        assert_eq!(ids.id("acct:b"), Some(b));
        assert!(ids.convs("acct:b").is_some_and(|c| c.contains("k")));
        assert!(ids.touches("acct:b").is_none());
        // The freed id is reused for the next identity.
        assert_eq!(ids.intern("acct:c"), a);
        assert_eq!(ids.live().count(), 2);
        let json = serde_json::to_string(&ids.ser_convs()).unwrap_or_default();
        assert_eq!(json, r#"{"acct:b":["k"]}"#);
    }
}
