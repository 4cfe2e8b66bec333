//! [`Held`]: a touch as the engine's state keeps it. The same information as the public
//! [`Touch`] (which stays the wire form of identity transfers), but with every repeated string
//! shared through the state's [`Interner`] and the record dedup key (`r:{record id}`) implied
//! instead of stored, so that keeping a touch allocates once (its record id). It serialises
//! exactly like the [`Touch`] it stands for, so snapshots keep their format.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use touchline_model::Id;

use crate::attribution::{CreditedTouch, Touch, TouchSource};
use crate::text::{Interner, Text};
use crate::util::Fingerprint;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    /// Record id of the record this touch comes from.
    pub id: Text,
    /// Dedup key; `None` means `r:{id}`.
    pub key: Option<Text>,
    pub identity: Text,
    pub at: DateTime<Utc>,
    /// `at` in nanoseconds since the epoch ([`nanos`]), for time-decay weights without chrono's
    /// calendar arithmetic per touch and conversion.
    pub at_ns: i64,
    pub received_at: DateTime<Utc>,
    pub source: TouchSource,
    pub view: bool,
    /// The touch as attribution rows name it (record id, kind, channel, attributed campaign, ad,
    /// time), built once when the touch is kept: every path table that lists this touch shares
    /// it (one reference count instead of one per string). Kind, channel and ad id live only
    /// here ([`Held::kind`], …).
    pub face: Arc<CreditedTouch>,
    /// Hash of the record id and attributed campaign: this touch's part of the per-model
    /// fingerprints of the conversions it is credited for (`FpScheme::Touches` in the engine),
    /// computed once here rather than per conversion (where reading both strings again costs
    /// two cache misses).
    pub fp: u64,
    pub campaign_id: Option<Text>,
    pub utm_source: Option<Text>,
    pub utm_medium: Option<Text>,
    pub utm_campaign: Option<Text>,
    pub foreign: bool,
    pub hops: u8,
}

/// What a [`Held`] is made of; [`Held::build`] derives the rest (time in nanoseconds, face).
pub(crate) struct Parts {
    pub id: Text,
    pub key: Option<Text>,
    pub identity: Text,
    pub at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub source: TouchSource,
    pub view: bool,
    pub kind: Text,
    pub channel: Text,
    pub campaign_id: Option<Text>,
    pub advertisement_id: Option<Text>,
    pub utm_source: Option<Text>,
    pub utm_medium: Option<Text>,
    pub utm_campaign: Option<Text>,
    pub foreign: bool,
    pub hops: u8,
}

/// The campaign a touch's attribution rows name: its campaign id, else its utm_campaign (the
/// same key the daily metrics use) when that is a valid id (in the id's normal form).
fn attributed_campaign(campaign_id: Option<&Text>, utm_campaign: Option<&Text>) -> Option<Text> {
    match campaign_id {
        Some(id) => Some(id.clone()),
        None => utm_campaign.and_then(|u| match Id::new(u.as_str()) {
            Ok(id) if id.as_str() == u.as_str() => Some(u.clone()),
            Ok(id) => Some(Text::new(id.as_str())),
            Err(_) => None,
        }),
    }
}

/// Nanoseconds since the epoch; `i64::MIN` outside 1677–2262 and for a time inside a leap
/// second (which shares its nanosecond count with the next second's start, so it would order
/// and subtract differently than chrono does), where callers fall back to chrono
/// ([`elapsed_ms`], the engine's lookback window). Elsewhere the mapping is strictly increasing:
/// comparing these compares the times.
pub(crate) fn nanos(at: DateTime<Utc>) -> i64 {
    use chrono::Timelike;
    if at.nanosecond() >= 1_000_000_000 {
        return i64::MIN;
    }
    at.timestamp_nanos_opt().unwrap_or(i64::MIN)
}

