//! Workloads shared by the criterion bench (`benches/engine.rs`) and the profiling example
//! (`examples/profile.rs`).
#![allow(clippy::unwrap_used, dead_code, clippy::manual_is_multiple_of)]

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::Map;
use touchline_engine::{Engine, EngineConfig};
use touchline_model::*;
use uuid::Uuid;

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn rec(rid: String, at: DateTime<Utc>, anon: &str, body: Body) -> Record {
    Record {
        v: 1,
        meta: Meta {
            record_id: Id::new(rid).unwrap(),
            account_id: Uuid::from_u128(7),
            timestamp: at,
            received_at: at,
            sent_at: None,
            anonymous_id: Some(id(anon)),
            customer_id: None,
        },
        body,
    }
}

fn touch(kind: &str, campaign: &str) -> Body {
    Body::Touchpoint(Touchpoint {
        kind: Kind::new(kind).unwrap(),
        channel: Some(if kind == "impression" { "display" } else { "search" }.into()),
        campaign_id: Some(id(campaign)),
        advertisement_id: Some(id("ad-1")),
        session_id: None,
        utm_source: None,
        utm_medium: None,
        utm_campaign: None,
        utm_term: None,
        utm_content: None,
        referrer: None,
        page_url: None,
        detail: Map::new(),
    })
}

pub fn events(n: usize) -> Vec<Record> {
    let idents = 2000;
    (0..n)
        .map(|i| {
            let who = format!("anon-{}", i % idents);
            let at = base() + Duration::seconds((i / idents) as i64 * 240 + (i % 97) as i64);
            if i % 10 == 9 {
                return rec(format!("r{i}"), at, &who, touch("impression", &format!("camp-{}", i % 5)));
            }
            let mut ctx = Context { page_url: Some("https://shop.example/product/42".into()), ..Context::default() };
            if i % 10 == 0 {
                ctx.utm_source = Some("google".into());
                ctx.utm_medium = Some("cpc".into());
                ctx.utm_campaign = Some("spring".into());
            }
            let body = Body::Event(Event {
                event_name: "page".into(),
                session_id: None,
                campaign_id: (i % 10 == 1).then(|| id("camp-1")),
                advertisement_id: None,
                properties: Map::new(),
                context: ctx,
            });
            rec(format!("r{i}"), at, &who, body)
        })
        .collect()
}

pub fn paths(convs: usize) -> Vec<Record> {
    let mut v = Vec::with_capacity(convs * 11);
    for c in 0..convs {
        let who = format!("anon-{c}");
        let conv_at = base() + Duration::days(10) + Duration::seconds(c as i64);
        for t in 0..10 {
            let at = conv_at - Duration::hours(22 * (10 - t) as i64);
            let kind = if t % 3 == 0 { "impression" } else { "click" };
            v.push(rec(format!("t{c}-{t}"), at, &who, touch(kind, &format!("camp-{}", t % 4))));
        }
        v.push(rec(
            format!("c{c}"),
            conv_at,
            &who,
            Body::Conversion(Conversion {
                kind: Kind::new("purchase").unwrap(),
                value: Some(Decimal::new(4999, 2)),
                currency: Some(Currency::new("USD").unwrap()),
                order_id: Some(id(&format!("o{c}"))),
                campaign_id: None,
                advertisement_id: None,
                session_id: None,
                properties: Map::new(),
            }),
        ));
    }
    v
}

/// [`paths`] split into the touches and the conversions (each in arrival order), for measuring the
/// attribution of conversions whose paths are already in the state.
pub fn paths_split(convs: usize) -> (Vec<Record>, Vec<Record>) {
    paths(convs).into_iter().partition(|r| !matches!(r.body, Body::Conversion(_)))
}

pub fn run(records: &[Record]) -> Engine {
    let mut e = Engine::new(EngineConfig::single());
    run_on(&mut e, records);
    e
}

/// Ingests `records` into `e`, flushing every 10,000 records and at the end (the outputs are
/// built and dropped, as a runtime hands them to its sinks).
pub fn run_on(e: &mut Engine, records: &[Record]) {
    for (i, r) in records.iter().enumerate() {
        e.ingest(r);
        if i % 10_000 == 9_999 {
            black_box(e.flush());
        }
    }
    black_box(e.flush());
}
