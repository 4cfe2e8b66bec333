// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use serde_json::json;
use touchline_model::*;
use uuid::Uuid;

fn ctx() -> RequestCtx {
    RequestCtx {
        account_id: Uuid::from_u128(7),
        received_at: "2026-11-21T12:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("curl/8".into()),
    }
}

fn decode(body: serde_json::Value, expect: Expect) -> Decoded {
    let bytes = serde_json::to_vec(&body).unwrap();
    let opts = DecodeOptions::default();
    let parsed = parse_body(&bytes, &opts).unwrap();
    decode_items(&parsed, &ctx(), expect, &opts)
}

#[test]
fn native_batch_of_every_entity() {
    let d = decode(
        json!({"batch": [
            {"type": "event", "event_name": "view_item", "anonymous_id": "a1", "properties": {"sku": "X"},
             "context": {"page_url": "https://shop.example/p?utm_source=zalo&utm_medium=oa", "library": {"name": "x"}}},
            {"type": "session", "session_id": "s1", "started_at": "2026-11-21T10:00:00Z", "anonymous_id": "a1"},
            {"type": "touchpoint", "kind": "Impression", "campaign_id": 17, "anonymous_id": "a1"},
            {"type": "link_click", "short_code": "abc", "device_id": "d1"},
            {"type": "conversion", "kind": "purchase", "value": 19.99, "currency": "vnd", "order_id": "o-1", "customer_id": "c1"},
            {"type": "spend", "date": "2026-11-20", "campaign_id": "17", "cost": "120.50", "currency": "USD", "source": "google_ads"},
            {"type": "identify", "customer_id": "c1", "anonymous_id": "a1", "traits": {"email": "x@y.z"}},
            {"type": "alias", "customer_id": "c1", "previous_id": "old-1"}
        ]}),
        Expect::Any,
    );
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    let kinds: Vec<_> = d.records.iter().map(Record::kind).collect();
    assert_eq!(kinds, EntityKind::ALL.to_vec());
    let Body::Event(e) = &d.records[0].body else { panic!() };
    assert_eq!(e.context.utm_source.as_deref(), Some("zalo"));
    assert_eq!(e.context.ip.as_deref(), Some("203.0.113.9"), "server ip filled in");
    assert!(e.context.extra.contains_key("library"));
    let Body::Touchpoint(t) = &d.records[2].body else { panic!() };
    assert_eq!(t.kind.as_str(), "impression");
    assert!(t.is_view());
    assert_eq!(t.campaign_id.as_deref(), Some("17"), "integer ids become text");
    let Body::Conversion(c) = &d.records[4].body else { panic!() };
    assert_eq!(c.value.unwrap().to_string(), "19.99");
    assert_eq!(c.currency.unwrap().as_str(), "VND");
    for r in &d.records {
        assert_eq!(r.meta.account_id, Uuid::from_u128(7));
        assert!(r.partition_key().starts_with("00000000-0000-0000-0000-000000000007:"));
    }
    assert_eq!(d.records[4].partition_key(), "00000000-0000-0000-0000-000000000007:c1");
    assert_eq!(d.records[6].identity(), "a1", "identify goes with the anonymous history");
    assert_eq!(d.records[3].identity(), "d1");
    assert_eq!(d.records[5].identity(), "campaign:17");
}

#[test]
fn account_id_in_body_is_ignored() {
    let d = decode(
        json!({"type": "event", "event_name": "x", "anonymous_id": "a", "account_id": "00000000-0000-0000-0000-000000000099"}),
        Expect::Any,
    );
    assert_eq!(d.records[0].meta.account_id, Uuid::from_u128(7));
}

