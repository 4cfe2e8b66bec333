//! Property tests on hostile input: no timestamp pair and no JSON value makes the decoder or
//! `check_stored` panic, and whatever the decoder accepts passes `check_stored` and reads back
//! from its bus envelope unchanged.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Map, Value};
use touchline_model::limits::{END_TIME_MS, MIN_TIME_MS};
use touchline_model::*;
use uuid::Uuid;

fn ctx(received_ms: i64, user_agent: Option<String>, ip: Option<String>) -> RequestCtx {
    RequestCtx { account_id: Uuid::from_u128(42), received_at: Utc.timestamp_millis_opt(received_ms).unwrap(), ip, user_agent }
}

/// Text with the characters that matter here: NUL, other controls, DEL, multi-byte.
fn nasty_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => Just('\0'),
            1 => Just('\u{1}'),
            1 => Just('\t'),
            1 => Just('\u{7f}'),
            1 => Just('€'),
            1 => Just('😀'),
            1 => any::<char>(),
        ],
        0..max,
    )
    .prop_map(String::from_iter)
}

/// Anything that looks like a timestamp, in range or not.
fn ts_value() -> impl Strategy<Value = Value> {
    let rfc3339 = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(|n| Value::from(n.to_string())),
        // Anywhere in chrono's range (years -262 143 to 262 142): two of these far apart are what
        // overflowed the skew correction.
        3 => (-8_334_000_000_000_000i64..8_210_000_000_000_000).prop_map(Value::from),
        2 => (MIN_TIME_MS - 10_000_000_000_000..END_TIME_MS + 10_000_000_000_000).prop_map(Value::from),
        2 => rfc3339.prop_map(Value::from),
        2 => "(19|20|21)[0-9]{2}-0[1-9]-1[0-9]T1[0-9]:[0-5][0-9]:[0-5][0-9]Z".prop_map(Value::from),
    ]
}

/// Floats that serde_json reads back exactly without its `float_roundtrip` feature.
fn nice_f64() -> impl Strategy<Value = Value> {
    (any::<i32>(), 0i32..8).prop_map(|(m, e)| json!(f64::from(m) / 2f64.powi(e)))
}

/// Free JSON, sometimes deeper than the stored limit of 32 levels.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        nice_f64(),
        nasty_text(6).prop_map(Value::from),
    ];
    leaf.prop_recursive(40, 96, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(nasty_text(4), inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One value a field might be given.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => arb_json(),
        2 => ts_value(),
        1 => prop_oneof![Just("1e15"), Just("1000000000000"), Just("999999999999.9999995"), Just("0.0000005"), Just("12.5"), Just("-1")]
            .prop_map(Value::from),
        1 => prop_oneof![Just(1e15), Just(1e12), Just(999_999_999_999.0)].prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => prop_oneof![Just("USD"), Just("click"), Just("2026-11-20"), Just("1999-12-31"), Just("2100-01-01"), Just("a")].prop_map(Value::from),
        1 => nasty_text(300).prop_map(Value::from),
        1 => (0usize..3000).prop_map(|n| Value::from("u".repeat(n))),
        1 => Just(json!({"campaign": {"source": "g", "name": "n"}, "page": {"url": "https://s.example/?utm_source=x"}, "userAgent": "ua", "page_url": "dup"})),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("event_name"),
        Just("anonymous_id"),
        Just("customer_id"),
        Just("message_id"),
        Just("timestamp"),
        Just("sent_at"),
        Just("properties"),
        Just("context"),
        Just("session_id"),
        Just("started_at"),
        Just("ended_at"),
        Just("device_id"),
        Just("utm_source"),
        Just("utm_campaign"),
        Just("referrer"),
        Just("landing_page"),
        Just("user_agent"),
        Just("ip"),
        Just("kind"),
        Just("channel"),
        Just("campaign_id"),
        Just("page_url"),
        Just("detail"),
        Just("short_code"),
        Just("target_url"),
        Just("referer"),
        Just("bot"),
        Just("unique"),
        Just("value"),
        Just("currency"),
        Just("order_id"),
        Just("date"),
        Just("cost"),
        Just("impressions"),
        Just("clicks"),
        Just("source"),
        Just("traits"),
        Just("previous_id"),
        Just("userId"),
        Just("anonymousId"),
        Just("event"),
        Just("messageId"),
        Just("sentAt"),
        Just("originalTimestamp"),
        Just("name"),
        Just("category"),
        Just("groupId"),
        Just("previousId"),
    ]
    .prop_map(str::to_owned)
}