/// Whole milliseconds from `from` to `to` (`(to - from).num_milliseconds()`, negative when `from`
/// is later), from their [`nanos`] when both are in range.
pub(crate) fn elapsed_ms(from: DateTime<Utc>, from_ns: i64, to: DateTime<Utc>, to_ns: i64) -> i64 {
    if from_ns != i64::MIN && to_ns != i64::MIN {
        if let Some(d) = to_ns.checked_sub(from_ns) {
            // Truncation toward zero, as `TimeDelta::num_milliseconds`.
            return d / 1_000_000;
        }
    }
    (to - from).num_milliseconds()
}

/// The dedup key of a touch, borrowed: `r:{id}` or a stored key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyRef<'a> {
    Record(&'a str),
    Other(&'a str),
}

impl<'a> KeyRef<'a> {
    /// A comparable form: `(true, id)` for `r:{id}` keys (stored or implied), `(false, key)` else.
    pub fn norm(self) -> (bool, &'a str) {
        match self {
            KeyRef::Record(id) => (true, id),
            KeyRef::Other(k) => match k.strip_prefix("r:") {
                Some(id) => (true, id),
                None => (false, k),
            },
        }
    }

    #[cfg(test)]
    fn eq(self, o: KeyRef<'_>) -> bool {
        let (a, b) = (self.norm(), o.norm());
        a.0 == b.0 && str_eq(a.1, b.1)
    }

    pub fn to_key_string(self) -> String {
        match self {
            KeyRef::Record(id) => {
                let mut k = String::with_capacity(2 + id.len());
                k.push_str("r:");
                k.push_str(id);
                k
            }
            KeyRef::Other(k) => k.to_owned(),
        }
    }
}

/// String equality without a `memcmp` call for the short strings of record ids (overlapping word
/// loads from both ends; exact), and a first-word test before the full compare of longer ones.
#[inline]
pub(crate) fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n >= 8 {
        let w = |x: &[u8]| x.first_chunk::<8>().map(|c| u64::from_ne_bytes(*c));
        let l = |x: &[u8]| x.last_chunk::<8>().map(|c| u64::from_ne_bytes(*c));
        if w(a) != w(b) || l(a) != l(b) {
            return false;
        }
        n <= 16 || a == b
    } else if n >= 4 {
        let w = |x: &[u8]| x.first_chunk::<4>().map(|c| u32::from_ne_bytes(*c));
        let l = |x: &[u8]| x.last_chunk::<4>().map(|c| u32::from_ne_bytes(*c));
        w(a) == w(b) && l(a) == l(b)
    } else {
        a == b
    }
}

impl std::fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::Record(id) => {
                f.write_str("r:")?;
                f.write_str(id)
            }
            KeyRef::Other(k) => f.write_str(k),
        }
    }
}

