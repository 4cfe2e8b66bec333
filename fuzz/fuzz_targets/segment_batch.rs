//! Segment-spec ingestion (`/v1/track`, `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/alias`,
//! `/v1/group`, and `/v1/batch` with Segment messages): `parse_body` then `decode_items` with
//! `Expect::Segment(..)` or `Expect::Any`, with a fixed request context.
//!
//! The first byte: `% 7` picks `Expect::Segment` of track, page, screen, identify, alias, group
//! (0..=5) or `Expect::Any` (6); bit 0x80 picks tight limits; bit 0x40 wraps the rest as the
//! items of a batch, `{"batch":[REST],"sentAt":S}`, with S chosen by bits 0x38 from a few
//! realistic and extreme values (so the skew correction between `sentAt` and each item's
//! `timestamp` always runs). Without 0x40 the rest is the whole body.
//!
//! Checks: as `native_json` (no panic; accepted records pass `check_stored` and round-trip
//! through their bus JSON).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use touchline_model::{decode_items, parse_body, Expect, SegmentType};

const TYPES: [SegmentType; 6] =
    [SegmentType::Track, SegmentType::Page, SegmentType::Screen, SegmentType::Identify, SegmentType::Alias, SegmentType::Group];

/// Batch-level `sentAt` values: as SDKs send it, at the window's edges, past them, as epoch
/// milliseconds, extreme integers, null.
const SENT_AT: [&str; 8] = [
    "\"2026-11-21T11:10:00.000Z\"",
    "\"2000-01-01T00:00:00Z\"",
    "\"2099-12-31T23:59:59.999Z\"",
    "\"1970-01-01T00:00:00Z\"",
    "1795262400000",
    "-8200000000000000",
    "9223372036854775807",
    "null",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let expect = match sel % 7 {
        6 => Expect::Any,
        n => Expect::Segment(TYPES[usize::from(n)]),
    };
    let opts = common::opts(sel & 0x80 != 0);
    let body: Vec<u8> = if sel & 0x40 != 0 {
        let mut b = b"{\"batch\":[".to_vec();
        b.extend_from_slice(rest);
        b.extend_from_slice(b"],\"sentAt\":");
        b.extend_from_slice(SENT_AT[usize::from((sel >> 3) & 7)].as_bytes());
        b.push(b'}');
        b
    } else {
        rest.to_vec()
    };
    let Ok(parsed) = parse_body(&body, &opts) else { return };
    let d = decode_items(&parsed, &common::ctx(), expect, &opts);
    common::check_decoded(&parsed, &d, &format!("{expect:?}"));
});
