//! The reach sketch: the people of a metrics cell in a form that unions across partitions and
//! days, so reach holds over any date range.
//!
//! A sketch holds 64-bit hashes of identities ([`identity_hash`]): SipHash-2-4 with the fixed
//! key (0, 0) of the identity's UTF-8 bytes, the function ClickHouse calls `sipHash64`, so a
//! BI user can hash the identities of the raw tables the same way.
//!
//! Two forms, chosen by size alone (never by history), so the same set of identities always
//! gives the same bytes, whatever order they arrived in:
//! - **exact**: the sorted distinct hashes, up to [`EXACT_LIMIT`] of them. Its count is the
//!   exact distinct count (two identities share a hash with probability about n²/2⁶⁵, 10⁻¹³
//!   for 2,048 of them).
//! - **dense**: a HyperLogLog of 2¹⁴ registers (Flajolet, Fusy, Gandouet, Meunier,
//!   *HyperLogLog: the analysis of a near-optimal cardinality estimation algorithm*, 2007),
//!   each the largest rank (trailing zeros + 1 of the hash above its 14 index bits) seen in its
//!   bucket. The count is Ertl's improved estimator (O. Ertl, *New cardinality estimation
//!   algorithms for HyperLogLog sketches*, arXiv:1702.01284, 2017, as Redis 5+ uses), whose
//!   relative standard error is 1.04/√m = 0.81 % for m = 2¹⁴ over the whole range, with no
//!   bias tables.
//!
//! The union ([`ReachSketch::merge`]) of two exact sketches is exact while it has at most
//! [`EXACT_LIMIT`] hashes, else dense; a dense union is the register-wise maximum. So the
//! sketch of a union equals the union of the sketches, byte for byte.
//!
//! Hand-written rather than taken from a crate: the stored bytes must stay readable for as long
//! as results are kept (a crate's serde layout is not a format promise), the small form must be
//! exact (the HLL++ sparse forms of `hyperloglogplus` and `simple_hll` estimate), and the bytes
//! must not depend on insertion order (`hyperloglogplus` serialises a hash set).
//!
//! Byte layout ([`ReachSketch::to_bytes`]):
//! ```text
//! exact: 0x01, then each hash as u64 little endian, ascending            (1 + 8n bytes)
//! dense: 0x02, precision (14), then 2^14 registers of one byte each      (2 + 16384 bytes)
//! ```

use siphasher::sip::SipHasher24;

/// Index bits of the dense form: 2¹⁴ registers.
pub const PRECISION: u32 = 14;
/// Registers of the dense form.
pub const REGISTERS: usize = 1 << PRECISION;
/// The most hashes an exact sketch holds: at 8 bytes each, about the size of the dense form,
/// so an exact sketch is never the larger of the two.
pub const EXACT_LIMIT: usize = REGISTERS / 8;
/// The relative standard error of a dense sketch's count, 1.04/√m (Flajolet et al. 2007).
pub const STANDARD_ERROR: f64 = 1.04 / 128.0;

const EXACT_TAG: u8 = 1;
const DENSE_TAG: u8 = 2;
/// Bits of the hash left after the index: ranks run from 1 to `RANK_BITS + 1`.
const RANK_BITS: u32 = 64 - PRECISION;

/// The hash a sketch holds for an identity: ClickHouse's `sipHash64(identity)`.
pub fn identity_hash(identity: &str) -> u64 {
    SipHasher24::new_with_keys(0, 0).hash(identity.as_bytes())
}

/// Distinct identities of a cell (or a union of cells); see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReachSketch {
    /// Sorted distinct hashes, at most [`EXACT_LIMIT`].
    Exact(Vec<u64>),
    /// [`REGISTERS`] registers.
    Dense(Vec<u8>),
}

impl Default for ReachSketch {
    fn default() -> Self {
        ReachSketch::Exact(Vec::new())
    }
}

