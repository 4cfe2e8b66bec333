//! The edges of every window, pinned exactly: a touch at exactly the click or view lookback
//! before a conversion, a record at exactly the allowed lateness behind the watermark, and the
//! local day of daily cells around midnight on the days clocks change (America/New_York,
//! Europe/Berlin) and in a zone without changes (Asia/Ho_Chi_Minh). Each edge is tested at,
//! one second beyond and one second inside it. The rules are in docs/attribution.md ("Edges").
//!
//! Every expected value is computed by hand in the comment beside it. Offsets used: New York is
//! UTC−5 (EST) until 2026-03-08 07:00Z, UTC−4 (EDT) until 2026-11-01 06:00Z, then UTC−5 again;
//! Berlin is UTC+1 (CET) until 2026-03-29 01:00Z, UTC+2 (CEST) until 2026-10-25 01:00Z, then
//! UTC+1; Ho Chi Minh City is UTC+7 all year.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::NaiveDate;
use chrono_tz::Tz;
use common::*;
use rust_decimal::Decimal;
use touchline_engine::*;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The record ids the linear model credits (every touch in the window) when a person whose
/// touches are `touches` (record id, kind, time) converts at `conv`, on a fresh engine.
fn credited(cfg: &EngineConfig, touches: &[(&str, &str, &str)], conv: &str) -> Vec<String> {
    let mut e = Engine::new(cfg.clone());
    for (rid, kind, at) in touches {
        assert_eq!(e.ingest(&touchpoint(rid, at, (Some("p"), None), kind, Some("c"))), Ingest::Applied);
    }
    assert_eq!(e.ingest(&conversion("cv", conv, (Some("p"), None), 1000, None)), Ingest::Applied);
    let f = e.flush();
    let linear = f.attributions.iter().find(|s| s.model == Model::Linear).unwrap();
    linear.rows().map(|r| r.touchpoint.to_owned()).filter(|t| t != DIRECT).collect()
}

/// A configuration whose account counts its days in `tz`.
fn account_in(tz: Tz) -> EngineConfig {
    let mut cfg = EngineConfig::single();
    cfg.accounts.insert(acct(), AccountSettings { default_time_zone: tz, ..AccountSettings::default() });
    cfg
}

/// The day cell each campaign's one impression landed in, for impressions `(campaign, time)`
/// of distinct people.
fn impression_days(cfg: EngineConfig, impressions: &[(&str, &str)]) -> Vec<(String, NaiveDate)> {
    let mut e = Engine::new(cfg);
    for (i, (campaign, at)) in impressions.iter().enumerate() {
        let who = format!("person-{i}");
        e.ingest(&touchpoint(&format!("imp-{i}"), at, (Some(&who), None), "impression", Some(campaign)));
    }
    let f = e.flush();
    assert!(f.metrics.iter().all(|m| m.impressions == 1), "one impression per campaign: {:?}", f.metrics);
    let mut got: Vec<(String, NaiveDate)> = f.metrics.iter().map(|m| (m.campaign_id.clone(), m.date)).collect();
    got.sort();
    got
}

fn expected(rows: &[(&str, &str)]) -> Vec<(String, NaiveDate)> {
    let mut v: Vec<(String, NaiveDate)> = rows.iter().map(|(c, d)| ((*c).to_owned(), day(d))).collect();
    v.sort();
    v
}

// ------------------------------------------------------------------------------------------------
// Lookback windows

