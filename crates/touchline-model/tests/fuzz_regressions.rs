//! Inputs the decoder fuzz targets (fuzz/, issue 17) found, fed through the same path as the
//! target: `parse_body` + `decode_items`, then the checks a consumer makes on what it reads back
//! from the bus (`to_json` → `Record::from_json` gives the same record, which passes
//! `check_stored`).

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use touchline_model::*;
use uuid::Uuid;

/// The fuzz targets' fixed context (fuzz/fuzz_targets/common/mod.rs).
fn ctx() -> RequestCtx {
    RequestCtx {
        account_id: Uuid::from_u128(7),
        received_at: DateTime::<Utc>::from_timestamp_millis(1_795_262_400_000).unwrap(),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36".into()),
    }
}

fn records_round_trip(body: &[u8], expect: Expect) {
    let opts = DecodeOptions::default();
    let parsed = parse_body(body, &opts).unwrap();
    let d = decode_items(&parsed, &ctx(), expect, &opts);
    assert!(!d.records.is_empty(), "{:?}", d.rejected);
    for r in &d.records {
        check_stored(r).unwrap();
        let json = r.to_json();
        let back = Record::from_json(&json).unwrap();
        assert_eq!(&back, r, "the record changed through its bus JSON: {}", String::from_utf8_lossy(&json));
        check_stored(&back).unwrap();
    }
}

/// fuzz/regressions/beacon_body/float_property_round_trip (found by `beacon_body`, minimised):
/// a Segment page whose `context` holds the number 66666666600000000002777777000045. It is
/// stored as the f64 6.66666666e31 and written to the bus as `6.66666666e+31`; serde_json
/// without its `float_roundtrip` feature reads that text back one ULP lower
/// (6.666666659999999e31), so the record the aggregator reads is not the one the collector wrote.
///
/// touchline-model does not ask for `float_roundtrip`; the shipped binary has it only because
/// touchline-aggregator turns it on and Cargo unifies features. This test passes in a workspace
/// build (`cargo test --workspace`) and fails with `cargo test -p touchline-model` until
/// touchline-model's Cargo.toml asks for `serde_json/float_roundtrip` itself.
#[test]
fn float_in_free_json_round_trips_through_the_bus_json() {
    let body = include_bytes!("../../../fuzz/regressions/beacon_body/float_property_round_trip");
    records_round_trip(body, Expect::Any);
}