impl Held {
    pub fn key(&self) -> KeyRef<'_> {
        match &self.key {
            None => KeyRef::Record(&self.id),
            Some(k) => KeyRef::Other(k),
        }
    }

    #[cfg(test)]
    pub fn same_key(&self, o: &Held) -> bool {
        self.key().eq(o.key())
    }

    /// Whether this touch's dedup key is `k` (a [`KeyRef::norm`] form).
    #[inline]
    pub fn has_key(&self, k: (bool, &str)) -> bool {
        let mine = self.key().norm();
        mine.0 == k.0 && str_eq(mine.1, k.1)
    }

    /// A direct touch has no campaign and no UTM source.
    pub fn is_direct(&self) -> bool {
        self.campaign_id.is_none() && self.utm_source.is_none()
    }

    /// Order of touches on a path and of a stored list: `(timestamp, record id, received_at)`.
    pub fn order(&self) -> (DateTime<Utc>, &str, DateTime<Utc>) {
        (self.at, &self.id, self.received_at)
    }

    /// See [`Touch::wins_over`].
    pub fn wins_over(&self, other: &Held) -> bool {
        self.order() < other.order()
    }

    /// The campaign key of daily metrics: campaign id, else utm_campaign.
    pub fn metric_campaign(&self) -> Option<&str> {
        self.campaign_id.as_deref().or(self.utm_campaign.as_deref())
    }

    /// From the public form, sharing strings through `int`.
    pub fn from_touch(t: &Touch, int: &mut Interner) -> Held {
        Held::from_touch_with(t, |s| int.get(s))
    }

    /// From the public form, each shareable string made by `text`.
    fn from_touch_with(t: &Touch, mut text: impl FnMut(&str) -> Text) -> Held {
        let key = match t.key.strip_prefix("r:") {
            Some(rest) if rest == t.id.as_str() => None,
            _ => Some(Text::new(&t.key)),
        };
        Held::build(Parts {
            id: Text::new(t.id.as_str()),
            key,
            identity: text(&t.identity),
            at: t.at,
            received_at: t.received_at,
            source: t.source,
            view: t.view,
            kind: text(&t.kind),
            channel: text(&t.channel),
            campaign_id: t.campaign_id.as_deref().map(&mut text),
            advertisement_id: t.advertisement_id.as_deref().map(&mut text),
            utm_source: t.utm_source.as_deref().map(&mut text),
            utm_medium: t.utm_medium.as_deref().map(&mut text),
            utm_campaign: t.utm_campaign.as_deref().map(&mut text),
            foreign: t.foreign,
            hops: t.hops,
        })
    }

    /// A held touch from its parts.
    pub fn build(p: Parts) -> Held {
        let face = Arc::new(CreditedTouch {
            touchpoint_id: Some(p.id.clone()),
            touch_kind: p.kind,
            channel: p.channel,
            campaign_id: attributed_campaign(p.campaign_id.as_ref(), p.utm_campaign.as_ref()),
            advertisement_id: p.advertisement_id,
            touched_at: Some(p.at),
        });
        let mut h = Fingerprint::new(false);
        h.bytes(p.id.as_bytes());
        h.bytes(face.campaign_id.as_deref().unwrap_or("").as_bytes());
        Held {
            fp: h.value(),
            id: p.id,
            key: p.key,
            identity: p.identity,
            at: p.at,
            at_ns: nanos(p.at),
            received_at: p.received_at,
            source: p.source,
            view: p.view,
            face,
            campaign_id: p.campaign_id,
            utm_source: p.utm_source,
            utm_medium: p.utm_medium,
            utm_campaign: p.utm_campaign,
            foreign: p.foreign,
            hops: p.hops,
        }
    }

    pub fn kind(&self) -> &Text {
        &self.face.touch_kind
    }

    pub fn channel(&self) -> &Text {
        &self.face.channel
    }

    pub fn advertisement_id(&self) -> Option<&Text> {
        self.face.advertisement_id.as_ref()
    }

    /// Replaces every shareable string by the interner's copy (after a restore).
    pub fn intern(&mut self, int: &mut Interner) {
        let f = |t: &mut Text, int: &mut Interner| *t = int.get(t);
        let o = |t: &mut Option<Text>, int: &mut Interner| {
            if let Some(x) = t {
                *x = int.get(x);
            }
        };
        f(&mut self.identity, int);
        o(&mut self.campaign_id, int);
        o(&mut self.utm_source, int);
        o(&mut self.utm_medium, int);
        o(&mut self.utm_campaign, int);
        // A restored touch's face is its own (not shared yet): interned in place.
        let face = Arc::make_mut(&mut self.face);
        f(&mut face.touch_kind, int);
        f(&mut face.channel, int);
        o(&mut face.campaign_id, int);
        o(&mut face.advertisement_id, int);
    }

    /// The public form (for identity transfers).
    pub fn to_touch(&self) -> Touch {
        // Every string here came from a valid `Id` (or from a transfer's, validated on decode).
        let id = |s: &str| Id::new(s).unwrap_or_else(|_| Id::from_uuid(uuid::Uuid::nil()));
        Touch {
            id: id(&self.id),
            key: self.key().to_key_string(),
            identity: self.identity.to_string(),
            at: self.at,
            received_at: self.received_at,
            source: self.source,
            view: self.view,
            kind: self.kind().clone(),
            channel: self.channel().clone(),
            campaign_id: self.campaign_id.as_deref().map(id),
            advertisement_id: self.advertisement_id().map(|a| id(a)),
            utm_source: self.utm_source.as_deref().map(str::to_owned),
            utm_medium: self.utm_medium.as_deref().map(str::to_owned),
            utm_campaign: self.utm_campaign.as_deref().map(str::to_owned),
            foreign: self.foreign,
            hops: self.hops,
        }
    }
}