/// Default click lookback 30 days = 2,592,000 s. Conversion 2026-11-20T10:00:00Z; 30 days
/// earlier is 2026-10-21T10:00:00Z (Oct 21 → Oct 31 is 10 days, then 20). The window includes
/// its start: the click at the edge counts, one a second (or a millisecond) earlier does not.
#[test]
fn a_click_exactly_the_click_lookback_before_the_conversion_counts() {
    let got = credited(
        &EngineConfig::single(),
        &[
            ("beyond-1s", "click", "2026-10-21T09:59:59Z"),
            ("beyond-1ms", "click", "2026-10-21T09:59:59.999Z"),
            ("edge", "click", "2026-10-21T10:00:00Z"),
            ("inside-1s", "click", "2026-10-21T10:00:01Z"),
        ],
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(got, ["edge", "inside-1s"]);
}

/// Default view lookback 1 day = 86,400 s: for the conversion at 2026-11-20T10:00:00Z the edge
/// is 2026-11-19T10:00:00Z. A click at the time of the impression beyond the edge still counts:
/// the window is the touch's class's.
#[test]
fn an_impression_exactly_the_view_lookback_before_the_conversion_counts() {
    let got = credited(
        &EngineConfig::single(),
        &[
            ("beyond-1s", "impression", "2026-11-19T09:59:59Z"),
            ("click-beyond-view", "click", "2026-11-19T09:59:59Z"),
            ("beyond-1ms", "impression", "2026-11-19T09:59:59.999Z"),
            ("edge", "impression", "2026-11-19T10:00:00Z"),
            ("inside-1s", "impression", "2026-11-19T10:00:01Z"),
        ],
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(got, ["click-beyond-view", "edge", "inside-1s"]);
}

/// The window also includes its end: a touch at the conversion's instant counts, one a
/// millisecond or a second after it does not (of either class).
#[test]
fn a_touch_at_the_conversion_instant_counts_and_a_later_one_does_not() {
    let got = credited(
        &EngineConfig::single(),
        &[
            ("click-before-1s", "click", "2026-11-20T09:59:59Z"),
            ("click-at", "click", "2026-11-20T10:00:00Z"),
            ("view-at", "impression", "2026-11-20T10:00:00Z"),
            ("click-after-1ms", "click", "2026-11-20T10:00:00.001Z"),
            ("click-after-1s", "click", "2026-11-20T10:00:01Z"),
            ("view-after-1s", "impression", "2026-11-20T10:00:01Z"),
        ],
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(got, ["click-before-1s", "click-at", "view-at"]);
}

/// An account's own lookbacks (the catalog's days × 86,400 s): click 7 days, view 2 days. For
/// the conversion at 2026-11-20T10:00:00Z the edges are 2026-11-13T10:00:00Z and
/// 2026-11-18T10:00:00Z.
#[test]
fn an_accounts_own_lookbacks_have_the_same_edges() {
    let mut cfg = EngineConfig::single();
    cfg.accounts
        .insert(acct(), AccountSettings { click_lookback_secs: 7 * 86_400, view_lookback_secs: 2 * 86_400, ..AccountSettings::default() });
    let got = credited(
        &cfg,
        &[
            ("click-beyond", "click", "2026-11-13T09:59:59Z"),
            ("click-edge", "click", "2026-11-13T10:00:00Z"),
            ("click-inside", "click", "2026-11-13T10:00:01Z"),
            ("view-beyond", "impression", "2026-11-18T09:59:59Z"),
            ("view-edge", "impression", "2026-11-18T10:00:00Z"),
            ("view-inside", "impression", "2026-11-18T10:00:01Z"),
        ],
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(got, ["click-edge", "click-inside", "view-edge", "view-inside"]);
}

/// A view lookback of 0 days turns view-through credit off: an impression at the conversion's
/// very instant is not credited (the window would otherwise be the single instant), a click at
/// that instant still is, and the impression's journey counts as one that did not convert
/// (decided at watermark 2027-03-01, past the 67 days after 2026-11-20).
#[test]
fn a_view_lookback_of_zero_credits_no_impression() {
    let mut cfg = EngineConfig::single();
    cfg.accounts.insert(acct(), AccountSettings { view_lookback_secs: 0, ..AccountSettings::default() });
    let got = credited(
        &cfg,
        &[("view-at", "impression", "2026-11-20T10:00:00Z"), ("click-at", "click", "2026-11-20T10:00:00Z")],
        "2026-11-20T10:00:00Z",
    );
    assert_eq!(got, ["click-at"]);

    let mut e = Engine::new(cfg);
    e.ingest(&touchpoint("view", "2026-11-20T10:00:00Z", (Some("v"), None), "impression", Some("c")));
    e.ingest(&conversion("v-cv", "2026-11-20T10:00:00Z", (Some("v"), None), 1000, None));
    let mut journeys = e.flush().journeys;
    e.advance_watermark(ts("2027-03-01T00:00:00Z"));
    journeys.extend(e.flush().journeys);
    let counts: Vec<(&str, u64, u64)> = journeys.iter().map(|j| (j.channels.as_str(), j.conversions, j.non_conversions)).collect();
    assert_eq!(counts, [("", 1, 0), ("paid_social", 0, 1)]);
}

/// The journeys use the same edge as the models: a click exactly 30 days before a conversion
/// is on the converting journey and never counted as a journey that did not convert; a click
/// a second older is not on it and, once decided, is a non-converting journey of its own day.
/// Person a: click 2026-10-21T10:00:00Z, conversion 2026-11-20T10:00:00Z (the edge); person b:
/// click 2026-10-21T09:59:59Z, conversion 2026-11-20T10:00:00Z. At watermark 2027-03-01 the
/// touch cutoff is 7 days of lateness and 30 of lookback earlier, 2027-01-23: both clicks are
/// judged, and b's run, closed 30 days after its click (2026-11-20T09:59:59Z), is counted.
#[test]
fn the_journeys_use_the_same_lookback_edge() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("a-click", "2026-10-21T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&conversion("a-cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None));
    e.ingest(&touchpoint("b-click", "2026-10-21T09:59:59Z", (Some("b"), None), "click", Some("c")));
    e.ingest(&conversion("b-cv", "2026-11-20T10:00:00Z", (Some("b"), None), 1000, None));
    let mut journeys = e.flush().journeys;
    e.advance_watermark(ts("2027-03-01T00:00:00Z"));
    journeys.extend(e.flush().journeys);
    let with_click: Vec<(NaiveDate, u64, u64)> =
        journeys.iter().filter(|j| j.channels == "paid_social").map(|j| (j.date, j.conversions, j.non_conversions)).collect();
    assert_eq!(with_click, [(day("2026-11-20"), 1, 0), (day("2026-10-21"), 0, 1)]);
}

/// A run that did not convert is counted once the touch cutoff (watermark − 7 days of lateness
/// − 30 days of lookback) has passed its last touch by the 30-day click lookback: 67 days after
/// it. Click at 2026-10-01T23:00:00Z: counted at watermark 2026-12-07T23:00:00Z (Oct 1 → Oct 31
/// is 30 days, then 37 to Dec 7), not a second earlier.
#[test]
fn a_run_that_did_not_convert_is_counted_exactly_67_days_after_its_last_touch() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("t", "2026-10-01T23:00:00Z", (Some("p"), None), "click", Some("c")));
    e.flush();
    e.advance_watermark(ts("2026-12-07T22:59:59Z"));
    assert!(e.flush().journeys.is_empty());
    e.advance_watermark(ts("2026-12-07T23:00:00Z"));
    let got: Vec<(NaiveDate, String, u64, u64)> =
        e.flush().journeys.into_iter().map(|j| (j.date, j.channels, j.conversions, j.non_conversions)).collect();
    assert_eq!(got, [(day("2026-10-01"), "paid_social".to_owned(), 0, 1)]);
}

