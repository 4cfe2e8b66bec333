//! The tracking pixel (`GET /p.gif?…`): `touchline_model::decode_pixel(query, referer, ctx,
//! opts)` with a fixed request context.
//!
//! The first byte's bit 0x80 picks tight limits. The rest is split at its first NUL byte: the
//! query string before it, the `Referer` header after it (no NUL: no `Referer`). Both are
//! taken as UTF-8 with invalid bytes replaced, as the collector only ever has text there.
//!
//! Checks: no panic; at most one record per request (an event, a touchpoint or a conversion),
//! each passing `check_stored` and round-tripping through its bus JSON; a query over the record
//! limit is refused unread (no key returned).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use touchline_model::decode_pixel;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let opts = common::opts(sel & 0x80 != 0);
    let (query, referer) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (String::from_utf8_lossy(&rest[..i]), Some(String::from_utf8_lossy(&rest[i + 1..]))),
        None => (String::from_utf8_lossy(rest), None),
    };
    let (key, result) = decode_pixel(&query, referer.as_deref(), &common::ctx(), &opts);
    if query.len() > opts.max_record_bytes {
        assert!(key.is_none(), "an oversized query must be refused unread");
        assert!(result.is_err());
    }
    if let Ok(records) = result {
        assert!(records.len() <= 1, "{} records from one pixel", records.len());
        for r in &records {
            common::check_record(r, "pixel");
        }
    }
});
