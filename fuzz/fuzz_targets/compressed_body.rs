//! The collector's `Content-Encoding` handling of request bodies: gzip (by header or by magic
//! bytes, several members allowed) and deflate (zlib), inflated under the body limit, then the
//! JSON decoder on what comes out.
//!
//! The target calls the collector's own `decode_content`, which `read_body` runs on every body
//! once it is read.
//!
//! The first byte: bits 0x03 pick the `Content-Encoding` (0 gzip, 1 deflate, 2 none: gzip only
//! if the magic bytes say so, 3 identity), bits 0x0c the limit (64 B, 1 KiB, 64 KiB, 5 MiB, the
//! default `max_body_bytes`). The rest is the body as received.
//!
//! Checks: no panic; never more than `limit` bytes out, whatever the input claims (bombs stop at
//! limit + 1 bytes read); the output of a body that is not compressed is the body itself;
//! compressing the rest (one gzip member, two members, zlib) and inflating it gives the rest back
//! exactly when it fits the limit and `TooLarge` when not; whatever inflates goes through
//! `parse_body` + `decode_items` like any body.
#![no_main]

mod common;

use std::io::Write;

use bytes::Bytes;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use touchline_collector::{decode_content, ApiError};
use touchline_model::{decode_items, parse_body, Expect};

const LIMITS: [usize; 4] = [64, 1024, 64 * 1024, 5 * 1024 * 1024];

/// The collector's own decoding of a body by its `Content-Encoding`.
fn inflate_like_collector(encoding: Option<&str>, raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    decode_content(encoding, Bytes::copy_from_slice(raw), limit).map(|b| b.to_vec())
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut all = Vec::new();
    for p in parts {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(p).expect("in memory");
        all.extend(e.finish().expect("in memory"));
    }
    all
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("in memory");
    e.finish().expect("in memory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, raw)) = data.split_first() else { return };
    let encoding = [Some("gzip"), Some("deflate"), None, Some("identity")][usize::from(sel & 3)];
    let limit = LIMITS[usize::from((sel >> 2) & 3)];

    // The body as received.
    let got = inflate_like_collector(encoding, raw, limit);
    match &got {
        Ok(out) => {
            let plain = matches!(encoding, None | Some("identity")) && !raw.starts_with(&[0x1f, 0x8b]);
            if plain {
                // Not compressed: the collector's body limit applies before (to_bytes), not here.
                assert_eq!(out, raw);
            } else {
                assert!(out.len() <= limit, "{} bytes out over the limit of {limit}", out.len());
            }
            let opts = common::opts(false);
            if let Ok(parsed) = parse_body(out, &opts) {
                let d = decode_items(&parsed, &common::ctx(), Expect::Any, &opts);
                common::check_decoded(&parsed, &d, "inflated body");
            }
        }
        Err(ApiError::UnsupportedMediaType(m)) => unreachable!("only supported encodings are tried: {m}"),
        Err(_) => {}
    }

    // The rest as a body that a client compressed: it must come back exactly.
    let fits = raw.len() <= limit;
    let expect = |r: Result<Vec<u8>, ApiError>, how: &str| match r {
        Ok(out) => {
            assert!(fits, "{how}: {} bytes inflated with a limit of {limit}", raw.len());
            assert_eq!(out, raw, "{how}: the body changed");
        }
        Err(ApiError::TooLarge(_)) => assert!(!fits, "{how}: {} bytes refused as too large with a limit of {limit}", raw.len()),
        Err(e) => panic!("{how}: a well-formed body failed: {e:?}"),
    };
    expect(inflate_like_collector(Some("gzip"), &gzip(&[raw]), limit), "gzip");
    expect(inflate_like_collector(None, &gzip(&[raw]), limit), "gzip by magic bytes");
    let half = raw.len() / 2;
    expect(inflate_like_collector(Some("x-gzip"), &gzip(&[&raw[..half], &raw[half..]]), limit), "two gzip members");
    expect(inflate_like_collector(Some("deflate"), &zlib(raw), limit), "deflate");
});