// ------------------------------------------------------------------------------------------------
// Allowed lateness

/// Default allowed lateness 7 days = 604,800 s. Watermark 2026-11-20T00:00:00Z: the edge is
/// 2026-11-13T00:00:00Z. A record exactly that old is applied; a second (or a millisecond)
/// older is too late, whatever its kind.
#[test]
fn a_record_exactly_the_allowed_lateness_behind_the_watermark_is_applied() {
    let mut e = Engine::new(EngineConfig::single());
    e.advance_watermark(ts("2026-11-20T00:00:00Z"));
    let at = |s: &str, rid: &str, code: &str| -> Vec<touchline_model::Record> {
        let who = Some(rid);
        vec![
            touchpoint(&format!("{rid}-tp"), s, (who, None), "click", Some("c")),
            touchpoint(&format!("{rid}-imp"), s, (who, None), "impression", Some("c")),
            conversion(&format!("{rid}-cv"), s, (who, None), 1000, Some(&format!("{rid}-order"))),
            rec(&format!("{rid}-ev"), ts(s), who, None, event_body("page", None, None, Some("c"), None)),
            rec(&format!("{rid}-lc"), ts(s), who, None, link_click(Some(code), false, Some("c"))),
        ]
    };
    for r in at("2026-11-13T00:00:00Z", "edge", "code-edge").iter().chain(&at("2026-11-13T00:00:01Z", "inside", "code-inside")) {
        assert_eq!(e.ingest(r), Ingest::Applied, "{}", r.meta.record_id);
    }
    for r in at("2026-11-12T23:59:59Z", "beyond", "code-beyond").iter().chain(&at("2026-11-12T23:59:59.999Z", "beyond-ms", "code-ms")) {
        assert_eq!(e.ingest(r), Ingest::TooLate, "{}", r.meta.record_id);
    }
    assert_eq!(e.counters().too_late, 10);
}

