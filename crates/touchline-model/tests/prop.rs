//! Property tests: decoding never panics; every entity round-trips through the bus envelope and
//! through native JSON.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use touchline_model::*;
use uuid::Uuid;

fn ctx(received_at: DateTime<Utc>) -> RequestCtx {
    RequestCtx { account_id: Uuid::from_u128(42), received_at, ip: None, user_agent: None }
}

fn id() -> impl Strategy<Value = Id> {
    "[a-zA-Z0-9_:.-][a-zA-Z0-9 _:.@-]{0,30}[a-zA-Z0-9]".prop_map(|s| Id::new(s).unwrap())
}

fn opt<T: std::fmt::Debug + Clone + 'static>(s: impl Strategy<Value = T> + 'static) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

fn text() -> impl Strategy<Value = String> {
    // Not blank: the decoder rightly rejects a name of spaces only ("must not be empty").
    "[a-zA-Z0-9/:._-][a-zA-Z0-9 /:._-]{0,23}"
}

fn kind() -> impl Strategy<Value = Kind> {
    "[a-z][a-z0-9_]{0,15}".prop_map(|s| Kind::new(&s).unwrap())
}

fn currency() -> impl Strategy<Value = Currency> {
    "[A-Z]{3}".prop_map(|s| Currency::new(&s).unwrap())
}

fn money() -> impl Strategy<Value = Decimal> {
    (0i64..10_000_000, 0u32..4).prop_map(|(m, s)| Decimal::new(m, s))
}

fn ts() -> impl Strategy<Value = DateTime<Utc>> {
    (1_600_000_000_000i64..1_800_000_000_000).prop_map(|ms| Utc.timestamp_millis_opt(ms).unwrap())
}

