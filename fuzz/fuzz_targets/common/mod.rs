//! What the decoder targets share: the fixed request context, the options, and the checks on
//! everything a decoder accepts.
#![allow(dead_code)] // each target uses a part

use chrono::{DateTime, Utc};
use touchline_model::{check_stored, DecodeOptions, Decoded, ParsedBody, Record, RequestCtx};
use uuid::Uuid;

/// A fixed request context: the account comes from the key, never the body; the server time is
/// 2026-11-21T12:00:00Z.
pub fn ctx() -> RequestCtx {
    RequestCtx {
        account_id: Uuid::from_u128(7),
        received_at: DateTime::<Utc>::from_timestamp_millis(1_795_262_400_000).expect("fixed time"),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36".into()),
    }
}

/// The defaults, or (`small`) tight limits so that 4 KiB inputs reach the size and count
/// rejections too.
pub fn opts(small: bool) -> DecodeOptions {
    if small {
        DecodeOptions { max_record_bytes: 256, max_batch_records: 8, max_request_bytes: 1024, ..DecodeOptions::default() }
    } else {
        DecodeOptions::default()
    }
}

/// Checks one record a decoder accepted: the bus JSON reads back as the same record, and both
/// pass `check_stored` (what a consumer checks on records read from the bus), and the values the
/// collector derives from it (topic, partition key) can be computed.
pub fn check_record(r: &Record, what: &str) {
    if let Err(e) = check_stored(r) {
        panic!("{what}: an accepted record fails check_stored: {e}\nrecord: {r:?}");
    }
    let json = r.to_json();
    assert!(!json.is_empty(), "{what}: to_json gave nothing for {r:?}");
    let back = match Record::from_json(&json) {
        Ok(b) => b,
        Err(e) => panic!("{what}: an accepted record does not read back from its bus JSON: {e}\njson: {}", String::from_utf8_lossy(&json)),
    };
    assert_eq!(&back, r, "{what}: the record changed through its bus JSON: {}", String::from_utf8_lossy(&json));
    if let Err(e) = check_stored(&back) {
        panic!("{what}: a record read back from the bus fails check_stored: {e}\njson: {}", String::from_utf8_lossy(&json));
    }
    assert_eq!(back.to_json(), json, "{what}: the bus JSON is not stable");
    let _ = r.topic();
    let key = r.partition_key();
    assert!(key.starts_with("00000000-0000-0000-0000-000000000007:"), "{what}: partition key {key:?} is not the account's");
    assert_eq!(r.meta.account_id, Uuid::from_u128(7), "{what}: the account must come from the context");
}

/// Checks the outcome of `decode_items` on a parsed body.
pub fn check_decoded(parsed: &ParsedBody<'_>, d: &Decoded, what: &str) {
    let items = parsed.items.len();
    assert!(d.accepted_items <= items, "{what}: {} accepted of {items} items", d.accepted_items);
    assert_eq!(d.accepted_items + d.rejected.len(), items, "{what}: every item is accepted or rejected once");
    // One item gives at most two records (a Segment `Order Completed`: an event and a conversion).
    assert!(d.records.len() <= 2 * d.accepted_items, "{what}: {} records from {} items", d.records.len(), d.accepted_items);
    for e in &d.rejected {
        assert!(e.index < items, "{what}: rejection names item {} of {items}", e.index);
        assert!(e.code == "invalid" || e.code == "too_large", "{what}: unknown rejection code {}", e.code);
        // The error is shown to the client: it must format.
        let _ = e.to_string();
    }
    for r in &d.records {
        check_record(r, what);
    }
}
