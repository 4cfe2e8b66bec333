//! Request bodies as templates with fixed-width holes: the text of a record is drawn once at
//! start, and each request copies it and writes a fresh message id, visitor, customer and
//! time into the holes. Formatting every record anew costs the generator more than the server
//! spends decoding it, and on a 2-core machine the two share the CPU.

use rand::rngs::SmallRng;
use rand::Rng;

/// Width of a message-id sequence hole: 16 hexadecimal digits.
pub const SEQ_WIDTH: usize = 16;
/// Width of a visitor or customer number hole: 10 decimal digits.
pub const NUMBER_WIDTH: usize = 10;
/// Width of a time hole: RFC 3339 with milliseconds in UTC, `2026-12-06T18:00:00.000Z`.
pub const TIME_WIDTH: usize = 24;
/// Width of an epoch-milliseconds hole.
pub const MILLIS_WIDTH: usize = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hole {
    /// The request's unique sequence number, hexadecimal.
    Seq,
    /// A visitor drawn for this record (also used by the record's other visitor holes).
    Visitor,
    /// The customer of that visitor (visitor / 2).
    Customer,
    Time,
    Millis,
}

/// A record's text with the positions of its holes.
#[derive(Clone, Debug, Default)]
pub struct Template {
    bytes: Vec<u8>,
    holes: Vec<(usize, Hole)>,
}

impl Template {
    pub fn lit(&mut self, s: &str) -> &mut Self {
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }

    fn hole(&mut self, hole: Hole, width: usize) -> &mut Self {
        self.holes.push((self.bytes.len(), hole));
        self.bytes.resize(self.bytes.len() + width, b'0');
        self
    }

    pub fn seq(&mut self) -> &mut Self {
        self.hole(Hole::Seq, SEQ_WIDTH)
    }

    pub fn visitor(&mut self) -> &mut Self {
        self.hole(Hole::Visitor, NUMBER_WIDTH)
    }

    pub fn customer(&mut self) -> &mut Self {
        self.hole(Hole::Customer, NUMBER_WIDTH)
    }

    pub fn time(&mut self) -> &mut Self {
        self.hole(Hole::Time, TIME_WIDTH)
    }

    pub fn millis(&mut self) -> &mut Self {
        self.hole(Hole::Millis, MILLIS_WIDTH)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// Fills holes: one per connection, so sequence numbers never repeat within a run.
pub struct Filler {
    /// High bits of every sequence number: the connection, so connections never collide.
    seq_base: u64,
    seq: u64,
    identities: u64,
    now: [u8; TIME_WIDTH],
    now_ms: [u8; MILLIS_WIDTH],
}

impl Filler {
    pub fn new(connection: u64, identities: u64) -> Self {
        Filler { seq_base: connection << 40, seq: 0, identities: identities.max(1), now: [b'0'; TIME_WIDTH], now_ms: [b'0'; MILLIS_WIDTH] }
    }

    /// Sets the time the next records carry.
    pub fn set_now(&mut self, now: chrono::DateTime<chrono::Utc>) {
        let text = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if text.len() == TIME_WIDTH {
            self.now.copy_from_slice(text.as_bytes());
        }
        write_decimal(&mut self.now_ms, u64::try_from(now.timestamp_millis()).unwrap_or(0));
    }

    /// Appends `t` to `out` with its holes filled.
    pub fn write(&mut self, t: &Template, rng: &mut SmallRng, out: &mut Vec<u8>) {
        let base = out.len();
        out.extend_from_slice(&t.bytes);
        self.seq += 1;
        let seq = self.seq_base | self.seq;
        let visitor = rng.random_range(0..self.identities);
        for (at, hole) in &t.holes {
            let at = base + at;
            match hole {
                Hole::Seq => write_hex(&mut out[at..at + SEQ_WIDTH], seq),
                Hole::Visitor => write_decimal(&mut out[at..at + NUMBER_WIDTH], visitor),
                Hole::Customer => write_decimal(&mut out[at..at + NUMBER_WIDTH], visitor / 2),
                Hole::Time => out[at..at + TIME_WIDTH].copy_from_slice(&self.now),
                Hole::Millis => out[at..at + MILLIS_WIDTH].copy_from_slice(&self.now_ms),
            }
        }
    }
}

fn write_hex(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// Right-aligned, zero-padded; keeps the lowest digits when `v` is wider than `dst`.
fn write_decimal(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn holes_get_fresh_values_and_the_rest_is_copied() {
        let mut t = Template::default();
        t.lit(r#"{"id":"r-"#)
            .seq()
            .lit(r#"","who":"v-"#)
            .visitor()
            .lit(r#"","c":"cust-"#)
            .customer()
            .lit(r#"","at":""#)
            .time()
            .lit(r#""}"#);
        let mut f = Filler::new(3, 1_000);
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T18:00:00.125Z").expect("time").to_utc();
        f.set_now(now);
        let mut rng = SmallRng::seed_from_u64(5);
        let mut out = Vec::new();
        f.write(&t, &mut rng, &mut out);
        f.write(&t, &mut rng, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        let first = &text[..t.len()];
        let v: serde_json::Value = serde_json::from_str(first).expect("json");
        // Connection 3 in the top bits, then sequence 1: 3 << 40 | 1 = 0x0000030000000001.
        assert_eq!(v["id"], "r-0000030000000001");
        assert_eq!(v["at"], "2026-12-06T18:00:00.125Z");
        let visitor: u64 = v["who"].as_str().expect("who")[2..].parse().expect("number");
        let customer: u64 = v["c"].as_str().expect("c")[5..].parse().expect("number");
        assert!(visitor < 1_000);
        assert_eq!(customer, visitor / 2);
        let second: serde_json::Value = serde_json::from_str(&text[t.len()..]).expect("json");
        assert_eq!(second["id"], "r-0000030000000002");
    }

    #[test]
    fn numbers_are_zero_padded_to_width() {
        let mut buf = [0u8; 10];
        write_decimal(&mut buf, 42);
        assert_eq!(&buf, b"0000000042");
        let mut hex = [0u8; 16];
        write_hex(&mut hex, 0xabc);
        assert_eq!(&hex, b"0000000000000abc");
    }
}