/// A valid item of each type, so that most mutated items are still accepted.
fn template() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "event", "event_name": "x", "anonymous_id": "a"})),
        Just(json!({"type": "session", "session_id": "s", "started_at": "2026-11-21T10:00:00Z", "anonymous_id": "a"})),
        Just(json!({"type": "touchpoint", "kind": "click", "anonymous_id": "a"})),
        Just(json!({"type": "link_click", "short_code": "abc"})),
        Just(json!({"type": "conversion", "kind": "purchase", "value": "1", "currency": "USD", "customer_id": "c"})),
        Just(json!({"type": "spend", "date": "2026-11-20", "campaign_id": "c", "cost": "1", "currency": "USD"})),
        Just(json!({"type": "identify", "customer_id": "c", "traits": {}})),
        Just(json!({"type": "alias", "customer_id": "c", "previous_id": "p"})),
        Just(json!({"type": "track", "event": "Order Completed", "userId": "u", "properties": {"revenue": "1"}})),
        Just(json!({"type": "page", "userId": "u", "name": "n"})),
        Just(json!({"type": "screen", "anonymousId": "a", "category": "c"})),
        Just(json!({"type": "group", "userId": "u", "groupId": "g", "traits": {}})),
    ]
}

/// A `context` mixing Segment's keys, ours, and anything else.
fn context_value() -> impl Strategy<Value = Value> {
    let text = || {
        prop_oneof![
            Just(Value::from("https://s.example/?utm_source=x&utm_medium=%00")),
            nasty_text(20).prop_map(Value::from),
            field_value()
        ]
    };
    let key = prop_oneof![
        Just("page"),
        Just("campaign"),
        Just("userAgent"),
        Just("ip"),
        Just("locale"),
        Just("library"),
        Just("truncated"),
        Just("page_url"),
        Just("page_path"),
        Just("referrer"),
        Just("user_agent"),
        Just("utm_source"),
        Just("utm_campaign"),
    ];
    let page = proptest::collection::btree_map(prop_oneof![Just("url"), Just("path"), Just("title"), Just("referrer")], text(), 0..4);
    let campaign = proptest::collection::btree_map(prop_oneof![Just("source"), Just("medium"), Just("name"), Just("term")], text(), 0..4);
    (proptest::collection::btree_map(key, text(), 0..6), proptest::option::of(page), proptest::option::of(campaign)).prop_map(
        |(m, page, campaign)| {
            let mut o: Map<String, Value> = m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(p) = page {
                o.insert("page".into(), Value::Object(p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
            }
            if let Some(c) = campaign {
                o.insert("campaign".into(), Value::Object(c.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
            }
            Value::Object(o)
        },
    )
}

fn item() -> impl Strategy<Value = Value> {
    (template(), proptest::collection::vec((field_name(), field_value()), 0..4), proptest::option::of(context_value())).prop_map(
        |(mut t, fields, context)| {
            let m = t.as_object_mut().unwrap();
            for (k, v) in fields {
                m.insert(k, v);
            }
            if let Some(c) = context {
                m.insert("context".into(), c);
            }
            t
        },
    )
}

fn body() -> impl Strategy<Value = Value> {
    prop_oneof![
        item(),
        proptest::collection::vec(item(), 0..4).prop_map(Value::Array),
        (proptest::collection::vec(item(), 0..4), ts_value()).prop_map(|(items, sent)| json!({"batch": items, "sentAt": sent})),
        arb_json(),
    ]
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        4 => Just(Expect::Any),
        1 => proptest::sample::select(EntityKind::ALL.to_vec()).prop_map(Expect::Entity),
        1 => proptest::sample::select(vec![SegmentType::Track, SegmentType::Page, SegmentType::Screen, SegmentType::Identify, SegmentType::Alias, SegmentType::Group])
            .prop_map(Expect::Segment),
    ]
}

/// Every record the decoder gives out can be stored and read back.
fn assert_storable(records: &[Record]) -> Result<(), TestCaseError> {
    for r in records {
        prop_assert!(check_stored(r).is_ok(), "{:?}: {:?}", check_stored(r), r);
        let back = Record::from_json(&r.to_json());
        prop_assert!(back.is_ok(), "{:?}: {}", back, String::from_utf8_lossy(&r.to_json()));
        let back = back.unwrap();
        prop_assert_eq!(&back, r);
        prop_assert!(check_stored(&back).is_ok());
    }
    Ok(())
}

/// Records with their ids set aside: an item without one gets a fresh random id on each decode.
fn without_ids(records: Vec<Record>) -> Vec<Record> {
    records
        .into_iter()
        .map(|mut r| {
            r.meta.record_id = serde_json::from_value(json!("id")).unwrap();
            r
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The collector decodes an item from its own bytes (fields borrowed, values decoded once);
    /// pixels and `decode_map` decode a parsed map. Both must accept the same items as the same
    /// records and refuse the rest with the same field and message.
    #[test]
    fn items_decode_alike_from_bytes_and_from_a_parsed_map(
        item in item(),
        expect in expect(),
        received_ms in MIN_TIME_MS..END_TIME_MS,
    ) {
        let c = ctx(received_ms, None, None);
        let opts = DecodeOptions::default();
        let text = serde_json::to_string(&item).unwrap();
        let raw = serde_json::value::RawValue::from_string(text).unwrap();
        let from_bytes = decode_item(3, &raw, &c, expect, None, &opts).map(without_ids);
        let Value::Object(map) = item else { unreachable!("items are objects") };
        let from_map = touchline_model::decode::decode_map(3, map, &c, expect, None, &opts).map(without_ids);
        match (from_bytes, from_map) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!((a.field, a.message), (b.field, b.message)),
            (a, b) => prop_assert!(false, "from bytes {:?}, from a map {:?}", a, b),
        }
    }

    #[test]
    fn timestamp_pairs_never_panic(
        ts in ts_value(),
        sent in ts_value(),
        batch_sent in ts_value(),
        received_ms in MIN_TIME_MS..END_TIME_MS,
    ) {
        let c = ctx(received_ms, None, None);
        let opts = DecodeOptions::default();
        let bodies = [
            json!({"type": "event", "event_name": "x", "anonymous_id": "a", "timestamp": ts, "sent_at": sent}),
            json!({"type": "track", "event": "x", "userId": "u", "timestamp": ts, "sentAt": sent}),
            json!({"type": "track", "event": "x", "userId": "u", "originalTimestamp": ts, "sentAt": sent}),
            json!({"batch": [{"type": "track", "event": "x", "userId": "u", "timestamp": ts}], "sentAt": batch_sent}),
            json!({"type": "session", "session_id": "s", "anonymous_id": "a", "started_at": ts, "ended_at": sent}),
        ];
        for body in bodies {
            let bytes = serde_json::to_vec(&body).unwrap();
            let Ok(parsed) = parse_body(&bytes, &opts) else { continue };
            let d = decode_items(&parsed, &c, Expect::Any, &opts);
            prop_assert_eq!(d.accepted_items + d.rejected.len(), parsed.items.len());
            for r in &d.records {
                prop_assert!(time_in_window(r.meta.timestamp));
                prop_assert!(r.meta.timestamp <= c.received_at + Duration::hours(23));
            }
            assert_storable(&d.records)?;
        }
        let ts_text = match &ts { Value::String(s) => s.clone(), other => other.to_string() };
        let query = format!("k=x&e=v&aid=a&ts={}", form_urlencoded::byte_serialize(ts_text.as_bytes()).collect::<String>());
        let (_, result) = decode_pixel(&query, None, &c, &opts);
        if let Ok(records) = result {
            assert_storable(&records)?;
        }
    }

    #[test]
    fn arbitrary_json_is_refused_or_storable(
        body in body(),
        expect in expect(),
        user_agent in proptest::option::of(nasty_text(1500)),
        ip in proptest::option::of("[0-9a-f:.]{0,80}"),
        referer in proptest::option::of(nasty_text(100)),
    ) {
        let c = ctx(1_763_726_400_000, user_agent, ip);
        let opts = DecodeOptions::default();
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(parsed) = parse_body(&bytes, &opts) {
            let d = decode_items(&parsed, &c, expect, &opts);
            prop_assert_eq!(d.accepted_items + d.rejected.len(), parsed.items.len());
            for e in &d.rejected {
                prop_assert!(!e.message.is_empty());
            }
            assert_storable(&d.records)?;
        }
        // The same item as a pixel query string.
        if let Value::Object(m) = &body {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(m.iter().map(|(k, v)| (k.clone(), match v { Value::String(s) => s.clone(), other => other.to_string() })))
                .finish();
            let (_, result) = decode_pixel(&query, referer.as_deref(), &c, &opts);
            if let Ok(records) = result {
                assert_storable(&records)?;
            }
        }
    }

    #[test]
    fn bus_records_from_third_parties_never_panic_the_check(
        patch in proptest::collection::vec((field_name(), field_value()), 0..6),
        ty in proptest::sample::select(EntityKind::ALL.to_vec()),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut v: Map<String, Value> = json!({"v": 1, "record_id": "r", "account_id": Uuid::from_u128(1),
                                               "timestamp": "2026-11-21T11:00:00Z", "received_at": "2026-11-21T12:00:00Z",
                                               "customer_id": "c"}).as_object().unwrap().clone();
        v.insert("type".into(), Value::from(ty.as_str()));
        for (k, x) in patch {
            v.insert(k, x);
        }
        if let Ok(r) = Record::from_json(&serde_json::to_vec(&v).unwrap()) {
            let _ = check_stored(&r);
        }
        if let Ok(r) = Record::from_json(&bytes) {
            let _ = check_stored(&r);
        }
    }
}

#[test]
fn the_generators_reach_accepted_records() {
    // Guards the properties above against a generator that only ever produces rejections: the
    // templates themselves decode.
    let c = ctx(1_763_726_400_000, Some("ua".into()), Some("203.0.113.1".into()));
    let opts = DecodeOptions::default();
    let templates = template();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut accepted = 0;
    for _ in 0..64 {
        let t = templates.new_tree(&mut runner).unwrap().current();
        let bytes = serde_json::to_vec(&t).unwrap();
        let d = decode_items(&parse_body(&bytes, &opts).unwrap(), &c, Expect::Any, &opts);
        accepted += d.accepted_items;
    }
    assert_eq!(accepted, 64);
}