/// Field for field what `#[derive(Serialize)]` on [`Touch`] writes.
impl Serialize for Held {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Key<'a>(KeyRef<'a>);
        impl Serialize for Key<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    KeyRef::Other(k) => s.serialize_str(k),
                    r => s.collect_str(&r),
                }
            }
        }
        let n = 9
            + usize::from(self.campaign_id.is_some())
            + usize::from(self.face.advertisement_id.is_some())
            + usize::from(self.utm_source.is_some())
            + usize::from(self.utm_medium.is_some())
            + usize::from(self.utm_campaign.is_some())
            + usize::from(self.foreign)
            + usize::from(self.hops != 0);
        let mut st = s.serialize_struct("Touch", n)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("key", &Key(self.key()))?;
        st.serialize_field("identity", &self.identity)?;
        st.serialize_field("at", &Rfc3339(&self.at))?;
        st.serialize_field("received_at", &Rfc3339(&self.received_at))?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("view", &self.view)?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("channel", self.channel())?;
        macro_rules! opt {
            ($name:literal, $f:expr) => {
                match &$f {
                    Some(v) => st.serialize_field($name, v)?,
                    None => st.skip_field($name)?,
                }
            };
        }
        opt!("campaign_id", self.campaign_id);
        opt!("advertisement_id", self.face.advertisement_id);
        opt!("utm_source", self.utm_source);
        opt!("utm_medium", self.utm_medium);
        opt!("utm_campaign", self.utm_campaign);
        if self.foreign {
            st.serialize_field("foreign", &self.foreign)?;
        } else {
            st.skip_field("foreign")?;
        }
        if self.hops != 0 {
            st.serialize_field("hops", &self.hops)?;
        } else {
            st.skip_field("hops")?;
        }
        st.end()
    }
}

/// A time serialised exactly as chrono's `Serialize` writes it (RFC 3339 in UTC: `Z`, fractional
/// seconds in 0, 3, 6 or 9 digits as needed, a leap second as `:60`), without chrono's formatting
/// machinery (a third of a snapshot's time went there). Years outside 0..=9999 go through chrono.
pub(crate) struct Rfc3339<'a>(pub &'a DateTime<Utc>);

impl Rfc3339<'_> {
    /// The text, in `buf`; `None` outside years 0..=9999.
    fn write<'b>(&self, buf: &'b mut [u8; 30]) -> Option<&'b str> {
        use chrono::{Datelike, Timelike};
        let at = self.0;
        let year = at.year();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let (mut sec, mut nano) = (at.second(), at.nanosecond());
        if nano >= 1_000_000_000 {
            sec += 1;
            nano -= 1_000_000_000;
        }
        let digits = |buf: &mut [u8; 30], at: usize, v: u32, n: usize| {
            let mut v = v;
            for i in (0..n).rev() {
                if let Some(b) = buf.get_mut(at + i) {
                    *b = b'0' + (v % 10) as u8;
                }
                v /= 10;
            }
        };
        *buf = *b"0000-00-00T00:00:00.000000000Z";
        digits(buf, 0, year as u32, 4);
        digits(buf, 5, at.month(), 2);
        digits(buf, 8, at.day(), 2);
        digits(buf, 11, at.hour(), 2);
        digits(buf, 14, at.minute(), 2);
        digits(buf, 17, sec, 2);
        let len = if nano == 0 {
            19
        } else if nano % 1_000_000 == 0 {
            digits(buf, 20, nano / 1_000_000, 3);
            23
        } else if nano % 1_000 == 0 {
            digits(buf, 20, nano / 1_000, 6);
            26
        } else {
            digits(buf, 20, nano, 9);
            29
        };
        *buf.get_mut(len)? = b'Z';
        std::str::from_utf8(buf.get(..=len)?).ok()
    }
}

