//! Currencies: revenue and cost in the account's reporting currency, converted at the rate of
//! the record's day; a record whose currency has no rate waits in the state until one comes.
//! Expected values are worked by hand in the comments.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use common::*;
use proptest::prelude::*;
use rust_decimal::Decimal;
use touchline_engine::{Catalog, Engine, EngineConfig, Flush, Ingest, Model, RateRow};
use touchline_model::{Body, Currency, Record};

fn cur(s: &str) -> Currency {
    Currency::new(s).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A rate `from → to` valid from `valid_from` until `until` (exclusive) or the next row.
fn rate(catalog: &mut Catalog, from: &str, to: &str, valid_from: &str, until: Option<&str>, r: &str) {
    assert!(catalog.rates.insert(cur(from), cur(to), RateRow { valid_from: ts(valid_from), valid_until: until.map(ts), rate: d(r) }));
}

/// A click on campaign `c1` by `who`, then a purchase worth `value` in `currency`.
fn click_then_purchase(n: &str, who: &str, at: &str, value: &str, currency: &str) -> Vec<Record> {
    let click = touchpoint(&format!("clk-{n}"), "2026-11-20T08:00:00Z", (Some(who), None), "click", Some("c1"));
    let mut conv = conversion(&format!("cv-{n}"), at, (Some(who), None), 0, None);
    if let Body::Conversion(c) = &mut conv.body {
        c.value = Some(d(value));
        c.currency = Some(cur(currency));
    }
    vec![click, conv]
}

fn spend_in(rid: &str, day: &str, cost: &str, currency: &str) -> Record {
    let mut r = spend(rid, &format!("{day}T23:00:00Z"), date(day), "c1", "meta", 0);
    if let Body::Spend(s) = &mut r.body {
        s.cost = d(cost);
        s.currency = cur(currency);
    }
    r
}

/// Campaign `c1`'s revenue and cost per day in `f`.
fn c1_days(f: &Flush) -> BTreeMap<NaiveDate, (Decimal, Decimal)> {
    let mut out = BTreeMap::new();
    for m in f.metrics.iter().filter(|m| m.campaign_id == "c1") {
        let e = out.entry(m.date).or_insert((Decimal::ZERO, Decimal::ZERO));
        e.0 += m.revenue;
        e.1 += m.cost;
    }
    out
}

fn last_touch(f: &Flush) -> Vec<(String, Decimal, Option<Currency>, Decimal)> {
    f.attributions
        .iter()
        .filter(|s| s.model == Model::LastTouch)
        .flat_map(|s| {
            s.rows().map(|r| (s.conversion.conversion_id.to_string(), s.conversion.value, s.conversion.currency, r.attributed_revenue))
        })
        .collect()
}

#[test]
fn a_eur_conversion_is_credited_in_usd_at_its_days_rate() {
    let mut cfg = EngineConfig::single();
    rate(&mut cfg.catalog, "EUR", "USD", "2026-11-01T00:00:00Z", None, "1.10");
    let mut e = Engine::new(cfg);
    for r in click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR") {
        assert_eq!(e.ingest(&r), Ingest::Applied);
    }
    let f = e.flush();
    // 100.00 EUR × 1.10 = 110.00 USD, all of it to the one click under last touch.
    let rows = last_touch(&f);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, d("110.00"));
    assert_eq!(rows[0].2, Some(Currency::USD));
    assert_eq!(rows[0].3, d("110.00"));
    assert_eq!(c1_days(&f)[&date("2026-11-20")].0, d("110"));
    assert_eq!(e.waiting_for_rate(), 0);
}

#[test]
fn usd_data_is_untouched_and_a_reporting_currency_of_eur_converts_usd() {
    // No rates at all: USD into a USD account needs none.
    let mut e = Engine::new(EngineConfig::single());
    for r in click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "19.99", "USD") {
        assert_eq!(e.ingest(&r), Ingest::Applied);
    }
    assert_eq!(last_touch(&e.flush())[0].3, d("19.99"));

    // An account reporting in EUR, with only EUR → USD at 1.25: USD converts by the inverse,
    // 19.99 / 1.25 = 15.992 EUR.
    let mut cfg = EngineConfig::single();
    cfg.catalog.currencies.insert(acct(), cur("EUR"));
    rate(&mut cfg.catalog, "EUR", "USD", "2026-11-01T00:00:00Z", None, "1.25");
    let mut e = Engine::new(cfg);
    for r in click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "19.99", "USD") {
        assert_eq!(e.ingest(&r), Ingest::Applied);
    }
    let rows = last_touch(&e.flush());
    assert_eq!((rows[0].1, rows[0].2, rows[0].3), (d("15.992"), Some(cur("EUR")), d("15.992")));
}