/// What was accepted at the edge stays deduplicated after the watermark moves: the entries a
/// retry is checked against are kept while the record itself would be accepted. Records at
/// 2026-11-13T00:00:00Z, then the watermark to 2026-11-20T00:00:00Z (edge = their time), then
/// the same records again: duplicates, and no count changes.
#[test]
fn a_retry_of_a_record_at_the_lateness_edge_is_still_a_duplicate() {
    let edge = "2026-11-13T00:00:00Z";
    let records = [
        touchpoint("tp", edge, (Some("p"), None), "click", Some("c")),
        conversion("cv", edge, (Some("p"), None), 1000, Some("order-1")),
        rec("ev", ts(edge), Some("p"), None, event_body("page", None, None, Some("c"), None)),
        rec("lc", ts(edge), Some("p"), None, link_click(Some("code"), false, Some("c"))),
    ];
    let mut e = Engine::new(EngineConfig::single());
    for r in &records {
        assert_eq!(e.ingest(r), Ingest::Applied);
    }
    let f = e.flush();
    let c = f.metrics.iter().find(|m| m.campaign_id == "c").unwrap();
    // tp and lc are clicks, ev an engagement; every touch is of campaign c, which gets cv.
    assert_eq!((c.clicks, c.engagements, c.conversions), (2, 1, Decimal::ONE));
    e.advance_watermark(ts("2026-11-20T00:00:00Z"));
    for r in &records {
        assert_eq!(e.ingest(r), Ingest::Duplicate, "{}", r.meta.record_id);
    }
    let f = e.flush();
    assert!(f.metrics.is_empty() && f.attributions.is_empty() && f.link_clicks.is_empty(), "{f:?}");
}

/// The state keeps what a conversion at the lateness edge can credit. Watermark
/// 2026-11-20T00:00:00Z: conversions are accepted back to 2026-11-13T00:00:00Z, and touches
/// are kept back to 30 days before that, 2026-10-14T00:00:00Z (Oct 14 → Oct 31 is 17 days,
/// then 13). The click at that instant stays and is credited; the one a second older leaves.
#[test]
fn a_conversion_at_the_lateness_edge_credits_a_click_at_its_lookback_edge() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("gone", "2026-10-13T23:59:59Z", (Some("p"), None), "click", Some("c")));
    e.ingest(&touchpoint("kept", "2026-10-14T00:00:00Z", (Some("p"), None), "click", Some("c")));
    e.flush();
    e.advance_watermark(ts("2026-11-20T00:00:00Z"));
    assert_eq!(e.counters().evicted_touches, 1);
    assert_eq!(e.ingest(&conversion("cv", "2026-11-13T00:00:00Z", (Some("p"), None), 1000, None)), Ingest::Applied);
    let f = e.flush();
    let linear = f.attributions.iter().find(|s| s.model == Model::Linear).unwrap();
    assert_eq!(linear.rows().map(|r| r.touchpoint).collect::<Vec<_>>(), ["kept"]);
}