/// Stored bytes that are not a sketch.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a reach sketch: {0}")]
pub struct SketchError(&'static str);

impl ReachSketch {
    /// The sketch of a set of identity hashes (any order, repeats allowed).
    pub fn from_hashes(hashes: impl IntoIterator<Item = u64>) -> ReachSketch {
        let mut hashes: Vec<u64> = hashes.into_iter().collect();
        hashes.sort_unstable();
        hashes.dedup();
        ReachSketch::of_sorted(hashes)
    }

    /// The sketch of a set of identities (any order, repeats allowed).
    pub fn of_identities<'a>(identities: impl IntoIterator<Item = &'a str>) -> ReachSketch {
        ReachSketch::from_hashes(identities.into_iter().map(identity_hash))
    }

    /// [`ReachSketch::to_bytes`] of the sketch of `hashes`, which must be sorted and distinct
    /// (as [`ReachSketch::from_hashes`] leaves them), without copying them first.
    pub fn bytes_of_sorted(hashes: &[u64]) -> Vec<u8> {
        debug_assert!(hashes.windows(2).all(|w| w.first() < w.get(1)));
        if hashes.len() <= EXACT_LIMIT {
            exact_bytes(hashes)
        } else {
            let mut registers = vec![0u8; REGISTERS];
            hashes.iter().for_each(|h| observe(&mut registers, *h));
            dense_bytes(&registers)
        }
    }

    /// Updates `bytes`, the [`ReachSketch::bytes_of_sorted`] of a set of hashes, to those of
    /// `all` (sorted and distinct), the set with `joined` added. A dense sketch takes the new
    /// hashes into its registers in place; any other is written again from `all`.
    pub fn extend_bytes(bytes: &mut Vec<u8>, all: &[u64], joined: &[u64]) {
        let dense = bytes.first() == Some(&DENSE_TAG) && bytes.len() == 2 + REGISTERS;
        match bytes.get_mut(2..) {
            Some(registers) if dense && all.len() > EXACT_LIMIT => joined.iter().for_each(|h| observe(registers, *h)),
            _ => *bytes = ReachSketch::bytes_of_sorted(all),
        }
    }

    /// Sorted distinct hashes, in the form their number calls for.
    fn of_sorted(hashes: Vec<u64>) -> ReachSketch {
        if hashes.len() <= EXACT_LIMIT {
            ReachSketch::Exact(hashes)
        } else {
            let mut registers = vec![0u8; REGISTERS];
            for h in hashes {
                observe(&mut registers, h);
            }
            ReachSketch::Dense(registers)
        }
    }

    /// Whether [`ReachSketch::count`] is the exact distinct count.
    pub fn is_exact(&self) -> bool {
        matches!(self, ReachSketch::Exact(_))
    }

    /// The hashes of an exact sketch.
    pub fn exact_hashes(&self) -> Option<&[u64]> {
        match self {
            ReachSketch::Exact(h) => Some(h),
            ReachSketch::Dense(_) => None,
        }
    }

    /// Adds `other`'s identities to this sketch (the union).
    pub fn merge(&mut self, other: &ReachSketch) {
        let merged = match (std::mem::take(self), other) {
            (ReachSketch::Exact(mine), ReachSketch::Exact(theirs)) => ReachSketch::of_sorted(union_sorted(&mine, theirs)),
            (ReachSketch::Dense(mut registers), ReachSketch::Exact(theirs)) => {
                theirs.iter().for_each(|h| observe(&mut registers, *h));
                ReachSketch::Dense(registers)
            }
            (ReachSketch::Exact(mine), ReachSketch::Dense(theirs)) => {
                let mut registers = theirs.clone();
                mine.iter().for_each(|h| observe(&mut registers, *h));
                ReachSketch::Dense(registers)
            }
            (ReachSketch::Dense(mut registers), ReachSketch::Dense(theirs)) => {
                registers.iter_mut().zip(theirs).for_each(|(r, t)| *r = (*r).max(*t));
                ReachSketch::Dense(registers)
            }
        };
        *self = merged;
    }

    /// Distinct identities: exact for an exact sketch, else the estimate (relative standard
    /// error [`STANDARD_ERROR`]).
    pub fn count(&self) -> u64 {
        match self {
            ReachSketch::Exact(h) => h.len() as u64,
            ReachSketch::Dense(registers) => estimate(registers),
        }
    }

    /// The stored form (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ReachSketch::Exact(hashes) => exact_bytes(hashes),
            ReachSketch::Dense(registers) => dense_bytes(registers),
        }
    }

    /// Reads [`ReachSketch::to_bytes`] output back, checking what makes the sketch canonical
    /// (sorted distinct hashes within the limit, registers within their range).
    pub fn from_bytes(bytes: &[u8]) -> Result<ReachSketch, SketchError> {
        match bytes.split_first() {
            Some((&EXACT_TAG, body)) => {
                let chunks = body.chunks_exact(8);
                if !chunks.remainder().is_empty() {
                    return Err(SketchError("the exact form is not a whole number of hashes"));
                }
                let hashes: Vec<u64> = chunks.filter_map(|c| <[u8; 8]>::try_from(c).ok()).map(u64::from_le_bytes).collect();
                if hashes.len() > EXACT_LIMIT || hashes.windows(2).any(|w| w.first() >= w.get(1)) {
                    return Err(SketchError("the exact form's hashes are not sorted, distinct and within the limit"));
                }
                Ok(ReachSketch::Exact(hashes))
            }
            Some((&DENSE_TAG, body)) => match body.split_first() {
                Some((&p, registers)) if u32::from(p) == PRECISION && registers.len() == REGISTERS => {
                    if registers.iter().any(|r| u32::from(*r) > RANK_BITS + 1) {
                        return Err(SketchError("a register is above the largest rank"));
                    }
                    Ok(ReachSketch::Dense(registers.to_vec()))
                }
                _ => Err(SketchError("the dense form has another precision or size")),
            },
            _ => Err(SketchError("unknown form")),
        }
    }
}