#[test]
fn gbp_spend_is_converted_by_the_rate_of_its_day() {
    let mut cfg = EngineConfig::single();
    rate(&mut cfg.catalog, "GBP", "USD", "2026-11-20T00:00:00Z", None, "1.25");
    rate(&mut cfg.catalog, "GBP", "USD", "2026-11-21T00:00:00Z", None, "1.30");
    let mut e = Engine::new(cfg);
    assert_eq!(e.ingest(&spend_in("sp-1", "2026-11-20", "80.00", "GBP")), Ingest::Applied);
    assert_eq!(e.ingest(&spend_in("sp-2", "2026-11-21", "80.00", "GBP")), Ingest::Applied);
    let days = c1_days(&e.flush());
    // 80.00 × 1.25 = 100.00 on the 20th, 80.00 × 1.30 = 104.00 on the 21st.
    assert_eq!(days[&date("2026-11-20")].1, d("100"));
    assert_eq!(days[&date("2026-11-21")].1, d("104"));
}

#[test]
fn a_record_without_a_rate_waits_until_the_catalog_brings_one() {
    let mut e = Engine::new(EngineConfig::single());
    let records = click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR");
    assert_eq!(e.ingest(&records[0]), Ingest::Applied);
    assert_eq!(e.ingest(&records[1]), Ingest::Waiting);
    assert_eq!(e.ingest(&spend_in("sp-1", "2026-11-20", "80.00", "GBP")), Ingest::Waiting);
    assert_eq!(e.waiting_for_rate(), 2);
    assert_eq!(e.counters().waited_for_rate, 2);
    assert_eq!(e.stats().waiting_for_rate, 2);
    let f = e.flush();
    assert!(f.attributions.is_empty(), "no conversion is credited while its value has no rate");
    assert!(c1_days(&f).values().all(|(rev, cost)| rev.is_zero() && cost.is_zero()));

    // A rate for EUR only: the conversion goes, the GBP spend keeps waiting.
    let mut catalog = Catalog::default();
    rate(&mut catalog, "EUR", "USD", "2026-11-01T00:00:00Z", None, "1.10");
    assert_eq!(e.set_catalog(catalog.clone()), 1);
    assert_eq!(e.waiting_for_rate(), 1);
    let f = e.flush();
    // 100.00 × 1.10 = 110.00
    assert_eq!(last_touch(&f)[0].3, d("110.00"));
    assert_eq!(c1_days(&f)[&date("2026-11-20")], (d("110"), d("0")));

    // Then GBP: 80.00 × 1.25 = 100.00 of cost.
    rate(&mut catalog, "GBP", "USD", "2026-11-01T00:00:00Z", None, "1.25");
    assert_eq!(e.set_catalog(catalog.clone()), 1);
    assert_eq!(e.waiting_for_rate(), 0);
    assert_eq!(c1_days(&e.flush())[&date("2026-11-20")], (d("110"), d("100")));
    // Nothing left to release.
    assert_eq!(e.set_catalog(catalog), 0);
    assert_eq!(e.counters().applied, 3);
}

#[test]
fn a_rate_that_ends_before_the_record_does_not_release_it() {
    let mut cfg = EngineConfig::single();
    rate(&mut cfg.catalog, "EUR", "USD", "2026-11-01T00:00:00Z", Some("2026-11-20T00:00:00Z"), "1.10");
    let mut e = Engine::new(cfg);
    let records = click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR");
    e.ingest(&records[0]);
    assert_eq!(e.ingest(&records[1]), Ingest::Waiting, "the rate ended at 11-20 00:00, before the conversion");
}

#[test]
fn a_change_of_reporting_currency_releases_the_records_that_waited() {
    let mut e = Engine::new(EngineConfig::single());
    let records = click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR");
    e.ingest(&records[0]);
    assert_eq!(e.ingest(&records[1]), Ingest::Waiting);
    let mut catalog = Catalog::default();
    catalog.currencies.insert(acct(), cur("EUR"));
    assert_eq!(e.set_catalog(catalog), 1);
    let rows = last_touch(&e.flush());
    assert_eq!((rows[0].2, rows[0].3), (Some(cur("EUR")), d("100.00")));
}

#[test]
fn snapshot_and_restore_while_waiting_change_nothing() {
    let mut catalog = Catalog::default();
    rate(&mut catalog, "EUR", "USD", "2026-11-01T00:00:00Z", None, "1.10");
    let records = click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR");

    let mut straight = Engine::new(EngineConfig::single());
    let mut stopped = Engine::new(EngineConfig::single());
    for r in &records {
        straight.ingest(r);
        stopped.ingest(r);
    }
    let _ = straight.flush();
    let _ = stopped.flush();
    let mut restored = Engine::restore(EngineConfig::single(), &stopped.snapshot()).unwrap();
    assert_eq!(restored.waiting_for_rate(), 1);
    assert_eq!(restored.counters(), straight.counters());
    assert_eq!(restored.snapshot(), straight.snapshot(), "the restored state is the state");

    assert_eq!(straight.set_catalog(catalog.clone()), 1);
    assert_eq!(restored.set_catalog(catalog), 1);
    assert_eq!(restored.flush(), straight.flush());
    assert_eq!(restored.waiting_for_rate(), 0);
}