/// Spend is judged by its `date`, not its time: the cells of a date are dropped two days (the
/// time-zone margin) before the lateness cutoff, so a report for such a date is refused
/// rather than written over a row it no longer knows. Watermark 2026-11-20T23:59:59Z − 7 days −
/// 2 days = 2026-11-11T23:59:59Z: spend dated 2026-11-11 is applied, 2026-11-10 is too late.
/// One second later the watermark is 2026-11-21T00:00:00Z, the first day kept 2026-11-12.
#[test]
fn spend_is_too_late_by_its_date() {
    let mut e = Engine::new(EngineConfig::single());
    e.advance_watermark(ts("2026-11-20T23:59:59Z"));
    let report = |rid: &str, date: &str, source: &str| spend(rid, "2026-11-20T12:00:00Z", day(date), "c", source, 1000);
    assert_eq!(e.ingest(&report("s1", "2026-11-10", "meta")), Ingest::TooLate);
    assert_eq!(e.ingest(&report("s2", "2026-11-11", "meta")), Ingest::Applied);
    e.advance_watermark(ts("2026-11-21T00:00:00Z"));
    assert_eq!(e.ingest(&report("s3", "2026-11-11", "google")), Ingest::TooLate);
    assert_eq!(e.ingest(&report("s4", "2026-11-12", "google")), Ingest::Applied);
}

// ------------------------------------------------------------------------------------------------
// Daily cells across clock changes

/// America/New_York, the account's zone. Spring forward: 2026-03-08 02:00 EST (07:00Z) becomes
/// 03:00 EDT, so local 2026-03-08 runs 05:00Z to 04:00Z next day (23 hours). Fall back:
/// 2026-11-01 02:00 EDT (06:00Z) becomes 01:00 EST, so local 2026-11-01 runs 04:00Z to 05:00Z
/// next day (25 hours).
#[test]
fn new_york_days_across_both_clock_changes() {
    let got = impression_days(
        account_in(chrono_tz::America::New_York),
        &[
            ("m1", "2026-03-08T04:59:59Z"), // 2026-03-07 23:59:59 EST
            ("m2", "2026-03-08T05:00:00Z"), // 2026-03-08 00:00:00 EST
            ("m3", "2026-03-08T06:59:59Z"), // 2026-03-08 01:59:59 EST, the last second before the jump
            ("m4", "2026-03-08T07:00:00Z"), // 2026-03-08 03:00:00 EDT
            ("m5", "2026-03-09T03:59:59Z"), // 2026-03-08 23:59:59 EDT
            ("m6", "2026-03-09T04:00:00Z"), // 2026-03-09 00:00:00 EDT
            ("n1", "2026-11-01T03:59:59Z"), // 2026-10-31 23:59:59 EDT
            ("n2", "2026-11-01T04:00:00Z"), // 2026-11-01 00:00:00 EDT
            ("n3", "2026-11-01T05:30:00Z"), // 2026-11-01 01:30:00 EDT, the first time
            ("n4", "2026-11-01T06:30:00Z"), // 2026-11-01 01:30:00 EST, the second time
            ("n5", "2026-11-02T04:59:59Z"), // 2026-11-01 23:59:59 EST
            ("n6", "2026-11-02T05:00:00Z"), // 2026-11-02 00:00:00 EST
        ],
    );
    let want = expected(&[
        ("m1", "2026-03-07"),
        ("m2", "2026-03-08"),
        ("m3", "2026-03-08"),
        ("m4", "2026-03-08"),
        ("m5", "2026-03-08"),
        ("m6", "2026-03-09"),
        ("n1", "2026-10-31"),
        ("n2", "2026-11-01"),
        ("n3", "2026-11-01"),
        ("n4", "2026-11-01"),
        ("n5", "2026-11-01"),
        ("n6", "2026-11-02"),
    ]);
    assert_eq!(got, want);
}

