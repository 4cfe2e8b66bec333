//! Native JSON ingestion (`/v1/batch`, `/v1/events`, `/v1/conversions`, …):
//! `touchline_model::parse_body` then `decode_items` with a fixed request context.
//!
//! The first byte picks the endpoint: `% 9` = 0 is `Expect::Any` (`/v1/batch`), 1..=8 is
//! `Expect::Entity` of `EntityKind::ALL[n - 1]`; its bit 0x80 picks tight limits (see
//! `common::opts`). The rest is the body.
//!
//! Checks: no panic; every item is accepted or rejected exactly once; every accepted record
//! passes `check_stored`, reads back from its bus JSON (`to_json` → `Record::from_json`) as the
//! same record, which passes `check_stored` too.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use touchline_model::{decode_items, parse_body, EntityKind, Expect};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let expect = match sel % 9 {
        0 => Expect::Any,
        n => Expect::Entity(EntityKind::ALL[usize::from(n) - 1]),
    };
    let opts = common::opts(sel & 0x80 != 0);
    let Ok(parsed) = parse_body(body, &opts) else { return };
    let d = decode_items(&parsed, &common::ctx(), expect, &opts);
    common::check_decoded(&parsed, &d, &format!("{expect:?}"));
});