#[test]
fn a_restore_with_a_rate_in_the_catalog_applies_what_waited() {
    let records = click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR");
    let mut e = Engine::new(EngineConfig::single());
    for r in &records {
        e.ingest(r);
    }
    let _ = e.flush();
    let mut cfg = EngineConfig::single();
    rate(&mut cfg.catalog, "EUR", "USD", "2026-11-01T00:00:00Z", None, "1.10");
    let mut restored = Engine::restore(cfg, &e.snapshot()).unwrap();
    assert_eq!(restored.waiting_for_rate(), 0);
    assert_eq!(last_touch(&restored.flush())[0].3, d("110.00"));
}

#[test]
fn the_waiting_list_is_bounded() {
    let mut e = Engine::new(EngineConfig { max_waiting_for_rate: 2, ..EngineConfig::single() });
    for i in 0..3 {
        let r = spend_in(&format!("sp-{i}"), "2026-11-20", "1", "GBP");
        let want = if i < 2 { Ingest::Waiting } else { Ingest::NoRate };
        assert_eq!(e.ingest(&r), want, "record {i}");
    }
    assert_eq!(e.waiting_for_rate(), 2);
    assert_eq!(e.counters().no_rate, 1);
}

/// The bytes bound: room for exactly two records' JSON refuses the third, and releasing the
/// waiting records gives the room back.
#[test]
fn the_waiting_list_is_bounded_by_bytes() {
    let records: Vec<Record> = (0..3).map(|i| spend_in(&format!("sp-{i}"), "2026-11-20", "1", "GBP")).collect();
    let two: usize = records[..2].iter().map(|r| r.to_json().len()).sum();
    let mut e = Engine::new(EngineConfig { max_waiting_for_rate_bytes: two, ..EngineConfig::single() });
    assert_eq!(e.ingest(&records[0]), Ingest::Waiting);
    assert_eq!(e.ingest(&records[1]), Ingest::Waiting);
    assert_eq!(e.ingest(&records[2]), Ingest::NoRate);
    let mut catalog = e.config().catalog.clone();
    rate(&mut catalog, "GBP", "USD", "2026-11-01T00:00:00Z", None, "1.25");
    assert_eq!(e.set_catalog(catalog), 2);
    assert_eq!(e.ingest(&spend_in("sp-3", "2026-11-21", "1", "CHF")), Ingest::Waiting, "room again");
}

#[test]
fn a_record_still_waiting_past_the_allowed_lateness_is_refused() {
    let mut e = Engine::new(EngineConfig::single());
    let records = click_then_purchase("1", "v1", "2026-11-20T10:00:00Z", "100.00", "EUR");
    e.ingest(&records[0]);
    assert_eq!(e.ingest(&records[1]), Ingest::Waiting);
    // The default lateness is 7 days: at 11-27 10:00:01 the conversion is too late.
    e.advance_watermark(ts("2026-11-27T10:00:00Z"));
    assert_eq!(e.waiting_for_rate(), 1);
    e.advance_watermark(ts("2026-11-27T10:00:01Z"));
    assert_eq!(e.waiting_for_rate(), 0);
    let f = e.flush();
    assert_eq!(f.refused.len(), 1);
    assert!(f.refused[0].reason.starts_with("no_exchange_rate: no rate EUR -> USD"), "{}", f.refused[0].reason);
    assert_eq!(Record::from_json(f.refused[0].record.as_bytes()).unwrap(), records[1]);
    assert_eq!(e.counters().no_rate, 1);
    assert!(e.flush().refused.is_empty(), "handed out once");
}

proptest! {
    /// Converting each conversion, then summing, equals converting the sum within 0.01: each
    /// converted value is rounded to 6 places, so n of them differ from the converted sum by
    /// at most n × 0.0000005 (0.00002 for 40). The daily metrics hold the same total as the
    /// attribution rows.
    #[test]
    fn converting_then_summing_equals_summing_converted(
        cents in prop::collection::vec(1i64..10_000_000, 1..40),
        rate_millis in 1i64..5_000_000,
    ) {
        let r = Decimal::new(rate_millis, 6);
        let mut cfg = EngineConfig::single();
        cfg.catalog.rates.insert(cur("EUR"), cur("USD"), RateRow { valid_from: ts("2026-11-01T00:00:00Z"), valid_until: None, rate: r });
        let mut e = Engine::new(cfg);
        let mut total = Decimal::ZERO;
        for (i, c) in cents.iter().enumerate() {
            let v = Decimal::new(*c, 2);
            total += v;
            for rec in click_then_purchase(&i.to_string(), &format!("v{i}"), "2026-11-20T10:00:00Z", &v.to_string(), "EUR") {
                prop_assert_eq!(e.ingest(&rec), Ingest::Applied);
            }
        }
        let f = e.flush();
        let revenue: Decimal = last_touch(&f).iter().map(|x| x.3).sum();
        let metric: Decimal = c1_days(&f).values().map(|x| x.0).sum();
        prop_assert_eq!(revenue, metric);
        let exact = total * r;
        prop_assert!((revenue - exact).abs() <= Decimal::new(5, 7) * Decimal::from(cents.len()), "{} vs {}", revenue, exact);
        prop_assert!((revenue - exact).abs() < Decimal::new(1, 2));
    }
}