/// Europe/Berlin, the campaigns' zone (the account's, New York, must not apply). Spring
/// forward: 2026-03-29 02:00 CET (01:00Z) becomes 03:00 CEST, so local 2026-03-29 runs
/// 2026-03-28 23:00Z to 22:00Z (23 hours). Fall back: 2026-10-25 03:00 CEST (01:00Z) becomes
/// 02:00 CET, so local 2026-10-25 runs 2026-10-24 22:00Z to 23:00Z (25 hours). In New York m2
/// (2026-03-28 19:00 EDT) and o6 (2026-10-25 19:00 EDT) would fall a day earlier.
#[test]
fn berlin_days_across_both_clock_changes() {
    let mut cfg = account_in(chrono_tz::America::New_York);
    let rows = [
        ("m1", "2026-03-28T22:59:59Z", "2026-03-28"), // 23:59:59 CET
        ("m2", "2026-03-28T23:00:00Z", "2026-03-29"), // 00:00:00 CET
        ("m3", "2026-03-29T00:59:59Z", "2026-03-29"), // 01:59:59 CET, the last second before the jump
        ("m4", "2026-03-29T01:00:00Z", "2026-03-29"), // 03:00:00 CEST
        ("m5", "2026-03-29T21:59:59Z", "2026-03-29"), // 23:59:59 CEST
        ("m6", "2026-03-29T22:00:00Z", "2026-03-30"), // 00:00:00 CEST
        ("o1", "2026-10-24T21:59:59Z", "2026-10-24"), // 23:59:59 CEST
        ("o2", "2026-10-24T22:00:00Z", "2026-10-25"), // 00:00:00 CEST
        ("o3", "2026-10-25T00:30:00Z", "2026-10-25"), // 02:30:00 CEST, the first time
        ("o4", "2026-10-25T01:30:00Z", "2026-10-25"), // 02:30:00 CET, the second time
        ("o5", "2026-10-25T22:59:59Z", "2026-10-25"), // 23:59:59 CET
        ("o6", "2026-10-25T23:00:00Z", "2026-10-26"), // 00:00:00 CET
    ];
    for (campaign, _, _) in rows {
        assert!(cfg.catalog.set_time_zone(acct(), campaign, "Europe/Berlin"));
    }
    let got = impression_days(cfg, &rows.map(|(c, at, _)| (c, at)));
    assert_eq!(got, expected(&rows.map(|(c, _, d)| (c, d))));
}

/// Asia/Ho_Chi_Minh is UTC+7 all year: local midnight is 17:00Z the day before, on the days
/// New York and Berlin change their clocks as on any other.
#[test]
fn ho_chi_minh_days_do_not_move_with_other_zones_clock_changes() {
    let got = impression_days(
        account_in(chrono_tz::Asia::Ho_Chi_Minh),
        &[
            ("h1", "2026-03-07T16:59:59Z"), // 2026-03-07 23:59:59 +07
            ("h2", "2026-03-07T17:00:00Z"), // 2026-03-08 00:00:00 +07
            ("h3", "2026-03-08T07:00:00Z"), // 2026-03-08 14:00:00 +07 (New York's jump)
            ("h4", "2026-03-08T16:59:59Z"), // 2026-03-08 23:59:59 +07
            ("h5", "2026-03-08T17:00:00Z"), // 2026-03-09 00:00:00 +07
            ("h6", "2026-03-28T23:00:00Z"), // 2026-03-29 06:00:00 +07 (Berlin's midnight)
            ("h7", "2026-10-31T16:59:59Z"), // 2026-10-31 23:59:59 +07
            ("h8", "2026-10-31T17:00:00Z"), // 2026-11-01 00:00:00 +07
            ("h9", "2026-11-01T16:59:59Z"), // 2026-11-01 23:59:59 +07
            ("hA", "2026-11-01T17:00:00Z"), // 2026-11-02 00:00:00 +07
        ],
    );
    let want = expected(&[
        ("h1", "2026-03-07"),
        ("h2", "2026-03-08"),
        ("h3", "2026-03-08"),
        ("h4", "2026-03-08"),
        ("h5", "2026-03-09"),
        ("h6", "2026-03-29"),
        ("h7", "2026-10-31"),
        ("h8", "2026-11-01"),
        ("h9", "2026-11-01"),
        ("hA", "2026-11-02"),
    ]);
    assert_eq!(got, want);
}

