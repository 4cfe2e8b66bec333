//! Hostile input the decoder must refuse (or truncate) instead of panicking or handing a store a
//! value it cannot hold: the time window, money bounds, text rules, JSON depth, and the values
//! copied from request headers. Expected values are worked out by hand in the comments.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use touchline_model::limits::*;
use touchline_model::*;
use uuid::Uuid;

const RECEIVED: &str = "2026-11-21T12:00:00Z";

fn received() -> DateTime<Utc> {
    RECEIVED.parse().unwrap()
}

fn ctx() -> RequestCtx {
    RequestCtx {
        account_id: Uuid::from_u128(7),
        received_at: received(),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("curl/8".into()),
    }
}

fn decode_with(body: &Value, expect: Expect, ctx: &RequestCtx, opts: &DecodeOptions) -> Decoded {
    let bytes = serde_json::to_vec(body).unwrap();
    let parsed = parse_body(&bytes, opts).unwrap();
    decode_items(&parsed, ctx, expect, opts)
}

fn decode(body: Value) -> Decoded {
    decode_with(&body, Expect::Any, &ctx(), &DecodeOptions::default())
}

/// The one record of a single-item body, which must be accepted.
fn accepted(body: Value) -> Record {
    let d = decode(body);
    assert!(d.rejected.is_empty(), "{:?}", d.rejected);
    assert_eq!(d.records.len(), 1);
    let r = d.records.into_iter().next().unwrap();
    check_stored(&r).unwrap();
    r
}

/// The rejection of a single-item body, which must be refused.
fn rejected(body: Value) -> RecordError {
    let d = decode(body);
    assert!(d.records.is_empty(), "accepted: {:?}", d.records);
    assert_eq!(d.rejected.len(), 1);
    d.rejected.into_iter().next().unwrap()
}

fn assert_field(e: &RecordError, field: &str, needle: &str) {
    assert_eq!(e.field.as_deref(), Some(field), "{e}");
    assert!(e.message.contains(needle), "{e}");
}