#[test]
fn errors_name_index_and_field() {
    let d = decode(
        json!([
            {"type": "event", "event_name": "ok", "anonymous_id": "a"},
            {"type": "event", "event_name": "x", "anonymous_id": "a", "campain_id": "1"},
            {"type": "conversion", "kind": "purchase", "value": "lots", "currency": "USD", "customer_id": "c"},
            {"type": "conversion", "kind": "purchase", "value": 5, "customer_id": "c"},
            {"type": "event", "event_name": "x"},
            {"type": "nope"},
            {"event_name": "x"},
            {"type": "session", "session_id": "s", "started_at": "yesterday", "anonymous_id": "a"},
            {"type": "event", "event_name": "x", "anonymous_id": "a", "timestamp": 12.5},
            {"type": "event", "event_name": "x", "anonymous_id": "a", "properties": [1]},
            "not an object"
        ]),
        Expect::Any,
    );
    assert_eq!(d.records.len(), 1);
    let msgs: Vec<String> = d.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(d.rejected.iter().map(|e| e.index).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(msgs[0].contains("unknown field `campain_id`"), "{}", msgs[0]);
    assert!(msgs[1].starts_with("record 2: field `value`"), "{}", msgs[1]);
    assert!(msgs[2].contains("field `currency`: required when `value` is set"), "{}", msgs[2]);
    assert!(msgs[3].contains("`anonymous_id` or `customer_id`"), "{}", msgs[3]);
    assert!(msgs[4].contains("unknown type `nope`"), "{}", msgs[4]);
    assert!(msgs[5].contains("field `type`: required"), "{}", msgs[5]);
    assert!(msgs[6].contains("field `started_at`") && msgs[6].contains("RFC 3339"), "{}", msgs[6]);
    assert!(msgs[7].contains("field `timestamp`"), "{}", msgs[7]);
    assert!(msgs[8].contains("field `properties`"), "{}", msgs[8]);
    assert!(msgs[9].contains("expected a JSON object"), "{}", msgs[9]);
}

#[test]
fn entity_endpoint_checks_type() {
    let d = decode(json!({"type": "conversion", "kind": "lead", "customer_id": "c"}), Expect::Entity(EntityKind::Event));
    assert!(d.rejected[0].to_string().contains("takes `event` records, not `conversion`"));
    let d = decode(json!({"kind": "lead", "customer_id": "c"}), Expect::Entity(EntityKind::Conversion));
    assert_eq!(d.records.len(), 1);
}

#[test]
fn clock_skew_is_corrected_with_sent_at() {
    // Client clock is 1 hour fast: it says the event happened at 12:59:50 and sent at 13:00:00;
    // the server received it at 12:00:00, so the event happened at 11:59:50.
    let d = decode(
        json!({"type": "event", "event_name": "x", "anonymous_id": "a",
               "timestamp": "2026-11-21T12:59:50Z", "sent_at": "2026-11-21T13:00:00Z"}),
        Expect::Any,
    );
    assert_eq!(d.records[0].meta.timestamp.to_rfc3339(), "2026-11-21T11:59:50+00:00");
    // Without sent_at, a timestamp days in the future is replaced by the server time.
    let d = decode(json!({"type": "event", "event_name": "x", "anonymous_id": "a", "timestamp": "2027-01-01T00:00:00Z"}), Expect::Any);
    assert_eq!(d.records[0].meta.timestamp, ctx().received_at);
    // Missing timestamp: server time.
    let d = decode(json!({"type": "event", "event_name": "x", "anonymous_id": "a"}), Expect::Any);
    assert_eq!(d.records[0].meta.timestamp, ctx().received_at);
}

#[test]
fn record_ids_kept_or_generated() {
    let d = decode(
        json!([{"type": "event", "event_name": "x", "anonymous_id": "a", "message_id": "m-1"},
               {"type": "event", "event_name": "x", "anonymous_id": "a"},
               {"type": "event", "event_name": "x", "anonymous_id": "a"}]),
        Expect::Any,
    );
    assert_eq!(d.records[0].meta.record_id.as_str(), "m-1");
    assert_ne!(d.records[1].meta.record_id, d.records[2].meta.record_id);
    assert!(Uuid::parse_str(d.records[1].meta.record_id.as_str()).is_ok());
}

/// Payloads as analytics.js / analytics-node send them.
#[test]
fn segment_batch_as_sdks_send_it() {
    let d = decode(
        json!({
            "batch": [
                {"type": "page", "messageId": "ajs-1", "anonymousId": "anon-1", "name": "Home",
                 "properties": {"url": "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=bf", "path": "/", "title": "Shop"},
                 "context": {"userAgent": "Mozilla/5.0", "locale": "vi-VN", "library": {"name": "analytics.js", "version": "next-1.64.0"},
                             "page": {"url": "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=bf", "referrer": "https://google.com/"}},
                 "timestamp": "2026-11-21T11:00:00.000Z", "integrations": {}},
                {"type": "track", "messageId": "ajs-2", "anonymousId": "anon-1", "userId": "u-9", "event": "Order Completed",
                 "properties": {"order_id": "50314b8e", "revenue": 25.00, "currency": "EUR"},
                 "context": {"campaign": {"name": "bf", "source": "google", "medium": "cpc"}},
                 "originalTimestamp": "2026-11-21T11:05:00.000Z"},
                {"type": "identify", "messageId": "ajs-3", "anonymousId": "anon-1", "userId": "u-9", "traits": {"email": "a@b.c"}},
                {"type": "alias", "previousId": "anon-1", "userId": "u-9"},
                {"type": "screen", "userId": "u-9", "name": "Cart"},
                {"type": "group", "userId": "u-9", "groupId": "g-1", "traits": {"plan": "pro"}}
            ],
            "sentAt": "2026-11-21T11:10:00.000Z",
            "writeKey": "wk_123"
        }),
        Expect::Any,
    );
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    let kinds: Vec<_> = d.records.iter().map(Record::kind).collect();
    use EntityKind::*;
    assert_eq!(kinds, vec![Event, Event, Conversion, Identify, Alias, Event, Event]);
    let Body::Event(page) = &d.records[0].body else { panic!() };
    assert_eq!(page.event_name, "page_view");
    assert_eq!(page.context.utm_campaign.as_deref(), Some("bf"));
    assert_eq!(page.context.referrer.as_deref(), Some("https://google.com/"));
    assert_eq!(page.properties["name"], "Home");
    // sentAt (batch level) 11:10, received 12:00: timestamps shift by +50 minutes.
    assert_eq!(d.records[0].meta.timestamp.to_rfc3339(), "2026-11-21T11:50:00+00:00");
    assert_eq!(d.records[0].meta.record_id.as_str(), "ajs-1");
    let Body::Conversion(c) = &d.records[2].body else { panic!() };
    assert_eq!(c.kind.as_str(), "purchase");
    assert_eq!(c.value.unwrap().normalize().to_string(), "25");
    assert_eq!(c.currency.unwrap().as_str(), "EUR");
    assert_eq!(c.order_id.as_deref(), Some("50314b8e"));
    assert_eq!(d.records[2].meta.customer_id.as_deref(), Some("u-9"));
    assert_ne!(d.records[2].meta.record_id, d.records[1].meta.record_id);
    let Body::Alias(a) = &d.records[4].body else { panic!() };
    assert_eq!(a.previous_id.as_str(), "anon-1");
    let Body::Event(g) = &d.records[6].body else { panic!() };
    assert_eq!(g.properties["group_id"], "g-1");
}

#[test]
fn segment_route_requires_its_fields() {
    let d = decode(json!({"userId": "u", "properties": {}}), Expect::Segment(SegmentType::Track));
    assert!(d.rejected[0].to_string().contains("field `event`: required"));
    let d = decode(json!({"anonymousId": "a", "event": "x", "context": {"campaign": "bf"}}), Expect::Segment(SegmentType::Track));
    assert!(d.rejected[0].to_string().contains("field `context.campaign`"));
    let d = decode(json!({"anonymousId": "a", "traits": {}}), Expect::Segment(SegmentType::Identify));
    assert!(d.rejected[0].to_string().contains("`customer_id`"));
}

#[test]
fn body_shapes_and_limits() {
    let opts = DecodeOptions { max_batch_records: 3, max_record_bytes: 100, ..DecodeOptions::default() };
    assert!(matches!(parse_body(b"  ", &opts), Err(BodyError::Empty)));
    let e = parse_body(b"{\"batch\": [1,", &opts).unwrap_err();
    assert!(matches!(e, BodyError::Malformed(_)), "{e:?}");
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(matches!(parse_body(b"[{},{},{},{}]", &opts), Err(BodyError::TooManyRecords { count: 4, limit: 3 })));
    assert!(matches!(parse_body(b"{\"batch\": 5}", &opts), Err(BodyError::Shape(_))));
    assert!(parse_body(b"42", &opts).is_err());
    let big = format!("{{\"type\":\"event\",\"event_name\":\"{}\",\"anonymous_id\":\"a\"}}", "x".repeat(200));
    let parsed = parse_body(big.as_bytes(), &opts).unwrap();
    let d = decode_items(&parsed, &ctx(), Expect::Any, &opts);
    assert_eq!(d.rejected[0].code, "too_large");
    // The write key may sit in the first item (analytics.js beacon).
    let p = parse_body(br#"[{"type":"page","writeKey":"k1","anonymousId":"a"}]"#, &DecodeOptions::default()).unwrap();
    assert_eq!(p.write_key.as_deref(), Some("k1"));
}

#[test]
fn pixel_query_strings() {
    let opts = DecodeOptions::default();
    let (key, recs) =
        decode_pixel("k=wk_1&e=page_view&aid=anon-7&url=https%3A%2F%2Fs.example%2F%3Futm_source%3Dfb&plan=pro&cb=123", None, &ctx(), &opts);
    assert_eq!(key.as_deref(), Some("wk_1"));
    let recs = recs.unwrap();
    let Body::Event(e) = &recs[0].body else { panic!() };
    assert_eq!(e.event_name, "page_view");
    assert_eq!(e.context.utm_source.as_deref(), Some("fb"));
    assert_eq!(e.properties["plan"], "pro");
    assert!(!e.properties.contains_key("cb"));

    let (_, recs) =
        decode_pixel("k=x&t=touchpoint&kind=impression&cid=c9&adid=ad1&aid=a&placement=top", Some("https://news.example/a"), &ctx(), &opts);
    let recs = recs.unwrap();
    let Body::Touchpoint(t) = &recs[0].body else { panic!() };
    assert_eq!(t.campaign_id.as_deref(), Some("c9"));
    assert_eq!(t.page_url.as_deref(), Some("https://news.example/a"));
    assert_eq!(t.detail["placement"], "top");

    let (_, recs) = decode_pixel("k=x&t=conversion&kind=lead&value=12.5&currency=usd&uid=c1&ts=1763726400000", None, &ctx(), &opts);
    let r = &recs.unwrap()[0];
    assert_eq!(r.meta.timestamp.timestamp_millis(), 1_763_726_400_000);

    let (_, recs) = decode_pixel("k=x&t=spend", None, &ctx(), &opts);
    assert!(recs.unwrap_err().to_string().contains("field `t`"));
    let (_, recs) = decode_pixel("k=x&e=view", None, &ctx(), &opts);
    assert!(recs.unwrap_err().to_string().contains("anonymous_id"));
}

#[test]
fn wire_envelope_round_trips_and_is_versioned() {
    let d = decode(json!({"type": "conversion", "kind": "purchase", "value": "10.50", "currency": "USD", "customer_id": "c"}), Expect::Any);
    let r = &d.records[0];
    let bytes = r.to_json();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["type"], "conversion");
    assert_eq!(v["value"], "10.50");
    assert_eq!(v["account_id"], "00000000-0000-0000-0000-000000000007");
    assert_eq!(&Record::from_json(&bytes).unwrap(), r);
    let mut v2 = v.clone();
    v2["v"] = json!(2);
    assert!(Record::from_json(&serde_json::to_vec(&v2).unwrap()).unwrap_err().contains("version 2"));
}