impl Serialize for Rfc3339<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match self.write(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => self.0.serialize(s),
        }
    }
}

/// Reads a time as chrono's `Deserialize` does; the form [`Rfc3339`] writes is parsed directly
/// (a fifth of a restore went to chrono's general parser), anything else by chrono.
pub(crate) fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateTime<Utc>, E> {
            match parse_rfc3339_utc(v) {
                Some(t) => Ok(t),
                None => v.parse::<DateTime<chrono::FixedOffset>>().map(|t| t.with_timezone(&Utc)).map_err(E::custom),
            }
        }
    }
    d.deserialize_str(V)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z` (what [`Rfc3339`] writes); `None` for any
/// other text, which chrono then parses.
fn parse_rfc3339_utc(v: &str) -> Option<DateTime<Utc>> {
    let b = v.as_bytes();
    let num = |from: usize, n: usize| -> Option<u32> {
        let mut x = 0u32;
        for c in b.get(from..from + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            x = x * 10 + u32::from(c - b'0');
        }
        Some(x)
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':') && b.last() == Some(&b'Z')) {
        return None;
    }
    let nano = match b.len() {
        20 => 0,
        24 if at(19, b'.') => num(20, 3)? * 1_000_000,
        27 if at(19, b'.') => num(20, 6)? * 1_000,
        30 if at(19, b'.') => num(20, 9)?,
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let (h, m, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    // A leap second `:60` is chrono's second 59 with a nanosecond of a second or more.
    let (s, nano) = if s == 60 { (59, nano + 1_000_000_000) } else { (s, nano) };
    let time = chrono::NaiveTime::from_hms_nano_opt(h, m, s, nano)?;
    Some(date.and_time(time).and_utc())
}

/// Reads what [`Touch`] reads. Strings are not shared here: the engine interns them after a
/// restore ([`Held::intern`]).
impl<'de> Deserialize<'de> for Held {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = Touch::deserialize(d)?;
        Ok(Held::from_touch_with(&t, Text::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    /// A xorshift64 generator (deterministic test inputs).
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut g = seed;
        move || {
            g ^= g << 13;
            g ^= g >> 7;
            g ^= g << 17;
            g
        }
    }

    /// `Rfc3339` writes exactly what chrono's `Serialize` writes: every fractional-second width,
    /// leap seconds, years 0–9999 and (through chrono) beyond.
    #[test]
    fn rfc3339_matches_chrono() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let (mut fast, mut total) = (0, 0);
        for i in 0..200_000u64 {
            // Seconds from year −100 to 10100; nanoseconds of every width (and leap seconds).
            let secs = (next() % 320_000_000_000) as i64 - 65_000_000_000;
            let nanos = match i % 5 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1000,
                3 => (next() % 1_000_000_000) as u32,
                _ => (next() % 2_000_000_000) as u32,
            };
            let Some(at) = DateTime::from_timestamp(secs, nanos) else { continue };
            let want = serde_json::to_string(&at).unwrap_or_default();
            let got = serde_json::to_string(&Rfc3339(&at)).unwrap_or_default();
            assert_eq!(got, want, "{secs} s {nanos} ns");
            total += 1;
            if Rfc3339(&at).write(&mut [0u8; 30]).is_some() {
                fast += 1;
            }
        }
        assert!(fast > 100_000 && total - fast > 1_000, "{fast} of {total} written without chrono");
    }

    /// `de_time` reads what chrono's `Deserialize` reads, to the same value, and refuses what it
    /// refuses: the canonical form (every width, leap seconds) and variants of it (offsets, a
    /// lower-case `z`, impossible dates and times, other widths, junk).
    #[test]
    fn de_time_matches_chrono() {
        let mut next = xorshift(0xD1B5_4A32_D192_ED03);
        let (mut fast, mut ok, mut refused) = (0, 0, 0);
        for i in 0..100_000u64 {
            let secs = (next() % 253_402_300_799) as i64;
            let nanos = match i % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 2_000_000_000) as u32,
                _ => (next() % 1_000_000) as u32 * 1000,
            };
            let Some(at) = DateTime::from_timestamp(secs, nanos) else { continue };
            let canonical = serde_json::to_string(&Rfc3339(&at)).unwrap_or_default();
            let text = canonical.trim_matches('"').to_owned();
            let mut variants = vec![text.clone()];
            // Byte edits: a digit, a separator, the zone, a truncation, an offset.
            let mut bytes = text.clone().into_bytes();
            let pos = (next() as usize) % bytes.len();
            if let Some(b) = bytes.get_mut(pos) {
                *b = b"0123456789:-TZz.+ "[(next() % 18) as usize];
            }
            variants.push(String::from_utf8_lossy(&bytes).into_owned());
            variants.push(text.replace('Z', "+01:30"));
            variants.push(text.replace('Z', "z"));
            variants.push(text.get(..text.len() - 2).unwrap_or("").to_owned() + "Z");
            for v in variants {
                if parse_rfc3339_utc(&v).is_some() {
                    fast += 1;
                }
                let json = serde_json::to_string(&v).unwrap_or_default();
                let want = serde_json::from_str::<DateTime<Utc>>(&json).ok();
                let got = de_time(&mut serde_json::Deserializer::from_str(&json)).ok();
                assert_eq!(got, want, "{v}");
                if want.is_some() {
                    ok += 1;
                } else {
                    refused += 1;
                }
            }
        }
        assert!(fast > 100_000 && ok > fast && refused > 50_000, "{fast} parsed directly, {ok} accepted, {refused} refused");
    }

    /// `elapsed_ms` from stored nanoseconds is chrono's `(to - from).num_milliseconds()`: sub-
    /// millisecond parts, either order, before 1970, and (through chrono) outside 1677–2262.
    #[test]
    fn elapsed_ms_matches_chrono() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let span = 400 * 365 * 86_400i64;
        // Seconds in 1570–2370 (some outside the nanosecond range), any nanosecond.
        let at = |r1: u64, r2: u64| {
            DateTime::from_timestamp((r1 % (2 * span as u64)) as i64 - span, (r2 % 1_000_000_000) as u32).unwrap_or_default()
        };
        let (mut fast, mut slow) = (0, 0);
        for _ in 0..100_000 {
            let (a, b) = (at(next(), next()), at(next(), next()));
            // Near pairs too (the time-decay case: minutes to weeks apart).
            let c = b + chrono::TimeDelta::nanoseconds((next() % 3_000_000_000_000_000) as i64 - 1_000_000_000_000_000);
            for (from, to) in [(a, b), (b, a), (b, c), (c, b)] {
                let (fa, ta) = (nanos(from), nanos(to));
                if fa == i64::MIN || ta == i64::MIN {
                    slow += 1;
                } else {
                    fast += 1;
                }
                assert_eq!(elapsed_ms(from, fa, to, ta), (to - from).num_milliseconds(), "{from} → {to}");
            }
        }
        assert!(fast > 100_000 && slow > 10_000, "both paths exercised: {fast} fast, {slow} through chrono");
    }

    /// Where both times have a nanosecond count, comparing the counts compares the times (what
    /// the lookback window relies on); times inside a leap second have none.
    #[test]
    fn nanos_order_like_the_times() {
        use chrono::{NaiveDate, NaiveTime};
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let day = NaiveDate::from_ymd_opt(2016, 12, 31).unwrap_or_default();
        // Around a leap second: 23:59:59.x, 23:59:60.x (nanosecond ≥ 10⁹) and 00:00:00.x.
        let near = |r: u64| {
            let nano = (r % 2_000_000_000) as u32;
            match r % 3 {
                0 => day.and_time(NaiveTime::from_hms_nano_opt(23, 59, 59, nano).unwrap_or_default()).and_utc(),
                1 => day
                    .succ_opt()
                    .unwrap_or_default()
                    .and_time(NaiveTime::from_hms_nano_opt(0, 0, 0, nano % 1_000_000_000).unwrap_or_default())
                    .and_utc(),
                _ => day.and_time(NaiveTime::from_hms_nano_opt(23, 59, 58, nano % 1_000_000_000).unwrap_or_default()).and_utc(),
            }
        };
        let span = 400 * 365 * 86_400i64;
        let far = |r1: u64, r2: u64| {
            DateTime::from_timestamp((r1 % (2 * span as u64)) as i64 - span, (r2 % 1_000_000_000) as u32).unwrap_or_default()
        };
        let (mut compared, mut leap) = (0, 0);
        for k in 0..200_000 {
            let (a, b) = if k % 2 == 0 { (near(next()), near(next())) } else { (far(next(), next()), far(next(), next())) };
            for t in [a, b] {
                if t.nanosecond() >= 1_000_000_000 {
                    leap += 1;
                    assert_eq!(nanos(t), i64::MIN, "{t}");
                }
            }
            let (na, nb) = (nanos(a), nanos(b));
            if na != i64::MIN && nb != i64::MIN {
                compared += 1;
                assert_eq!(na.cmp(&nb), a.cmp(&b), "{a} vs {b}");
            }
        }
        assert!(compared > 100_000 && leap > 10_000, "{compared} compared, {leap} leap");
    }

    fn touch(key: &str) -> Touch {
        let at = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        Touch {
            id: Id::new("t1").unwrap_or_else(|_| Id::from_uuid(uuid::Uuid::nil())),
            key: key.into(),
            identity: "a1".into(),
            at,
            received_at: at,
            source: TouchSource::Event,
            view: false,
            kind: "event".into(),
            channel: "google".into(),
            campaign_id: None,
            advertisement_id: Id::new("ad").ok(),
            utm_source: Some("google".into()),
            utm_medium: None,
            utm_campaign: Some("spring".into()),
            foreign: true,
            hops: 2,
        }
    }

    #[test]
    fn serialises_like_the_public_touch_and_round_trips() {
        for key in ["r:t1", "s:S1|google||spring|", "r:t2"] {
            let t = touch(key);
            let h = Held::from_touch(&t, &mut Interner::default());
            assert_eq!(h.key.is_none(), key == "r:t1");
            let a = serde_json::to_string(&t).unwrap_or_default();
            let b = serde_json::to_string(&h).unwrap_or_default();
            assert_eq!(a, b);
            let back: Held = serde_json::from_str(&b).unwrap_or_else(|_| h.clone());
            assert_eq!(back, h);
            assert_eq!(h.to_touch(), t);
        }
        let mut t = touch("r:t1");
        t.foreign = false;
        t.hops = 0;
        t.advertisement_id = None;
        let h = Held::from_touch(&t, &mut Interner::default());
        assert_eq!(serde_json::to_string(&t).unwrap_or_default(), serde_json::to_string(&h).unwrap_or_default());
    }

    #[test]
    fn str_eq_is_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abce",
            "bbcd",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnoq",
            "abcdefghXjklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "abcdefghijXlmnopq",
            "r12345",
            "r32345",
        ];
        for a in words {
            for b in words {
                assert_eq!(str_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn keys_compare_across_forms() {
        let mut int = Interner::default();
        let a = Held::from_touch(&touch("r:t1"), &mut int);
        let mut b = a.clone();
        b.key = Some(Text::new("r:t1"));
        assert!(a.same_key(&b) && b.same_key(&a));
        b.key = Some(Text::new("s:x"));
        assert!(!a.same_key(&b));
    }
}
