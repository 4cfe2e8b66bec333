//! `touchline_bus::log::frame::decode` on arbitrary bytes, walked frame after frame as a segment
//! scan does, until `Incomplete` or `Corrupt`.
//!
//! Checks: no panic; every frame's size is at least PREFIX + FIXED, at most the bytes left and
//! equal to `frame_len(key, value)`; re-encoding a decoded frame reproduces its bytes exactly
//! (so a frame is only ever accepted with a matching CRC); every strict prefix of an accepted
//! frame is `Incomplete`; `Incomplete { need }` asks for more than is there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use touchline_bus::log::frame::{self, Decoded, FIXED, MAX_PAYLOAD, PREFIX};

fuzz_target!(|data: &[u8]| {
    let mut pos = 0usize;
    loop {
        let rest = &data[pos..];
        match frame::decode(rest) {
            Decoded::Frame(f) => {
                assert!(f.size >= PREFIX + FIXED, "frame of {} bytes is below the minimum", f.size);
                assert!(f.size <= rest.len(), "frame of {} bytes claims more than the {} left", f.size, rest.len());
                assert!(f.size - PREFIX <= MAX_PAYLOAD);
                assert_eq!(frame::frame_len(f.key, f.value), f.size);
                let mut again = Vec::new();
                frame::encode(&mut again, f.offset, f.timestamp_ms, f.key, f.value);
                assert_eq!(&again[..], &rest[..f.size], "re-encoding frame at byte {pos} differs");
                // A torn copy of this frame is never a frame (checked on a few cut points).
                for cut in [0, PREFIX - 1, PREFIX, PREFIX + FIXED - 1, f.size - 1] {
                    let cut = cut.min(f.size - 1);
                    assert!(
                        matches!(frame::decode(&rest[..cut]), Decoded::Incomplete { .. }),
                        "a {cut}-byte prefix of a {}-byte frame is not Incomplete",
                        f.size
                    );
                }
                pos += f.size;
            }
            Decoded::Incomplete { need } => {
                match need {
                    None => assert!(rest.len() < PREFIX),
                    Some(n) => {
                        assert!(n > rest.len() && n >= PREFIX + FIXED && n <= PREFIX + MAX_PAYLOAD, "need {n} with {} left", rest.len())
                    }
                }
                break;
            }
            Decoded::Corrupt(why) => {
                assert!(!why.is_empty());
                break;
            }
        }
    }
});