/// A conversion is credited on its own local day, in the zone of that day (not of the touch's
/// day). New York: a click 2026-10-31 12:00 EDT (16:00Z) and a conversion 2026-11-02T04:30Z =
/// 2026-11-01 23:30 EST (at the click's EDT offset it would be 2026-11-02 00:30); a click
/// 2026-03-07 12:00 EST (17:00Z) and a conversion 2026-03-09T04:30Z = 2026-03-09 00:30 EDT (at
/// EST it would be 2026-03-08 23:30).
#[test]
fn a_conversion_across_a_clock_change_counts_on_its_local_day() {
    let mut e = Engine::new(account_in(chrono_tz::America::New_York));
    e.ingest(&touchpoint("fall-click", "2026-10-31T16:00:00Z", (Some("a"), None), "click", Some("fall")));
    e.ingest(&conversion("fall-cv", "2026-11-02T04:30:00Z", (Some("a"), None), 1000, None));
    e.ingest(&touchpoint("spring-click", "2026-03-07T17:00:00Z", (Some("b"), None), "click", Some("spring")));
    e.ingest(&conversion("spring-cv", "2026-03-09T04:30:00Z", (Some("b"), None), 2000, None));
    let f = e.flush();
    let mut cells: Vec<(String, NaiveDate, u64, Decimal, Decimal)> =
        f.metrics.iter().map(|m| (m.campaign_id.clone(), m.date, m.clicks, m.conversions, m.revenue)).collect();
    cells.sort();
    assert_eq!(
        cells,
        [
            ("fall".to_owned(), day("2026-10-31"), 1, Decimal::ZERO, Decimal::ZERO),
            ("fall".to_owned(), day("2026-11-01"), 0, Decimal::ONE, Decimal::new(1000, 2)),
            ("spring".to_owned(), day("2026-03-07"), 1, Decimal::ZERO, Decimal::ZERO),
            ("spring".to_owned(), day("2026-03-09"), 0, Decimal::ONE, Decimal::new(2000, 2)),
        ]
    );
}

/// A lookback day is 86,400 s of elapsed time, not a local calendar day: across a clock change
/// its edge falls an hour off the touch's wall-clock time.
/// - New York, view lookback 1 day, impression 2026-10-31 12:00 EDT (16:00Z). 2026-11-01 11:00
///   EST (16:00Z) is 86,400 s later: counts. 2026-11-01 12:00 EST (17:00Z), the same wall-clock
///   time a local day later, is 90,000 s: does not.
/// - New York, impression 2026-03-07 12:00 EST (17:00Z). 2026-03-08 12:00 EDT (16:00Z) is
///   82,800 s later: counts; 13:00 EDT (17:00Z) is 86,400 s: counts; 13:00:01 EDT: does not.
/// - Berlin, click lookback 30 days, click 2026-10-10 12:00 CEST (10:00Z). 2026-11-09 11:00 CET
///   (10:00Z) is 30 × 86,400 s later (Oct 10 → Oct 31 is 21 days, then 9): counts; 12:00 CET
///   (11:00Z), 30 local days later, is an hour more: does not.
#[test]
fn a_lookback_across_a_clock_change_counts_elapsed_time() {
    let ny = account_in(chrono_tz::America::New_York);
    let berlin = account_in(chrono_tz::Europe::Berlin);
    let cases: [(&EngineConfig, &str, &str, &str, bool); 7] = [
        (&ny, "impression", "2026-10-31T16:00:00Z", "2026-11-01T16:00:00Z", true),
        (&ny, "impression", "2026-10-31T16:00:00Z", "2026-11-01T17:00:00Z", false),
        (&ny, "impression", "2026-03-07T17:00:00Z", "2026-03-08T16:00:00Z", true),
        (&ny, "impression", "2026-03-07T17:00:00Z", "2026-03-08T17:00:00Z", true),
        (&ny, "impression", "2026-03-07T17:00:00Z", "2026-03-08T17:00:01Z", false),
        (&berlin, "click", "2026-10-10T10:00:00Z", "2026-11-09T10:00:00Z", true),
        (&berlin, "click", "2026-10-10T10:00:00Z", "2026-11-09T11:00:00Z", false),
    ];
    for (cfg, kind, touch, conv, counts) in cases {
        let got = credited(cfg, &[("t", kind, touch)], conv);
        assert_eq!(!got.is_empty(), counts, "{kind} at {touch}, conversion at {conv}");
    }
}
