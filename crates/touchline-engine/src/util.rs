//! Small helpers: maps with non-string keys as JSON sequences, a deterministic hash.

/// Serialises a `HashMap<K, V>` as a sequence of `[key, value]` pairs (JSON map keys must be
/// strings; ours are structs).
pub(crate) mod vecmap {
    use std::collections::HashMap;
    use std::hash::Hash;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// In key order (equal maps give equal snapshots).
    pub fn serialize<K: Serialize + Ord, V: Serialize, H, S: Serializer>(m: &HashMap<K, V, H>, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&K, &V)> = m.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_seq(v)
    }

    pub fn deserialize<'de, K, V, H, D>(d: D) -> Result<HashMap<K, V, H>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        H: std::hash::BuildHasher + Default,
        D: Deserializer<'de>,
    {
        let v: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// Serialisers of the state's hash maps and sets in key order, so that a snapshot is a function
/// of the state alone (not of the tables' insertion history): a restored engine snapshots to the
/// same bytes. Deserialisation is the default one (any order loads).
pub(crate) mod ordered {
    use std::collections::{HashMap, HashSet};

    use serde::ser::SerializeMap;
    use serde::{Serialize, Serializer};

    /// Key-value pairs as a map in key order.
    fn pairs<'a, K: Serialize + Ord + 'a, V: Serialize + 'a, S: Serializer>(
        it: impl Iterator<Item = (&'a K, &'a V)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<(&K, &V)> = it.collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        s.collect_map(v)
    }

    pub fn map<K: Serialize + Ord, V: Serialize, H, S: Serializer>(m: &HashMap<K, V, H>, s: S) -> Result<S::Ok, S::Error> {
        pairs(m.iter(), s)
    }

    /// [`map`] of a [`super::FastIndexMap`].
    pub fn index_map<K: Serialize + Ord, V: Serialize, H, S: Serializer>(m: &indexmap::IndexMap<K, V, H>, s: S) -> Result<S::Ok, S::Error> {
        pairs(m.iter(), s)
    }

    pub fn vec<K: Serialize + Ord, S: Serializer>(m: &[K], s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<&K> = m.iter().collect();
        v.sort_unstable();
        s.collect_seq(v)
    }

    pub fn set<K: Serialize + Ord, H, S: Serializer>(m: &HashSet<K, H>, s: S) -> Result<S::Ok, S::Error> {
        let mut v: Vec<&K> = m.iter().collect();
        v.sort_unstable();
        s.collect_seq(v)
    }

    /// A map of maps, both levels in key order.
    pub fn nested<K: Serialize + Ord, K2: Serialize + Ord, V: Serialize, H, H2, S: Serializer>(
        m: &HashMap<K, HashMap<K2, V, H2>, H>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        struct Inner<'a, K2, V, H2>(&'a HashMap<K2, V, H2>);
        impl<K2: Serialize + Ord, V: Serialize, H2> Serialize for Inner<'_, K2, V, H2> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                map(self.0, s)
            }
        }
        let mut v: Vec<(&K, &HashMap<K2, V, H2>)> = m.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = s.serialize_map(Some(v.len()))?;
        for (k, inner) in v {
            out.serialize_entry(k, &Inner(inner))?;
        }
        out.end()
    }
}