fn event(extra: Value) -> Value {
    let mut v = json!({"type": "event", "event_name": "x", "anonymous_id": "a"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// `n` arrays nested around a number: `nest(0)` is `1`, `nest(2)` is `[[1]]`. Its depth is `n`.
fn nest(n: usize) -> Value {
    (0..n).fold(json!(1), |v, _| Value::Array(vec![v]))
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

// ---- 1. time ---------------------------------------------------------------------------------

#[test]
fn the_time_window_is_inclusive_at_2000_and_exclusive_at_2100() {
    // No sent_at, in the past: kept as sent.
    let r = accepted(event(json!({"timestamp": "2000-01-01T00:00:00Z"})));
    assert_eq!(r.meta.timestamp, "2000-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
    // Epoch milliseconds of 2000-01-01: 10 957 days × 86 400 000 ms.
    assert_eq!(MIN_TIME_MS, 10_957 * 86_400_000);
    let r = accepted(event(json!({"timestamp": MIN_TIME_MS})));
    assert_eq!(r.meta.timestamp.timestamp_millis(), 946_684_800_000);

    let e = rejected(event(json!({"timestamp": "1999-12-31T23:59:59.999Z"})));
    assert_field(&e, "timestamp", "1999-12-31T23:59:59.999Z is outside 2000-01-01 to 2100-01-01");
    let e = rejected(event(json!({"timestamp": MIN_TIME_MS - 1})));
    assert_field(&e, "timestamp", "is outside 2000-01-01 to 2100-01-01");
    let e = rejected(event(json!({"timestamp": 0})));
    assert_field(&e, "timestamp", "1970-01-01T00:00:00Z is outside 2000-01-01 to 2100-01-01");

    // 2100-01-01 is out, although the future rule alone would have turned it into server time.
    let e = rejected(event(json!({"timestamp": "2100-01-01T00:00:00Z"})));
    assert_field(&e, "timestamp", "2100-01-01T00:00:00Z is outside");
    // The last millisecond before it is in the window, and far in the future: server time.
    let r = accepted(event(json!({"timestamp": "2099-12-31T23:59:59.999Z"})));
    assert_eq!(r.meta.timestamp, received());

    let e = rejected(event(json!({"sent_at": "2100-01-01T00:00:00Z"})));
    assert_field(&e, "sent_at", "is outside");
}

#[test]
fn the_future_rule_still_applies_after_correction() {
    // Received 12:00. 22 h ahead is kept, 24 h ahead becomes server time (limit 23 h).
    let r = accepted(event(json!({"timestamp": "2026-11-22T10:00:00Z"})));
    assert_eq!(r.meta.timestamp.to_rfc3339(), "2026-11-22T10:00:00+00:00");
    let r = accepted(event(json!({"timestamp": "2026-11-22T12:00:00Z"})));
    assert_eq!(r.meta.timestamp, received());
}

#[test]
fn timestamp_and_sent_at_500_years_apart_are_an_error_not_a_panic() {
    let e = rejected(event(json!({"timestamp": "1526-11-21T12:00:00Z", "sent_at": "2026-11-21T12:00:00Z"})));
    assert_field(&e, "timestamp", "1526-11-21T12:00:00Z is outside");
    let e = rejected(event(json!({"timestamp": "2026-11-21T12:00:00Z", "sent_at": "2526-11-21T12:00:00Z"})));
    assert_field(&e, "sent_at", "2526-11-21T12:00:00Z is outside");
}

#[test]
fn extreme_epoch_milliseconds_are_an_error_not_a_panic() {
    // ±8.2e15 ms is about ±259 800 years: both are dates chrono can hold, but received_at minus
    // their difference (about 519 700 years) is not. The skew correction used to panic here.
    for (ts, sent) in [(-8_200_000_000_000_000i64, 8_200_000_000_000_000i64), (8_200_000_000_000_000, -8_200_000_000_000_000)] {
        let e = rejected(event(json!({"timestamp": ts, "sent_at": sent})));
        assert_field(&e, "timestamp", "is outside");
        let e = rejected(json!({"type": "track", "event": "x", "userId": "u", "timestamp": ts, "sentAt": sent}));
        assert_field(&e, "timestamp", "is outside");
    }
    // Out of chrono's range altogether.
    let e = rejected(event(json!({"timestamp": i64::MAX})));
    assert_field(&e, "timestamp", "not a valid epoch-milliseconds timestamp");
}

#[test]
fn a_correction_that_lands_outside_the_window_is_refused() {
    // Both inside the window, but 2099-12-31 - 2000-01-01 is about 100 years, and received_at
    // (2026) minus 100 years is about 1926.
    let e = rejected(event(json!({"timestamp": "2000-01-01T00:00:00Z", "sent_at": "2099-12-31T00:00:00Z"})));
    assert_field(&e, "timestamp", "corrected for clock skew with `sent_at` (2099-12-31T00:00:00Z)");
    assert!(e.message.contains("falls outside 2000-01-01 to 2100-01-01"), "{e}");
    // Segment's originalTimestamp, corrected with the message's sentAt.
    let e = rejected(json!({"type": "track", "event": "x", "userId": "u",
                            "originalTimestamp": "2000-01-01T00:00:00Z", "sentAt": "2099-12-31T00:00:00Z"}));
    assert_field(&e, "originalTimestamp", "with `sentAt`");
    // A correction that lands in the window is applied as before: 11 min late on the client
    // clock, received 12:00, so 11:49.
    let r = accepted(event(json!({"timestamp": "2001-01-01T00:00:00Z", "sent_at": "2001-01-01T00:11:00Z"})));
    assert_eq!(r.meta.timestamp.to_rfc3339(), "2026-11-21T11:49:00+00:00");
}

#[test]
fn batch_sent_at_outside_the_window_refuses_the_body() {
    let body = json!({"batch": [{"type": "track", "event": "x", "userId": "u"}], "sentAt": "1970-01-01T00:00:00Z"});
    let e = parse_body(&serde_json::to_vec(&body).unwrap(), &DecodeOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "field `sentAt`: 1970-01-01T00:00:00Z is outside 2000-01-01 to 2100-01-01");
    // In the window, but the item's timestamp corrected with it is not: named as the batch's.
    let body = json!({"batch": [{"type": "track", "event": "x", "userId": "u", "timestamp": "2000-01-01T00:00:00Z"}],
                      "sentAt": "2099-12-31T00:00:00Z"});
    let d = decode(body);
    assert_field(&d.rejected[0], "timestamp", "with the batch's `sentAt` (2099-12-31T00:00:00Z)");
}

#[test]
fn session_times_spend_dates_and_pixel_ts_keep_the_window() {
    let session = |started: &str, ended: Option<&str>| {
        let mut v = json!({"type": "session", "session_id": "s", "anonymous_id": "a", "started_at": started});
        if let Some(e) = ended {
            v["ended_at"] = json!(e);
        }
        v
    };
    accepted(session("2000-01-01T00:00:00Z", Some("2000-01-01T00:30:00Z")));
    assert_field(&rejected(session("1999-12-31T23:59:59Z", None)), "started_at", "is outside");
    assert_field(&rejected(session("2099-12-31T00:00:00Z", Some("2100-01-01T00:00:00Z"))), "ended_at", "is outside");

    let spend = |date: &str| json!({"type": "spend", "date": date, "campaign_id": "c", "cost": "1", "currency": "USD"});
    accepted(spend("2000-01-01"));
    accepted(spend("2099-12-31"));
    assert_field(&rejected(spend("1999-12-31")), "date", "1999-12-31 is outside");
    assert_field(&rejected(spend("2100-01-01")), "date", "2100-01-01 is outside");

    let opts = DecodeOptions::default();
    let (_, r) = decode_pixel("k=x&e=v&aid=a&ts=946684800000", None, &ctx(), &opts);
    assert_eq!(r.unwrap()[0].meta.timestamp.timestamp_millis(), 946_684_800_000);
    let (_, r) = decode_pixel("k=x&e=v&aid=a&ts=946684799999", None, &ctx(), &opts);
    assert_field(&r.unwrap_err(), "timestamp", "1999-12-31T23:59:59.999Z is outside");
}

// ---- 2. money, counts --------------------------------------------------------------------------

fn conversion(value: Value) -> Value {
    json!({"type": "conversion", "kind": "purchase", "value": value, "currency": "USD", "customer_id": "c"})
}

fn conversion_value(r: &Record) -> Decimal {
    let Body::Conversion(c) = &r.body else { panic!("{r:?}") };
    c.value.unwrap()
}

#[test]
fn money_is_below_10_to_the_12() {
    let r = accepted(conversion(json!("999999999999.999999")));
    assert_eq!(conversion_value(&r), dec("999999999999.999999"));
    assert_eq!(r.to_json().windows(21).filter(|w| w == b"\"999999999999.999999\"").count(), 1, "stored exactly");

    assert_field(&rejected(conversion(json!("1000000000000"))), "value", "out of range");
    assert_field(&rejected(conversion(json!(1e15))), "value", "less than 1000000000000");
    // Seven nines round half to even up to 10^12 itself: refused after rounding.
    assert_field(&rejected(conversion(json!("999999999999.9999995"))), "value", "1000000000000.000000 is out of range");

    let spend = |cost: Value| json!({"type": "spend", "date": "2026-11-20", "campaign_id": "c", "cost": cost, "currency": "USD"});
    accepted(spend(json!("999999999999.999999")));
    assert_field(&rejected(spend(json!("1000000000000"))), "cost", "out of range");
    assert_field(&rejected(spend(json!(1e15))), "cost", "out of range");
}

#[test]
fn money_past_six_places_is_rounded_half_to_even() {
    // 0.0000005 → 0.000000 (0 is even), 0.0000015 → 0.000002, 0.0000025 → 0.000002,
    // 1.2345675 → 1.234568 (7 is odd, so up to 8), 19.99 untouched.
    for (sent, want) in
        [("0.0000005", "0.000000"), ("0.0000015", "0.000002"), ("0.0000025", "0.000002"), ("1.2345675", "1.234568"), ("19.99", "19.99")]
    {
        let r = accepted(conversion(json!(sent)));
        let v = conversion_value(&r);
        assert_eq!(v.to_string(), want, "{sent}");
    }
    let r = accepted(json!({"type": "spend", "date": "2026-11-20", "campaign_id": "c", "cost": "3.0000005", "currency": "USD"}));
    let Body::Spend(s) = &r.body else { panic!() };
    assert_eq!(s.cost.to_string(), "3.000000");
}

#[test]
fn segment_revenue_total_and_value_are_money() {
    for key in ["revenue", "total", "value"] {
        let e = rejected(json!({"type": "track", "event": "Order Completed", "userId": "u", "properties": {key: 1e15}}));
        assert_field(&e, &format!("properties.{key}"), "out of range");
    }
    let d = decode(json!({"type": "track", "event": "Order Completed", "userId": "u", "properties": {"revenue": "12.0000015"}}));
    assert_eq!(conversion_value(&d.records[1]).to_string(), "12.000002");
}

#[test]
fn spend_counts_are_at_most_10_to_the_12() {
    let spend = |n: u64| {
        json!({"type": "spend", "date": "2026-11-20", "campaign_id": "c", "cost": "1", "currency": "USD",
                                "impressions": n, "clicks": n})
    };
    accepted(spend(1_000_000_000_000));
    assert_field(&rejected(spend(1_000_000_000_001)), "impressions", "over the limit of 1000000000000");
}

// ---- 2. text -----------------------------------------------------------------------------------

#[test]
fn nul_and_control_characters_are_refused_in_every_text_field() {
    let touch = |k: &str, v: &str| {
        let mut t = json!({"type": "touchpoint", "kind": "click", "anonymous_id": "a"});
        t[k] = json!(v);
        t
    };
    assert_field(&rejected(touch("channel", "e\u{0}mail")), "channel", "U+0000 at byte 1");
    assert_field(&rejected(touch("utm_source", "goo\u{0}gle")), "utm_source", "U+0000 at byte 3");
    assert_field(&rejected(touch("utm_campaign", "a\u{1b}[31m")), "utm_campaign", "U+001B");
    assert_field(&rejected(touch("page_url", "https://x.example/\u{7f}")), "page_url", "U+007F");
    assert_field(&rejected(touch("referrer", "\u{0}")), "referrer", "U+0000");
    // Tab, newline and carriage return are text.
    accepted(touch("utm_content", "a\tb\nc\r\nd"));

    let ctx_field = |k: &str| rejected(event(json!({"context": {k: "x\u{0}"}})));
    for k in [
        "page_url",
        "page_path",
        "page_title",
        "referrer",
        "user_agent",
        "ip",
        "locale",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
    ] {
        assert_field(&ctx_field(k), &format!("context.{k}"), "U+0000");
    }
    assert_field(&rejected(event(json!({"event_name": "view\u{0}"}))), "event_name", "U+0000");
    let session = json!({"type": "session", "session_id": "s", "anonymous_id": "a", "started_at": "2026-11-21T10:00:00Z"});
    for k in ["utm_term", "referrer", "landing_page", "user_agent", "ip"] {
        let mut s = session.clone();
        s[k] = json!("\u{1}");
        assert_field(&rejected(s), k, "U+0001");
    }
    let click = json!({"type": "link_click", "short_code": "abc"});
    for k in ["target_url", "referer", "user_agent", "ip"] {
        let mut c = click.clone();
        c[k] = json!("\u{0}");
        assert_field(&rejected(c), k, "U+0000");
    }
    let e =
        rejected(json!({"type": "spend", "date": "2026-11-20", "campaign_id": "c", "cost": "1", "currency": "USD", "source": "a\u{0}"}));
    assert_field(&e, "source", "U+0000");
    // Segment names are mapped; the error names the field as stored.
    let e = rejected(json!({"type": "track", "event": "x", "userId": "u", "context": {"campaign": {"source": "g\u{0}"}}}));
    assert_field(&e, "context.utm_source", "U+0000");
    let e = rejected(json!({"type": "track", "event": "x\u{0}", "userId": "u"}));
    assert_field(&e, "event_name", "U+0000");
    // Identifiers already refused control characters.
    assert!(rejected(event(json!({"anonymous_id": "a\u{0}"}))).message.contains("control characters"));
}

#[test]
fn text_fields_have_length_limits() {
    let touch = |k: &str, v: String| {
        let mut t = json!({"type": "touchpoint", "kind": "click", "anonymous_id": "a"});
        t[k] = json!(v);
        t
    };
    // Characters, not bytes: 64 × 'é' is 128 bytes.
    accepted(touch("channel", "é".repeat(64)));
    assert_field(&rejected(touch("channel", "é".repeat(65))), "channel", "65 characters long, over the limit of 64");
    accepted(touch("utm_source", "u".repeat(255)));
    assert_field(&rejected(touch("utm_source", "u".repeat(256))), "utm_source", "256 characters long, over the limit of 255");
    accepted(touch("page_url", "p".repeat(8192)));
    assert_field(&rejected(touch("page_url", "p".repeat(8193))), "page_url", "8193 bytes long, over the limit of 8192 bytes");

    accepted(event(json!({"context": {"user_agent": "u".repeat(1024)}})));
    let e = rejected(event(json!({"context": {"user_agent": "u".repeat(1025)}})));
    assert_field(&e, "context.user_agent", "1025 bytes long, over the limit of 1024 bytes");
    let e = rejected(json!({"type": "page", "userId": "u", "context": {"userAgent": "u".repeat(1025)}}));
    assert_field(&e, "context.user_agent", "over the limit of 1024 bytes");
    assert_field(&rejected(event(json!({"context": {"ip": "1".repeat(65)}}))), "context.ip", "over the limit of 64 bytes");
    let e = rejected(json!({"type": "link_click", "short_code": "abc", "target_url": format!("https://{}", "t".repeat(8185))}));
    assert_field(&e, "target_url", "8193 bytes long");
    // A 300 KB UTM is over the record size long before the UTM limit; at 256 characters it is
    // the UTM limit that speaks.
    let e = rejected(json!({"type": "session", "session_id": "s", "anonymous_id": "a", "started_at": "2026-11-21T10:00:00Z",
                            "utm_campaign": "c".repeat(256)}));
    assert_field(&e, "utm_campaign", "over the limit of 255");
}

// ---- 2. free JSON ------------------------------------------------------------------------------

#[test]
fn free_json_refuses_nul_in_keys_and_strings() {
    assert_field(&rejected(event(json!({"properties": {"a\u{0}": 1}}))), "properties", "NUL");
    assert_field(&rejected(event(json!({"properties": {"a": {"b": ["x", "y\u{0}"]}}}))), "properties.a", "NUL");
    assert_field(&rejected(event(json!({"context": {"library": {"name": "\u{0}"}}}))), "context.library", "NUL");
    let e = rejected(json!({"type": "touchpoint", "kind": "click", "anonymous_id": "a", "detail": {"d": "\u{0}"}}));
    assert_field(&e, "detail.d", "NUL");
    let e = rejected(json!({"type": "identify", "customer_id": "c", "traits": {"t": "\u{0}"}}));
    assert_field(&e, "traits.t", "NUL");
    let mut c = conversion(json!(1));
    c["properties"] = json!({"p": "\u{0}"});
    assert_field(&rejected(c), "properties.p", "NUL");
    // Other control characters are fine in JSON: every store escapes them.
    accepted(event(json!({"properties": {"a": "\u{1}\u{7f}"}})));
}

#[test]
fn free_json_nests_at_most_32_levels_counting_its_own_object() {
    // properties {"a": nest(31)}: the properties object is level 1, the arrays 2..=32.
    accepted(event(json!({"properties": {"a": nest(31)}})));
    let e = rejected(event(json!({"properties": {"a": nest(32)}})));
    assert_field(&e, "properties.a", "more than 32 levels deep");
    accepted(json!({"type": "identify", "customer_id": "c", "traits": {"t": nest(31)}}));
    assert_field(&rejected(json!({"type": "identify", "customer_id": "c", "traits": {"t": nest(32)}})), "traits.t", "32 levels");
    // The event context counts as the object of its extra keys.
    accepted(event(json!({"context": {"library": nest(31)}})));
    assert_field(&rejected(event(json!({"context": {"library": nest(32)}}))), "context.library", "32 levels");
}

#[test]
fn segment_depth_is_measured_where_the_value_is_stored() {
    // A page's `name` is stored as `properties.name`: properties (1) + nest(n) = 1 + n levels.
    // n = 31 fits exactly; n = 32 does not, although the received `name` is only 32 deep.
    let page = |name: Value| json!({"type": "page", "userId": "u", "name": name});
    let r = accepted(page(nest(31)));
    let Body::Event(e) = &r.body else { panic!() };
    assert_eq!(e.properties["name"], nest(31));
    assert_field(&rejected(page(nest(32))), "name", "more than 32 levels deep as stored");
    let e = rejected(json!({"type": "screen", "userId": "u", "category": nest(32)}));
    assert_field(&e, "category", "32 levels");
    // A group's traits are stored as properties.traits: properties (1) + traits (1) + nest(n).
    // n = 30 fits; n = 31 does not, although the received traits object is 1 + 31 = 32 deep.
    let group = |t: Value| json!({"type": "group", "userId": "u", "groupId": "g", "traits": {"t": t}});
    accepted(group(nest(30)));
    assert_field(&rejected(group(nest(31))), "traits", "32 levels");
    // The case of the report: a name nested close to serde_json's limit of 128 was accepted and
    // could not be read back from the bus.
    let d = decode(page(nest(125)));
    assert!(d.records.is_empty());
    assert_eq!(d.rejected[0].field.as_deref(), Some("name"));
}

#[test]
fn segment_context_keys_named_like_our_fields_do_not_break_the_envelope() {
    // `extra` is flattened beside `page_url`: the key would be written twice and not read back.
    let d =
        decode(json!({"type": "page", "userId": "u", "context": {"page": {"url": "https://a.example/"}, "page_url": "https://b.example/",
                                                                       "user_agent": "ua-from-body"}}));
    let r = &d.records[0];
    check_stored(r).unwrap();
    assert_eq!(&Record::from_json(&r.to_json()).unwrap(), r);
    let Body::Event(e) = &r.body else { panic!() };
    assert_eq!(e.context.page_url.as_deref(), Some("https://a.example/"), "Segment's own key wins");
    assert_eq!(e.context.user_agent.as_deref(), Some("ua-from-body"), "fills the field Segment's key left empty");
    assert!(!e.context.extra.contains_key("page_url"));
}

// ---- 3. values copied from the request ---------------------------------------------------------

fn context_of(r: &Record) -> &Context {
    let Body::Event(e) = &r.body else { panic!("{r:?}") };
    &e.context
}

#[test]
fn a_400_kb_user_agent_is_cut_to_1024_bytes_and_flagged() {
    let mut c = ctx();
    c.user_agent = Some("Mozilla/5.0 ".repeat(400 * 1024 / 12));
    let d = decode_with(&event(json!({})), Expect::Any, &c, &DecodeOptions::default());
    let r = &d.records[0];
    let ua = context_of(r).user_agent.as_deref().unwrap();
    assert_eq!(ua.len(), 1024);
    assert!(c.user_agent.as_deref().unwrap().starts_with(ua));
    assert_eq!(context_of(r).extra[TRUNCATED_KEY], json!(["user_agent"]));
    check_stored(r).unwrap();
    // Old readers see the flag as one more context key.
    let back = Record::from_json(&r.to_json()).unwrap();
    assert_eq!(&back, r);
    let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["context"]["truncated"], json!(["user_agent"]));
}

#[test]
fn truncation_does_not_split_a_utf8_character() {
    // '€' is 3 bytes (E2 82 AC). 1022 ASCII bytes then '€' spans bytes 1022..1025: the cut at
    // 1024 would fall inside it, so the value keeps 1022 bytes.
    let ua = format!("{}€tail", "a".repeat(1022));
    assert_eq!(truncate_utf8(&ua, 1024), ("a".repeat(1022).as_str(), true));
    let mut c = ctx();
    c.user_agent = Some(ua);
    let d = decode_with(&event(json!({})), Expect::Any, &c, &DecodeOptions::default());
    assert_eq!(context_of(&d.records[0]).user_agent.as_deref(), Some("a".repeat(1022).as_str()));
    // Exactly at the limit: kept whole, no flag.
    c.user_agent = Some(format!("{}€", "a".repeat(1021)));
    let d = decode_with(&event(json!({})), Expect::Any, &c, &DecodeOptions::default());
    let cx = context_of(&d.records[0]);
    assert_eq!(cx.user_agent.as_ref().unwrap().len(), 1024);
    assert!(!cx.extra.contains_key(TRUNCATED_KEY));
    assert_eq!(truncate_utf8("€", 2), ("", true));
    assert_eq!(truncate_utf8("€", 3), ("€", false));
}

#[test]
fn a_long_client_address_is_cut_and_flagged_with_the_user_agent() {
    let c = RequestCtx { ip: Some("9".repeat(100)), user_agent: Some("u".repeat(2000)), ..ctx() };
    let d = decode_with(&event(json!({})), Expect::Any, &c, &DecodeOptions::default());
    let cx = context_of(&d.records[0]);
    assert_eq!(cx.ip.as_deref(), Some("9".repeat(64).as_str()));
    assert_eq!(cx.extra[TRUNCATED_KEY], json!(["ip", "user_agent"]));
    // A body value is not the request's: nothing is copied or flagged.
    let d = decode_with(&event(json!({"context": {"user_agent": "mine", "ip": "10.0.0.1"}})), Expect::Any, &c, &DecodeOptions::default());
    assert!(!context_of(&d.records[0]).extra.contains_key(TRUNCATED_KEY));
}

#[test]
fn pixel_referer_is_cut_to_8192_bytes_and_flagged_where_the_entity_keeps_free_json() {
    let referer = format!("https://news.example/{}", "r".repeat(20_000));
    let c = RequestCtx { user_agent: Some("u".repeat(5000)), ..ctx() };
    let opts = DecodeOptions::default();
    let (_, r) = decode_pixel("k=x&e=view&aid=a", Some(&referer), &c, &opts);
    let r = r.unwrap();
    let cx = context_of(&r[0]);
    assert_eq!(cx.page_url.as_ref().unwrap().len(), 8192);
    assert_eq!(cx.user_agent.as_ref().unwrap().len(), 1024);
    assert_eq!(cx.extra[TRUNCATED_KEY], json!(["page_url", "user_agent"]));
    check_stored(&r[0]).unwrap();

    let (_, r) = decode_pixel("k=x&t=touchpoint&kind=impression&aid=a", Some(&referer), &c, &opts);
    let Body::Touchpoint(t) = &r.unwrap()[0].body else { panic!() };
    assert_eq!(t.page_url.as_ref().unwrap().len(), 8192);
    assert_eq!(t.detail[TRUNCATED_KEY], json!(["page_url"]));

    let (_, r) = decode_pixel("k=x&t=conversion&kind=lead&uid=c", Some(&referer), &c, &opts);
    let Body::Conversion(v) = &r.unwrap()[0].body else { panic!() };
    assert_eq!(v.properties["page_url"].as_str().unwrap().len(), 8192);
    assert_eq!(v.properties[TRUNCATED_KEY], json!(["page_url"]));
}

/// An event item of exactly `len` bytes of JSON.
fn event_of_len(len: usize) -> String {
    let base = r#"{"type":"event","event_name":"x","anonymous_id":"a","properties":{"p":""}}"#;
    assert!(len >= base.len());
    let s = base.replace(r#""p":"""#, &format!(r#""p":"{}""#, "x".repeat(len - base.len())));
    assert_eq!(s.len(), len);
    s
}

#[test]
fn copied_values_count_against_the_record_limit() {
    let opts = DecodeOptions { max_record_bytes: 2000, ..DecodeOptions::default() };
    let c = RequestCtx { ip: None, user_agent: Some("u".repeat(5000)), ..ctx() };
    // 976 bytes of item + 1024 bytes of User-Agent = 2000: fits. 977 + 1024 = 2001 does not.
    let body = format!("[{}, {}]", event_of_len(976), event_of_len(977));
    let parsed = parse_body(body.as_bytes(), &opts).unwrap();
    let d = decode_items(&parsed, &c, Expect::Any, &opts);
    assert_eq!(d.accepted_items, 1);
    let e = &d.rejected[0];
    assert_eq!((e.index, e.code), (1, "too_large"));
    assert_eq!(e.field.as_deref(), Some("context.user_agent"));
    assert_eq!(
        e.message,
        "record is 977 bytes plus 1024 bytes copied from the request (1024 bytes of `context.user_agent` from the `User-Agent` header), 2001 bytes in all, over the limit of 2000 bytes"
    );
    // A pixel: the query string is the item.
    let q = format!("k=x&e=v&aid=a&p={}", "x".repeat(2000 - 1024 - 16));
    assert_eq!(q.len() + 1024, 2000);
    assert!(decode_pixel(&q, None, &c, &opts).1.is_ok());
    let q = format!("{q}x");
    let e = decode_pixel(&q, None, &c, &opts).1.unwrap_err();
    assert_eq!(e.code, "too_large");
    assert!(e.message.contains("`User-Agent` header"), "{e}");
}

#[test]
fn copied_values_count_against_the_request_limit() {
    // Each item is 500 bytes and gets 1024 bytes of User-Agent: 1524 bytes. A budget of
    // 3 × 1524 = 4572 takes three; the fourth would make 6096, and the fifth is not decoded.
    let opts = DecodeOptions { max_request_bytes: 4572, ..DecodeOptions::default() };
    let c = RequestCtx { ip: None, user_agent: Some("u".repeat(400 * 1024)), ..ctx() };
    let items: Vec<String> = (0..5).map(|_| event_of_len(500)).collect();
    let body = format!("[{}]", items.join(","));
    let parsed = parse_body(body.as_bytes(), &opts).unwrap();
    let d = decode_items(&parsed, &c, Expect::Any, &opts);
    assert_eq!(d.accepted_items, 3);
    assert_eq!(d.records.len(), 3);
    assert_eq!(d.rejected.iter().map(|e| (e.index, e.code)).collect::<Vec<_>>(), vec![(3, "too_large"), (4, "too_large")]);
    assert!(d.rejected[0].message.contains("brings the request to 6096 bytes"), "{}", d.rejected[0]);
    assert!(d.rejected[0].message.contains("over the limit of 4572 bytes"), "{}", d.rejected[0]);
    assert!(d.rejected[1].message.contains("reached its limit of 4572 bytes at record 3"), "{}", d.rejected[1]);
    // Invalid items cost nothing: they are not stored.
    let body = format!("[{{\"type\":\"nope\"}},{}]", items[..3].join(","));
    let d = decode_items(&parse_body(body.as_bytes(), &opts).unwrap(), &c, Expect::Any, &opts);
    assert_eq!((d.accepted_items, d.rejected.len()), (3, 1));
    assert_eq!(DecodeOptions::default().max_request_bytes, 5 * 1024 * 1024);
}

// ---- 4. records read back from the bus ---------------------------------------------------------

/// A record as a third-party producer might write it to the bus, with `patch` applied (a null
/// removes the key).
fn produced(patch: Value) -> Vec<u8> {
    let mut v = json!({"v": 1, "type": "conversion", "record_id": "r1", "account_id": Uuid::from_u128(7),
                       "timestamp": "2026-11-21T11:00:00Z", "received_at": RECEIVED, "customer_id": "c",
                       "kind": "purchase", "value": "10", "currency": "USD"});
    let m = v.as_object_mut().unwrap();
    for (k, x) in patch.as_object().unwrap() {
        if x.is_null() {
            m.remove(k);
        } else {
            m.insert(k.clone(), x.clone());
        }
    }
    serde_json::to_vec(&v).unwrap()
}

fn stored_error(patch: Value) -> RecordError {
    let r = Record::from_json(&produced(patch)).unwrap();
    check_stored(&r).unwrap_err()
}

#[test]
fn check_stored_refuses_what_the_decoder_would_have_refused() {
    check_stored(&Record::from_json(&produced(json!({}))).unwrap()).unwrap();
    assert_field(&stored_error(json!({"value": "1000000000000"})), "value", "out of range");
    assert_field(&stored_error(json!({"value": "-5"})), "value", "must not be negative");
    assert_field(&stored_error(json!({"timestamp": "1970-01-01T00:00:00Z"})), "timestamp", "is outside");
    assert_field(&stored_error(json!({"received_at": "2100-01-01T00:00:00Z"})), "received_at", "is outside");
    assert_field(&stored_error(json!({"sent_at": "1999-01-01T00:00:00Z"})), "sent_at", "is outside");
    assert_field(&stored_error(json!({"properties": {"a": nest(40)}})), "properties.a", "32 levels");
    assert_field(&stored_error(json!({"properties": {"a": "\u{0}"}})), "properties.a", "NUL");
    assert_field(&stored_error(json!({"currency": null})), "currency", "required");
    let e = stored_error(json!({"type": "touchpoint", "kind": "click", "channel": "c\u{0}", "value": null, "currency": null}));
    assert_field(&e, "channel", "U+0000");
    let e = stored_error(json!({"type": "event", "event_name": "x", "context": {"utm_source": "x".repeat(256)},
                                "kind": null, "value": null, "currency": null}));
    assert_field(&e, "context.utm_source", "over the limit of 255");
    let e = stored_error(json!({"type": "link_click", "short_code": "s", "user_agent": "u".repeat(1025),
                                "kind": null, "value": null, "currency": null}));
    assert_field(&e, "user_agent", "over the limit of 1024 bytes");
    let e = stored_error(json!({"type": "spend", "date": "1999-12-31", "campaign_id": "c", "cost": "1",
                                "kind": null, "value": null}));
    assert_field(&e, "date", "is outside");
    // The stores round money themselves; the result stays in range, so it is not refused.
    check_stored(&Record::from_json(&produced(json!({"value": "999999999999.9999994"}))).unwrap()).unwrap();
}

#[test]
fn check_stored_refuses_an_extra_context_key_that_shadows_a_field() {
    let mut r = accepted(event(json!({})));
    let Body::Event(e) = &mut r.body else { panic!() };
    e.context.extra.insert("page_url".into(), json!("x"));
    assert_field(&check_stored(&r).unwrap_err(), "context.page_url", "both a context field");
    let Body::Event(e) = &mut r.body else { panic!() };
    e.context.extra.clear();
    r.v = 2;
    assert_field(&check_stored(&r).unwrap_err(), "v", "version 2");
}
