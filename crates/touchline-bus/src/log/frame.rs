//! The on-disk record frame of the embedded log.
//!
//! ```text
//! len: u32 LE | crc: u32 LE | offset: u64 LE | timestamp_ms: i64 LE | key_len: u32 LE | key | value
//! ```
//! `len` counts the bytes after `crc` (offset, timestamp, key_len, key, value); `crc` is CRC-32
//! (IEEE) over those same bytes. A frame
//! whose length runs past the end of the file, or whose crc does not match, marks a torn tail.

/// Bytes before the payload: len + crc.
pub const PREFIX: usize = 8;
/// Fixed part of the payload: offset + timestamp + key_len.
pub const FIXED: usize = 20;
/// Largest payload a frame may claim; anything bigger is corruption.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// Appends one frame to `buf`.
pub fn encode(buf: &mut Vec<u8>, offset: u64, timestamp_ms: i64, key: &[u8], value: &[u8]) {
    let payload = FIXED + key.len() + value.len();
    buf.reserve(PREFIX + payload);
    buf.extend_from_slice(&(payload as u32).to_le_bytes());
    let crc_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let start = buf.len();
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = crc32fast::hash(&buf[start..]);
    buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Size of the frame for this key and value.
pub fn frame_len(key: &[u8], value: &[u8]) -> usize {
    PREFIX + FIXED + key.len() + value.len()
}

/// One decoded frame, borrowing from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Total bytes of the frame, prefix included.
    pub size: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Frame(Frame<'a>),
    /// The buffer ends inside the frame; `need` is the whole frame's size when known.
    Incomplete {
        need: Option<usize>,
    },
    Corrupt(String),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < PREFIX {
        return Decoded::Incomplete { need: None };
    }
    let payload = u32_at(buf, 0) as usize;
    if !(FIXED..=MAX_PAYLOAD).contains(&payload) {
        return Decoded::Corrupt(format!("frame length {payload} is out of range"));
    }
    let size = PREFIX + payload;
    if buf.len() < size {
        return Decoded::Incomplete { need: Some(size) };
    }
    let body = &buf[PREFIX..size];
    let want = u32_at(buf, 4);
    let got = crc32fast::hash(body);
    if want != got {
        return Decoded::Corrupt(format!("checksum mismatch (stored {want:08x}, computed {got:08x})"));
    }
    let offset = u64_at(body, 0);
    let timestamp_ms = u64_at(body, 8) as i64;
    let key_len = u32_at(body, 16) as usize;
    if FIXED + key_len > payload {
        return Decoded::Corrupt(format!("key length {key_len} exceeds the frame"));
    }
    Decoded::Frame(Frame { offset, timestamp_ms, key: &body[FIXED..FIXED + key_len], value: &body[FIXED + key_len..], size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        encode(&mut buf, 42, -7, b"acct:user", b"{\"v\":1}");
        encode(&mut buf, 43, 9, b"", b"");
        let Decoded::Frame(f) = decode(&buf) else { panic!() };
        assert_eq!((f.offset, f.timestamp_ms, f.key, f.value), (42, -7, &b"acct:user"[..], &b"{\"v\":1}"[..]));
        let Decoded::Frame(g) = decode(&buf[f.size..]) else { panic!() };
        assert_eq!(g.offset, 43);
        assert_eq!(f.size + g.size, buf.len());
        // Every strict prefix of a frame is incomplete, never a frame.
        for cut in 0..f.size {
            assert!(matches!(decode(&buf[..cut]), Decoded::Incomplete { .. }), "cut at {cut}");
        }
        // A flipped bit anywhere is caught.
        for i in 0..f.size {
            let mut b = buf[..f.size].to_vec();
            b[i] ^= 0x10;
            assert!(!matches!(decode(&b), Decoded::Frame(_)), "flip at {i}");
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics_nor_yields_a_false_frame(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Decoded::Frame(f) = decode(&bytes) {
                // Only possible if the garbage carries a matching CRC-32: re-encoding must agree.
                let mut b = Vec::new();
                encode(&mut b, f.offset, f.timestamp_ms, f.key, f.value);
                prop_assert_eq!(&b[..], &bytes[..f.size]);
            }
        }

        #[test]
        fn encode_decode_round_trips(offset: u64, ts: i64, key in proptest::collection::vec(any::<u8>(), 0..64), value in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut b = Vec::new();
            encode(&mut b, offset, ts, &key, &value);
            prop_assert_eq!(b.len(), frame_len(&key, &value));
            match decode(&b) {
                Decoded::Frame(f) => {
                    prop_assert_eq!(f.offset, offset);
                    prop_assert_eq!(f.timestamp_ms, ts);
                    prop_assert_eq!(f.key, &key[..]);
                    prop_assert_eq!(f.value, &value[..]);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
