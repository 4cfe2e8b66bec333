//! Timestamps written in the form chrono's `Serialize` gives a `DateTime<Utc>`
//! (`2026-11-21T10:00:00Z`, `…:00.120Z`, `…:00.120500Z`, `…:00.120500001Z`), without going
//! through `fmt`: every record carries two or three of them, and chrono's `Display` path cost
//! the collector more than the rest of the envelope's fixed fields together.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// Longest text: `+YYYYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX_LEN: usize = 34;

/// `t` as chrono writes it: seconds always, then 3, 6 or 9 fractional digits (the fewest that
/// hold the nanoseconds), then `Z`. A leap second shows as second 60.
pub fn format(t: &DateTime<Utc>, out: &mut [u8; MAX_LEN]) -> usize {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Outside four digits chrono writes a sign and more digits; records never get here
        // (the decoder keeps times in 2000–2100), so take the slow path rather than copy it.
        let s = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let n = s.len().min(MAX_LEN);
        out[..n].copy_from_slice(&s.as_bytes()[..n]);
        return n;
    }
    let mut nanos = t.nanosecond();
    let mut second = t.second();
    if nanos >= 1_000_000_000 {
        nanos -= 1_000_000_000;
        second += 1;
    }
    let mut w = Writer { out, n: 0 };
    w.digits(year as u32, 4);
    w.byte(b'-');
    w.digits(t.month(), 2);
    w.byte(b'-');
    w.digits(t.day(), 2);
    w.byte(b'T');
    w.digits(t.hour(), 2);
    w.byte(b':');
    w.digits(t.minute(), 2);
    w.byte(b':');
    w.digits(second, 2);
    if nanos != 0 {
        w.byte(b'.');
        if nanos.is_multiple_of(1_000_000) {
            w.digits(nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            w.digits(nanos / 1_000, 6);
        } else {
            w.digits(nanos, 9);
        }
    }
    w.byte(b'Z');
    w.n
}

/// Fills a fixed buffer from the front.
struct Writer<'a> {
    out: &'a mut [u8; MAX_LEN],
    n: usize,
}

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        self.out[self.n] = b;
        self.n += 1;
    }

    /// `value` in exactly `width` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, width: usize) {
        let mut v = value;
        for i in (0..width).rev() {
            self.out[self.n + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.n += width;
    }
}

/// serde `serialize_with` for a `DateTime<Utc>`.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    let n = format(t, &mut buf);
    // Only ASCII digits and punctuation, or chrono's own text, are written.
    s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
}

/// serde `serialize_with` for an `Option<DateTime<Utc>>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn ours(t: &DateTime<Utc>) -> String {
        let mut buf = [0u8; MAX_LEN];
        let n = format(t, &mut buf);
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// chrono's own serde output, the form readers of the bus have always seen.
    fn chrono_form(t: &DateTime<Utc>) -> String {
        serde_json::to_value(t).unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn matches_chrono_on_each_fraction_width() {
        let base = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        for (nanos, text) in [
            (0, "2026-11-21T10:00:00Z"),
            (120_000_000, "2026-11-21T10:00:00.120Z"),
            (120_500_000, "2026-11-21T10:00:00.120500Z"),
            (120_500_001, "2026-11-21T10:00:00.120500001Z"),
        ] {
            let t = base + chrono::Duration::nanoseconds(nanos);
            assert_eq!(ours(&t), text);
            assert_eq!(chrono_form(&t), text, "the hand-written form is chrono's");
        }
        let far = Utc.with_ymd_and_hms(12_345, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(ours(&far), chrono_form(&far));
    }

    proptest! {
        #[test]
        fn equals_chrono_serde_for_any_time(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000, width in 0usize..4) {
            let nanos = match width { 0 => 0, 1 => nanos / 1_000_000 * 1_000_000, 2 => nanos / 1_000 * 1_000, _ => nanos };
            let t = Utc.timestamp_opt(secs, nanos).single().unwrap();
            prop_assert_eq!(ours(&t), chrono_form(&t));
        }
    }
}