/// The stored form of an exact sketch of `hashes`.
fn exact_bytes(hashes: &[u64]) -> Vec<u8> {
    let mut out = vec![0u8; 1 + 8 * hashes.len()];
    if let Some((tag, body)) = out.split_first_mut() {
        *tag = EXACT_TAG;
        body.chunks_exact_mut(8).zip(hashes).for_each(|(b, h)| b.copy_from_slice(&h.to_le_bytes()));
    }
    out
}

/// The stored form of a dense sketch of `registers`.
fn dense_bytes(registers: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + registers.len());
    out.push(DENSE_TAG);
    out.push(PRECISION as u8);
    out.extend_from_slice(registers);
    out
}

/// The sorted union of two sorted distinct lists.
pub(crate) fn union_sorted(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (a.iter().peekable(), b.iter().peekable());
    loop {
        let next = match (i.peek(), j.peek()) {
            (Some(x), Some(y)) if x < y => i.next(),
            (Some(x), Some(y)) if y < x => j.next(),
            (Some(_), Some(_)) => {
                j.next();
                i.next()
            }
            (Some(_), None) => i.next(),
            (None, Some(_)) => j.next(),
            (None, None) => break,
        };
        out.extend(next.copied());
    }
    out
}

/// Records hash `h` in the registers: its low [`PRECISION`] bits pick the register, the rank
/// of the rest (trailing zeros + 1, at most `RANK_BITS + 1`) raises it.
fn observe(registers: &mut [u8], h: u64) {
    let index = (h & (REGISTERS as u64 - 1)) as usize;
    let rank = ((h >> PRECISION) | (1u64 << RANK_BITS)).trailing_zeros() + 1;
    if let Some(r) = registers.get_mut(index) {
        *r = (*r).max(rank as u8);
    }
}

/// Ertl's improved raw estimator (arXiv:1702.01284, algorithm 6) over the register histogram.
fn estimate(registers: &[u8]) -> u64 {
    let mut histogram = [0u32; RANK_BITS as usize + 2];
    for r in registers {
        if let Some(c) = histogram.get_mut(usize::from(*r)) {
            *c += 1;
        }
    }
    let m = registers.len() as f64;
    let count = |k: usize| f64::from(histogram.get(k).copied().unwrap_or(0));
    let q = RANK_BITS as usize;
    let mut z = m * tau((m - count(q + 1)) / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + count(k));
    }
    z += m * sigma(count(0) / m);
    let alpha_infinity = 1.0 / (2.0 * std::f64::consts::LN_2);
    (alpha_infinity * m * m / z).round() as u64
}

/// σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k−1), summed until it stops changing.
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))² 2^−k) / 3, summed until it stops changing.
fn tau(mut x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_hash_is_siphash_2_4_with_a_zero_key() {
        // The SipHash paper's test vector (Aumasson & Bernstein 2012, appendix A): bytes
        // 00..0e under key 00..0f hash to a129ca6149be45e5. ClickHouse agreeing with the zero
        // key is checked against the server (touchline-clickhouse tests).
        let keyed = SipHasher24::new_with_keys(0x0706050403020100, 0x0f0e0d0c0b0a0908);
        let input: Vec<u8> = (0u8..15).collect();
        assert_eq!(keyed.hash(&input), 0xa129ca6149be45e5);
        assert_eq!(identity_hash("a"), SipHasher24::new_with_keys(0, 0).hash(b"a"));
    }

    #[test]
    fn three_people_over_two_days_with_one_in_common_are_two_then_three() {
        // Day 1: ann, bob. Day 2: bob, cat. Each day 2; the two days together 3.
        let day1 = ReachSketch::of_identities(["ann", "bob"]);
        let day2 = ReachSketch::of_identities(["cat", "bob", "bob"]);
        assert_eq!((day1.count(), day2.count()), (2, 2));
        let mut both = day1.clone();
        both.merge(&day2);
        assert_eq!(both.count(), 3);
        assert!(both.is_exact());
        assert_eq!(both, ReachSketch::of_identities(["ann", "bob", "cat"]));
    }

    #[test]
    fn the_exact_form_is_one_tag_byte_and_eight_bytes_a_hash() {
        let s = ReachSketch::from_hashes([3, 1, 2, 3]);
        assert_eq!(s.to_bytes(), [vec![1], 1u64.to_le_bytes().to_vec(), 2u64.to_le_bytes().to_vec(), 3u64.to_le_bytes().to_vec()].concat());
        assert_eq!(ReachSketch::from_bytes(&s.to_bytes()).unwrap(), s);
        assert_eq!(ReachSketch::default().to_bytes(), vec![1]);
    }

    #[test]
    fn a_set_past_the_limit_turns_dense_and_reads_back() {
        let exact = ReachSketch::from_hashes((0..EXACT_LIMIT as u64).map(|i| identity_hash(&i.to_string())));
        assert!(exact.is_exact());
        let dense = ReachSketch::from_hashes((0..=EXACT_LIMIT as u64).map(|i| identity_hash(&i.to_string())));
        assert!(!dense.is_exact());
        let bytes = dense.to_bytes();
        assert_eq!(bytes.len(), 2 + REGISTERS);
        assert_eq!(ReachSketch::from_bytes(&bytes).unwrap(), dense);
    }

    #[test]
    fn the_bytes_of_sorted_hashes_are_those_of_their_sketch() {
        for n in [0, 1, 5, EXACT_LIMIT, EXACT_LIMIT + 1, 3 * EXACT_LIMIT] {
            let sketch = ReachSketch::from_hashes((0..n as u64).map(|i| identity_hash(&i.to_string())));
            let mut sorted: Vec<u64> = (0..n as u64).map(|i| identity_hash(&i.to_string())).collect();
            sorted.sort_unstable();
            assert_eq!(ReachSketch::bytes_of_sorted(&sorted), sketch.to_bytes(), "{n} hashes");
        }
    }

    #[test]
    fn extended_bytes_are_those_of_the_whole_set() {
        let hash = |i: u64| identity_hash(&i.to_string());
        for (before, after) in [(0, 3), (10, 20), (EXACT_LIMIT - 2, EXACT_LIMIT + 5), (EXACT_LIMIT + 5, 3 * EXACT_LIMIT)] {
            let sorted = |n: u64| {
                let mut h: Vec<u64> = (0..n).map(hash).collect();
                h.sort_unstable();
                h
            };
            let mut bytes = ReachSketch::bytes_of_sorted(&sorted(before as u64));
            let joined: Vec<u64> = (before as u64..after as u64).map(hash).collect();
            ReachSketch::extend_bytes(&mut bytes, &sorted(after as u64), &joined);
            assert_eq!(bytes, ReachSketch::bytes_of_sorted(&sorted(after as u64)), "{before} then {after}");
        }
    }

    #[test]
    fn registers_take_the_rank_above_the_index_bits() {
        // Hash with index 5 and 3 zero bits above the index: rank 4 in register 5.
        let mut registers = vec![0u8; REGISTERS];
        observe(&mut registers, (0b1000u64 << PRECISION) | 5);
        assert_eq!(registers.get(5), Some(&4));
        // All bits above the index zero: the largest rank, RANK_BITS + 1 = 51.
        observe(&mut registers, 7);
        assert_eq!(registers.get(7), Some(&51));
    }

    #[test]
    fn an_empty_dense_sketch_counts_zero() {
        assert_eq!(estimate(&vec![0u8; REGISTERS]), 0);
    }

    #[test]
    fn bytes_that_are_not_a_sketch_are_refused() {
        assert!(ReachSketch::from_bytes(&[]).is_err());
        assert!(ReachSketch::from_bytes(&[9]).is_err());
        assert!(ReachSketch::from_bytes(&[1, 0, 0]).is_err());
        let unsorted = [vec![1], 2u64.to_le_bytes().to_vec(), 1u64.to_le_bytes().to_vec()].concat();
        assert!(ReachSketch::from_bytes(&unsorted).is_err());
        assert!(ReachSketch::from_bytes(&[2, 12, 0]).is_err());
        let mut too_high = vec![2, PRECISION as u8];
        too_high.extend(std::iter::repeat_n(52u8, REGISTERS));
        assert!(ReachSketch::from_bytes(&too_high).is_err());
    }
}