/// FNV-1a, 64 bit: stable across processes (unlike `DefaultHasher`), used for fingerprints.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn bytes(&mut self, b: &[u8]) {
        for x in b {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Field separator, so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    pub fn u64(&mut self, x: u64) {
        self.bytes(&x.to_le_bytes());
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Final avalanche (FNV's low bits are weak for hash-table indexing).
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for x in bytes {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The 64-bit fingerprint of a conversion's rows under one model (change detection: a flush
/// emits a model's rows only when it changed). Word-at-a-time: each field is its length then its
/// bytes in 8-byte little-endian words (the last one zero-padded), so the encoding of a field
/// sequence is unambiguous; every step `h = (rotl(h, 5) ^ w) * K` is a bijection of `h`, and the
/// value ends with an avalanche. Conversions restored with fingerprints of the earlier byte-wise
/// FNV-1a ([`Fnv::bytes`]) keep that hash (`legacy`), so checkpoints taken before the change do
/// not re-emit unchanged rows.
#[derive(Clone, Copy)]
pub(crate) struct Fingerprint {
    legacy: Option<Fnv>,
    h: u64,
}

impl Fingerprint {
    pub fn new(legacy: bool) -> Fingerprint {
        Fingerprint { legacy: legacy.then(Fnv::new), h: 0x243f_6a88_85a3_08d3 }
    }

    #[inline]
    fn add(&mut self, w: u64) {
        self.h = (self.h.rotate_left(5) ^ w).wrapping_mul(SEED);
    }

    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        if let Some(f) = &mut self.legacy {
            f.bytes(b);
            return;
        }
        self.add(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    pub fn u64(&mut self, x: u64) {
        match &mut self.legacy {
            Some(f) => f.u64(x),
            None => self.add(x),
        }
    }

    pub fn value(&self) -> u64 {
        match &self.legacy {
            Some(f) => f.0,
            None => {
                let mut z = self.h;
                z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
                z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
                z ^ (z >> 33)
            }
        }
    }
}

/// The hasher of the state's hash maps: deterministic (no random seed, like FNV before it) but
/// word-at-a-time (FxHash-style multiply-rotate on 8-byte words) with the same final avalanche as
/// [`Fnv`]. Only used for table indexing; fingerprints keep using [`Fnv::bytes`].
#[derive(Clone, Copy)]
pub(crate) struct WordHasher(u64);

impl Default for WordHasher {
    fn default() -> Self {
        WordHasher(0xcbf2_9ce4_8422_2325)
    }
}

const SEED: u64 = 0x517c_c1b7_2722_0a95;

impl WordHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl std::hash::Hasher for WordHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The remainder zero-padded: from one overlapping load of the last 8 bytes when there
            // are that many (no variable-length copy), else copied.
            let w = match bytes.last_chunk::<8>() {
                Some(last) => u64::from_le_bytes(*last) >> (64 - 8 * rest.len()),
                None => {
                    let mut b = [0u8; 8];
                    if let Some(dst) = b.get_mut(..rest.len()) {
                        dst.copy_from_slice(rest);
                    }
                    u64::from_le_bytes(b)
                }
            };
            // The length keeps "a\0" and "a" apart within one write.
            self.add(w ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i) | 0x100);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// Hash maps of the state: deterministic hashing (keys are record/identity ids of tenants, not
/// attacker-chosen bulk input to a shared table; see the crate docs).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<WordHasher>>;

/// A [`FastMap`] whose entries also have positions (`indexmap`): found once by key, an entry is
/// then reached by position without hashing and comparing the key again, and growing the table
/// moves only positions, not the (large) values.
pub(crate) type FastIndexMap<K, V> = indexmap::IndexMap<K, V, std::hash::BuildHasherDefault<WordHasher>>;

/// Hash sets of the state (see [`FastMap`]).
pub(crate) type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<WordHasher>>;

/// The strings of a set in sorted (byte-wise) order: flush output order is deterministic.
///
/// The keys sorted here share long prefixes (`{account uuid}|order:{kind}:…`), where a plain
/// sort's every comparison scans that prefix. This one finds the prefix all keys share once,
/// then sorts by the next eight bytes as a big-endian word (zero-padded), comparing the rest only
/// on equal words: the same order as `sort_unstable`, since a zero-padded word orders like the
/// bytes it holds and the tie-break compares everything after the shared prefix.
pub(crate) fn sorted<K: std::borrow::Borrow<str>>(set: FastSet<K>) -> Vec<K> {
    let v: Vec<K> = set.into_iter().collect();
    sort_strings(v)
}

/// [`sorted`] of a vector (see there).
pub(crate) fn sort_strings<K: std::borrow::Borrow<str>>(v: Vec<K>) -> Vec<K> {
    fn bytes<K: std::borrow::Borrow<str>>(k: &K) -> &[u8] {
        k.borrow().as_bytes()
    }
    let Some(first) = v.first() else { return v };
    let first = bytes(first);
    let mut p = first.len();
    for k in v.iter().skip(1) {
        let b = bytes(k);
        p = p.min(b.len());
        if b.get(..p) != first.get(..p) {
            p = first.iter().zip(b).take(p).position(|(x, y)| x != y).unwrap_or(p);
        }
    }
    let word = |b: &[u8]| {
        let rest = b.get(p..).unwrap_or_default();
        let mut w = [0u8; 8];
        let n = rest.len().min(8);
        if let (Some(dst), Some(src)) = (w.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        u64::from_be_bytes(w)
    };
    let mut keyed: Vec<(u64, K)> = v.into_iter().map(|k| (word(bytes(&k)), k)).collect();
    keyed.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| bytes(&a.1).get(p..).unwrap_or_default().cmp(bytes(&b.1).get(p..).unwrap_or_default()))
    });
    keyed.into_iter().map(|(_, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;

    /// [`sort_strings`] gives the plain byte-wise order, whatever the keys share: long common
    /// prefixes, keys that are prefixes of others, NUL bytes (which the zero padding also
    /// produces), multi-byte characters and empty keys.
    #[test]
    fn sort_strings_matches_plain_sort() {
        use proptest::prelude::*;
        let key = prop::collection::vec(prop::sample::select(vec!["", "\0", "a", "b", "é", "ab", "o1", "o10", "\0\0\0\0\0\0\0\0x"]), 0..14)
            .prop_map(|parts| parts.concat());
        let prefix = prop::sample::select(vec!["", "00000000-0000-0000-0000-000000000007|order:purchase:", "x"]);
        proptest!(|(prefix in prefix, keys in prop::collection::vec(key, 0..40))| {
            let v: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
            let mut want = v.clone();
            want.sort_unstable();
            prop_assert_eq!(sort_strings(v), want);
        });
    }

    /// The word-at-a-time hashes read the remainder as the zero-padded little-endian word.
    #[test]
    fn remainders_are_zero_padded_words() {
        let data: Vec<u8> = (1..=40u8).collect();
        for n in 0..=data.len() {
            let b = data.get(..n).unwrap_or_default();
            let (mut h, mut f) = (WordHasher::default(), Fingerprint::new(false));
            h.write(b);
            f.bytes(b);
            // Reference: the same steps with the remainder copied into a zeroed word.
            let (mut rh, mut rf) = (WordHasher::default(), Fingerprint::new(false));
            rf.add(n as u64);
            let mut chunks = b.chunks_exact(8);
            for c in &mut chunks {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                rh.add(u64::from_le_bytes(w));
                rf.add(u64::from_le_bytes(w));
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut w = [0u8; 8];
                if let Some(dst) = w.get_mut(..rest.len()) {
                    dst.copy_from_slice(rest);
                }
                rh.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
                rf.add(u64::from_le_bytes(w));
            }
            assert_eq!(h.finish(), rh.finish(), "hash, length {n}");
            assert_eq!(f.value(), rf.value(), "fingerprint, length {n}");
        }
    }
}