fn json_map() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(
        "[a-z]{1,8}",
        prop_oneof![any::<i32>().prop_map(Value::from), text().prop_map(Value::from), any::<bool>().prop_map(Value::from)],
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn context() -> impl Strategy<Value = Context> {
    (
        opt("https://[a-z]{1,8}\\.example/[a-z]{0,8}"),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(text()),
    )
        .prop_map(|(page_url, referrer, user_agent, ip, utm_source, utm_medium, utm_campaign, locale)| Context {
            page_url,
            referrer,
            user_agent,
            ip,
            utm_source,
            utm_medium,
            utm_campaign,
            locale,
            ..Context::default()
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (text(), opt(id()), opt(id()), opt(id()), json_map(), context()).prop_map(
            |(event_name, session_id, campaign_id, advertisement_id, properties, context)| Body::Event(Event {
                event_name,
                session_id,
                campaign_id,
                advertisement_id,
                properties,
                context
            })
        ),
        (id(), ts(), opt(0i64..86_400_000), opt(id()), opt(text()), opt(text()), opt(text()), opt(id())).prop_map(
            |(session_id, started_at, dur, device_id, utm_source, referrer, landing_page, campaign_id)| {
                Body::Session(Session {
                    session_id,
                    started_at,
                    ended_at: dur.map(|d| started_at + chrono::Duration::milliseconds(d)),
                    device_id,
                    utm_source,
                    utm_medium: None,
                    utm_campaign: None,
                    utm_term: None,
                    utm_content: None,
                    referrer,
                    landing_page,
                    campaign_id,
                    advertisement_id: None,
                    user_agent: None,
                    ip: None,
                })
            }
        ),
        (kind(), opt(text()), opt(id()), opt(id()), opt(text()), opt(text()), json_map()).prop_map(
            |(kind, channel, campaign_id, advertisement_id, utm_source, utm_campaign, detail)| Body::Touchpoint(Touchpoint {
                kind,
                channel,
                campaign_id,
                advertisement_id,
                session_id: None,
                utm_source,
                utm_medium: None,
                utm_campaign,
                utm_term: None,
                utm_content: None,
                referrer: None,
                page_url: None,
                detail
            })
        ),
        (id(), opt(id()), opt(text()), opt(text()), opt(id()), any::<bool>(), opt(any::<bool>())).prop_map(
            |(short_code, link_id, referer, user_agent, campaign_id, bot, unique)| Body::LinkClick(LinkClick {
                link_id,
                short_code: Some(short_code),
                target_url: None,
                referer,
                user_agent,
                ip: None,
                device_id: None,
                campaign_id,
                advertisement_id: None,
                bot,
                unique
            })
        ),
        (kind(), opt((money(), currency())), opt(id()), opt(id()), json_map()).prop_map(
            |(kind, value, order_id, campaign_id, properties)| Body::Conversion(Conversion {
                kind,
                value: value.map(|v| v.0),
                currency: value.map(|v| v.1),
                order_id,
                campaign_id,
                advertisement_id: None,
                session_id: None,
                properties
            })
        ),
        (0i64..20_000, id(), opt(id()), money(), currency(), opt(0u64..1_000_000), opt(0u64..1_000_000), "[a-z_]{1,12}").prop_map(
            |(day, campaign_id, advertisement_id, cost, currency, impressions, clicks, source)| Body::Spend(Spend {
                // From 2000-01-01 (day 730,120 of the common era), inside the accepted years.
                date: NaiveDate::from_num_days_from_ce_opt(730_120 + day as i32).unwrap(),
                campaign_id,
                advertisement_id,
                cost,
                currency,
                impressions,
                clicks,
                source
            })
        ),
        json_map().prop_map(|traits| Body::Identify(Identify { traits })),
        id().prop_map(|previous_id| Body::Alias(Alias { previous_id })),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (body(), id(), ts(), 0i64..86_400_000, id(), id()).prop_map(|(body, record_id, received_at, age_ms, anon, customer)| {
        let customer_id = match &body {
            Body::Alias(a) if a.previous_id == customer => Some(Id::new(format!("{customer}-x")).unwrap()),
            _ => Some(customer),
        };
        Record {
            v: ENVELOPE_VERSION,
            meta: Meta {
                record_id,
                account_id: Uuid::from_u128(42),
                timestamp: received_at - chrono::Duration::milliseconds(age_ms),
                received_at,
                sent_at: None,
                anonymous_id: Some(anon),
                customer_id,
            },
            body,
        }
    })
}

/// The record as a client would send it in native JSON.
fn to_native(r: &Record) -> Value {
    let mut v = serde_json::to_value(&r.body).unwrap();
    let m = v.as_object_mut().unwrap();
    m.insert("message_id".into(), Value::from(r.meta.record_id.as_str()));
    m.insert("timestamp".into(), Value::from(r.meta.timestamp.to_rfc3339()));
    if let Some(a) = &r.meta.anonymous_id {
        m.insert("anonymous_id".into(), Value::from(a.as_str()));
    }
    if let Some(c) = &r.meta.customer_id {
        m.insert("customer_id".into(), Value::from(c.as_str()));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let opts = DecodeOptions::default();
        if let Ok(parsed) = parse_body(&bytes, &opts) {
            let _ = decode_items(&parsed, &ctx(Utc::now()), Expect::Any, &opts);
        }
        let _ = decode_pixel(&String::from_utf8_lossy(&bytes), None, &ctx(Utc::now()), &opts);
    }

    #[test]
    fn decoding_arbitrary_json_objects_never_panics(
        ty in prop_oneof![Just("event"), Just("conversion"), Just("spend"), Just("track"), Just("page"), Just("identify"), Just("alias"), Just("session"), Just("link_click"), Just("touchpoint")],
        fields in proptest::collection::btree_map(
            prop_oneof![Just("event_name".to_owned()), Just("anonymous_id".to_owned()), Just("userId".to_owned()), Just("value".to_owned()), Just("timestamp".to_owned()), Just("sentAt".to_owned()), Just("context".to_owned()), Just("properties".to_owned()), Just("date".to_owned()), Just("kind".to_owned()), "[a-z_]{1,10}"],
            prop_oneof![Just(Value::Null), any::<i64>().prop_map(Value::from), any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)), ".{0,20}".prop_map(Value::from), Just(serde_json::json!({"campaign": {"source": 1}, "page": "x"})), Just(serde_json::json!([1, "a"]))],
            0..8)
    ) {
        let mut m: Map<String, Value> = fields.into_iter().collect();
        m.insert("type".into(), Value::from(ty));
        let bytes = serde_json::to_vec(&Value::Object(m)).unwrap();
        let opts = DecodeOptions::default();
        let parsed = parse_body(&bytes, &opts).unwrap();
        let d = decode_items(&parsed, &ctx(Utc::now()), Expect::Any, &opts);
        prop_assert_eq!(d.accepted_items + d.rejected.len(), 1);
        for r in &d.rejected {
            prop_assert!(!r.message.is_empty());
        }
    }

    #[test]
    fn envelope_round_trips_every_entity(r in record()) {
        let back = Record::from_json(&r.to_json()).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn native_json_round_trips_every_entity(r in record()) {
        let bytes = serde_json::to_vec(&to_native(&r)).unwrap();
        let opts = DecodeOptions::default();
        let parsed = parse_body(&bytes, &opts).unwrap();
        let d = decode_items(&parsed, &ctx(r.meta.received_at), Expect::Any, &opts);
        prop_assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        prop_assert_eq!(d.records.len(), 1);
        prop_assert_eq!(&d.records[0], &r);
        prop_assert!(!r.partition_key().is_empty());
    }
}
