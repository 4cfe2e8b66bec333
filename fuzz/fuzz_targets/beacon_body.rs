//! `navigator.sendBeacon` bodies (`POST /v1/beacon`, and analytics.js posting `text/plain` to
//! `/v1/p`, `/v1/t`, …): the whole input is the body, any bytes (a beacon's body is not checked
//! by the browser, so it may not even be UTF-8). Decoded as the collector does: `parse_body`
//! (which also finds the `writeKey` in the body), then `decode_items` with `Expect::Any`.
//!
//! Checks: no panic; a body that is not UTF-8 is refused as malformed; a body of only
//! whitespace is refused as empty; accepted records pass `check_stored` and round-trip through
//! their bus JSON.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use touchline_model::{decode_items, parse_body, BodyError, Expect};

fuzz_target!(|data: &[u8]| {
    let opts = common::opts(false);
    let parsed = parse_body(data, &opts);
    match std::str::from_utf8(data) {
        Err(_) => assert!(matches!(parsed, Err(BodyError::Malformed(_))), "a non-UTF-8 body gave {parsed:?}"),
        Ok(t) if t.trim_start().is_empty() => assert!(matches!(parsed, Err(BodyError::Empty)), "a blank body gave {parsed:?}"),
        Ok(_) => {}
    }
    let Ok(parsed) = parsed else { return };
    let d = decode_items(&parsed, &common::ctx(), Expect::Any, &opts);
    common::check_decoded(&parsed, &d, "beacon");
});
