//! Scenario tests: identity stitching (same and cross partition), sessionization boundaries,
//! daily metrics in a campaign time zone, dedup, lookback windows, lateness, snapshots.
#![allow(clippy::unwrap_used, clippy::manual_is_multiple_of)]

mod common;

use chrono::{Duration, NaiveDate};
use common::*;
use rust_decimal::Decimal;
use touchline_engine::*;
use touchline_model::partition_for;

fn set(f: &Flush, model: Model) -> Vec<&AttributionSet> {
    f.attributions.iter().filter(|s| s.model == model).collect()
}

#[test]
fn anonymous_touches_credit_a_later_server_side_conversion() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("tp1", "2026-11-10T10:00:00Z", (Some("anon-1"), None), "click", Some("camp-1")));
    e.ingest(&identify("id1", "2026-11-11T10:00:00Z", "anon-1", "cust-1"));
    e.ingest(&conversion("cv1", "2026-11-12T10:00:00Z", (None, Some("cust-1")), 5000, Some("o-1")));
    let f = e.flush();
    assert_eq!(f.attributions.len(), Model::PER_CONVERSION.len());
    for s in &f.attributions {
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s.row(0).unwrap().touchpoint, "tp1");
        assert_eq!(s.row(0).unwrap().attributed_revenue, Decimal::new(5000, 2));
        assert_eq!(s.version, 1);
        assert_eq!(s.conversion_key, "order:purchase:o-1");
    }
    assert!(f.transfers.is_empty());
}

#[test]
fn identify_after_the_conversion_re_attributes_it_with_a_new_version() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&conversion("cv1", "2026-11-12T10:00:00Z", (None, Some("cust-1")), 5000, None));
    let f1 = e.flush();
    assert!(f1.attributions.iter().all(|s| s.row(0).unwrap().touchpoint == DIRECT && s.version == 1));
    e.ingest(&touchpoint("tp1", "2026-11-10T10:00:00Z", (Some("anon-1"), None), "click", Some("camp-1")));
    assert!(e.flush().attributions.is_empty(), "touch of an unknown anonymous id changes nothing yet");
    e.ingest(&identify("id1", "2026-11-11T10:00:00Z", "anon-1", "cust-1"));
    let f2 = e.flush();
    assert_eq!(f2.attributions.len(), Model::PER_CONVERSION.len());
    assert!(f2.attributions.iter().all(|s| s.row(0).unwrap().touchpoint == "tp1" && s.version == 2));
    // Replaying the same records changes nothing.
    e.ingest(&identify("id1", "2026-11-11T10:00:00Z", "anon-1", "cust-1"));
    e.ingest(&touchpoint("tp1", "2026-11-10T10:00:00Z", (Some("anon-1"), None), "click", Some("camp-1")));
    assert!(e.flush().attributions.is_empty());
}

/// Finds an anonymous id and a customer id that live on different partitions of `n`.
fn split_pair(n: u32) -> (String, String, u32, u32) {
    let a = "anon-x".to_owned();
    let pa = partition_for(format!("{}:{a}", acct()).as_bytes(), n);
    for i in 0..1000 {
        let c = format!("cust-{i}");
        let pc = partition_for(format!("{}:{c}", acct()).as_bytes(), n);
        if pc != pa {
            return (a, c, pa, pc);
        }
    }
    unreachable!("no split pair")
}

#[test]
fn cross_partition_identify_emits_re_key_records_to_the_customer_partition() {
    let n = 8;
    let (anon, cust, pa, pc) = split_pair(n);
    let cfg = |p| EngineConfig { partition: p, partitions: n, ..EngineConfig::default() };
    let mut ea = Engine::new(cfg(pa));
    let mut ec = Engine::new(cfg(pc));

    // Customer partition: a server-side conversion with only the customer id.
    let conv = conversion("cv1", "2026-11-12T10:00:00Z", (None, Some(&cust)), 1000, None);
    assert_eq!(partition_for(conv.partition_key().as_bytes(), n), pc);
    ec.ingest(&conv);
    assert_eq!(ec.flush().attributions[0].row(0).unwrap().touchpoint, DIRECT);

    // Anonymous partition: touches, then identify.
    let tp = touchpoint("tp1", "2026-11-10T10:00:00Z", (Some(&anon), None), "click", Some("camp-1"));
    let idf = identify("id1", "2026-11-11T10:00:00Z", &anon, &cust);
    assert_eq!(partition_for(tp.partition_key().as_bytes(), n), pa);
    assert_eq!(partition_for(idf.partition_key().as_bytes(), n), pa);
    ea.ingest(&tp);
    ea.ingest(&idf);
    let fa = ea.flush();
    assert_eq!(fa.transfers.len(), 1);
    let t = &fa.transfers[0];
    assert_eq!(t.topic(), "touchline.identities");
    assert_eq!(partition_for(t.partition_key().as_bytes(), n), pc);
    assert_eq!(t.touches.len(), 1);
    // The impression/click was counted on the anonymous partition only.
    assert_eq!(fa.metrics.iter().map(|m| m.clicks).sum::<u64>(), 1);

    // Deliver it as bytes, as the bus would.
    assert_eq!(ec.ingest_identities_message(&t.to_json()).unwrap(), Ingest::Applied);
    let fc = ec.flush();
    let lt = set(&fc, Model::LastTouch);
    assert_eq!(lt.len(), 1);
    assert_eq!(lt[0].row(0).unwrap().touchpoint, "tp1");
    assert_eq!(lt[0].version, 2);
    // Carried touches are not counted again in the customer partition's click metrics.
    assert_eq!(fc.metrics.iter().map(|m| m.clicks).sum::<u64>(), 0);
    // Conversion credit lands on the campaign, on the customer's partition.
    assert_eq!(fc.metrics.iter().map(|m| m.conversions).sum::<Decimal>(), Decimal::ONE);

    // A later anonymous-only touch on the anonymous partition is forwarded too.
    ea.ingest(&touchpoint("tp2", "2026-11-11T12:00:00Z", (Some(&anon), None), "click", Some("camp-2")));
    let fa2 = ea.flush();
    assert_eq!(fa2.transfers.len(), 1);
    assert_eq!(fa2.transfers[0].touches[0].id.as_str(), "tp2");
    ec.ingest_transfer(&fa2.transfers[0]);
    let fc2 = ec.flush();
    assert_eq!(set(&fc2, Model::LastTouch)[0].row(0).unwrap().touchpoint, "tp2");
    assert_eq!(set(&fc2, Model::FirstTouch).len(), 0, "first touch unchanged, not re-emitted");
    // Re-delivery is harmless.
    assert_eq!(ec.ingest_transfer(&fa2.transfers[0]), Ingest::Duplicate);
    assert!(ec.flush().attributions.is_empty());
}

fn derived_rows(f: &Flush) -> Vec<SessionRow> {
    f.sessions
        .iter()
        .filter_map(|c| match c {
            SessionChange::Upsert(r) => Some(r.clone()),
            SessionChange::Delete { .. } => None,
        })
        .collect()
}

#[test]
fn inactivity_of_29_59_continues_and_30_00_splits() {
    let t0 = ts("2026-11-20T08:00:00Z");
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&event("e1", t0, "a", None));
    e.ingest(&event("e2", t0 + Duration::seconds(29 * 60 + 59), "a", None));
    let rows = derived_rows(&e.flush());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_count, 2);
    assert_eq!(rows[0].duration_secs, 29 * 60 + 59);

    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&event("e1", t0, "a", None));
    e.ingest(&event("e2", t0 + Duration::seconds(30 * 60), "a", None));
    let rows = derived_rows(&e.flush());
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.derived && r.event_count == 1));
}

#[test]
fn utm_change_starts_a_new_session_and_plain_pages_do_not() {
    let t0 = ts("2026-11-20T08:00:00Z");
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&event("e1", t0, "a", Some(("google", "cpc", "spring"))));
    e.ingest(&event("e2", t0 + Duration::minutes(5), "a", None));
    e.ingest(&event("e3", t0 + Duration::minutes(10), "a", Some(("google", "cpc", "spring"))));
    e.ingest(&event("e4", t0 + Duration::minutes(15), "a", Some(("facebook", "social", "spring"))));
    let mut rows = derived_rows(&e.flush());
    rows.sort_by_key(|r| r.started_at);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0].event_count, 3);
    assert_eq!(rows[0].utm_source.as_deref(), Some("google"));
    assert_eq!(rows[0].landing_page.as_deref(), Some("https://shop.example/p"));
    assert_eq!(rows[1].utm_source.as_deref(), Some("facebook"));
}

#[test]
fn sessions_are_capped_at_24_hours() {
    let t0 = ts("2026-11-20T00:00:00Z");
    let mut e = Engine::new(EngineConfig::single());
    // An event every 20 minutes for 25 hours: no inactivity split, so the cap splits at 24 h.
    for i in 0..=75 {
        e.ingest(&event(&format!("e{i:03}"), t0 + Duration::minutes(20 * i), "a", None));
    }
    let mut rows = derived_rows(&e.flush());
    rows.sort_by_key(|r| r.started_at);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].event_count, 72, "events at 0..=23h40 (24h itself starts the next)");
    assert_eq!(rows[1].started_at, t0 + Duration::hours(24));
}

#[test]
fn explicit_sessions_are_respected_not_duplicated() {
    let t0 = ts("2026-11-20T08:00:00Z");
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&rec("s1", t0, Some("a"), None, session_body("S-1", t0, None, Some("newsletter"))));
    for i in 0..3 {
        let at = t0 + Duration::minutes(40 * i); // gaps over 30 min: the client's session wins
        e.ingest(&rec(&format!("e{i}"), at, Some("a"), None, event_body("page", Some("S-1"), None, None, Some("https://x/"))));
    }
    e.ingest(&rec(
        "s1b",
        t0 + Duration::hours(2),
        Some("a"),
        None,
        session_body("S-1", t0, Some(t0 + Duration::hours(2)), Some("newsletter")),
    ));
    let f = e.flush();
    let rows = derived_rows(&f);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(!rows[0].derived);
    assert_eq!(rows[0].session_id, "S-1");
    assert_eq!(rows[0].page_count, 3);
    assert_eq!(rows[0].duration_secs, 7200);
    assert_eq!(rows[0].utm_source.as_deref(), Some("newsletter"));
}

#[test]
fn a_late_event_merges_two_derived_sessions_and_deletes_one() {
    let t0 = ts("2026-11-20T08:00:00Z");
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&event("e1", t0, "a", None));
    e.ingest(&event("e3", t0 + Duration::minutes(40), "a", None));
    assert_eq!(derived_rows(&e.flush()).len(), 2);
    e.ingest(&event("e2", t0 + Duration::minutes(20), "a", None));
    let f = e.flush();
    let deletes: Vec<_> = f.sessions.iter().filter(|c| matches!(c, SessionChange::Delete { .. })).collect();
    assert_eq!(deletes.len(), 1);
    let ups = derived_rows(&f);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].event_count, 3);
}

#[test]
fn daily_metrics_use_the_campaign_time_zone() {
    let mut cfg = EngineConfig::single();
    assert!(cfg.catalog.set_time_zone(acct(), "camp-vn", "Asia/Ho_Chi_Minh"));
    let mut e = Engine::new(cfg);
    e.ingest(&touchpoint("imp1", "2026-11-20T18:30:00Z", (Some("a"), None), "impression", Some("camp-vn")));
    e.ingest(&touchpoint("imp2", "2026-11-20T18:30:00Z", (Some("b"), None), "impression", Some("camp-utc")));
    let f = e.flush();
    let vn = f.metrics.iter().find(|m| m.campaign_id == "camp-vn").unwrap();
    assert_eq!(vn.date, NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
    assert_eq!(vn.impressions, 1);
    assert_eq!(vn.reach, 1);
    let utc = f.metrics.iter().find(|m| m.campaign_id == "camp-utc").unwrap();
    assert_eq!(utc.date, NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
    let r = vn.report();
    assert_eq!(r.ctr, Some(0.0));
    assert_eq!(r.cpc, None, "no clicks");
    assert_eq!(r.roas, None, "no cost");
    assert_eq!(r.cpa, None, "no conversions");
    assert_eq!(r.cpm, Some(Decimal::ZERO));
    assert_eq!(r.frequency, Some(1.0));
}

#[test]
fn derived_metrics_are_none_when_nothing_was_seen() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&spend("sp1", "2026-11-21T00:00:00Z", NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(), "camp-1", "meta", 1000));
    let r = e.flush().metrics[0].report();
    assert_eq!((r.ctr, r.cpc, r.cpm, r.cpa, r.frequency), (None, None, None, None, None));
    assert_eq!(r.roas, Some(0.0));
    assert_eq!(r.cost, Decimal::new(1000, 2));
}

#[test]
fn metrics_count_clicks_reach_engagements_sessions_conversions_and_cost() {
    let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("i1", "2026-11-20T08:00:00Z", (Some("a"), None), "impression", Some("c")));
    e.ingest(&touchpoint("i2", "2026-11-20T08:01:00Z", (Some("a"), None), "impression", Some("c")));
    e.ingest(&touchpoint("i3", "2026-11-20T08:02:00Z", (Some("b"), None), "impression", Some("c")));
    e.ingest(&touchpoint("k1", "2026-11-20T08:03:00Z", (Some("b"), None), "click", Some("c")));
    e.ingest(&touchpoint("k1", "2026-11-20T08:03:00Z", (Some("b"), None), "click", Some("c"))); // SDK retry
    e.ingest(&touchpoint("x1", "2026-11-20T08:04:00Z", (Some("b"), None), "cta", Some("c")));
    e.ingest(&rec("ev1", ts("2026-11-20T08:05:00Z"), Some("b"), None, event_body("page", None, None, Some("c"), None)));
    e.ingest(&conversion("cv1", "2026-11-20T09:00:00Z", (Some("b"), None), 12000, Some("o1")));
    e.ingest(&conversion("cv1-dup", "2026-11-20T09:00:30Z", (Some("b"), None), 12000, Some("o1"))); // same order
    e.ingest(&spend("sp1", "2026-11-20T10:00:00Z", day, "c", "meta", 3000));
    e.ingest(&spend("sp2", "2026-11-20T11:00:00Z", day, "c", "meta", 4000)); // replaces sp1
    e.ingest(&spend("sp3", "2026-11-20T11:00:00Z", day, "c", "google", 1000)); // another source
    e.ingest(&spend("sp1", "2026-11-20T10:00:00Z", day, "c", "meta", 3000)); // old report again: ignored
    let f = e.flush();
    let m = f.metrics.iter().find(|m| m.campaign_id == "c" && m.date == day).unwrap();
    assert_eq!((m.impressions, m.clicks, m.reach, m.engagements), (3, 1, 2, 2));
    assert_eq!(m.sessions, 1, "the event with campaign c starts a derived session");
    assert_eq!(m.conversions, Decimal::ONE);
    assert_eq!(m.revenue, Decimal::new(12000, 2));
    assert_eq!(m.cost, Decimal::new(5000, 2));
    let r = m.report();
    assert_eq!(r.cpc, Some(Decimal::new(50, 0)));
    assert_eq!(r.roas, Some(2.4), "120 / 50");
    assert_eq!(r.frequency, Some(1.5));
    assert_eq!(f.attributions.iter().filter(|s| s.model == Model::Linear).count(), 1, "one conversion for order o1");
}

#[test]
fn lookback_windows_per_class() {
    // Ages at the conversion (2026-11-20T10:00Z): 2 days, 31 days (Oct 20 → 31 is 11, then
    // 20), 29 days, 12 hours, and a second after it. The exact edges are in tests/boundaries.rs.
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("view-2d", "2026-11-18T10:00:00Z", (Some("a"), None), "impression", Some("c")));
    e.ingest(&touchpoint("click-31d", "2026-10-20T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&touchpoint("click-29d", "2026-10-22T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&touchpoint("view-12h", "2026-11-19T22:00:00Z", (Some("a"), None), "impression", Some("c")));
    e.ingest(&touchpoint("after", "2026-11-20T10:00:01Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 100, None));
    let f = e.flush();
    let lin = set(&f, Model::Linear)[0];
    let ids: Vec<&str> = lin.rows().map(|r| r.touchpoint).collect();
    assert_eq!(ids, ["click-29d", "view-12h"]);
}

#[test]
fn ties_are_ordered_by_record_id() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("b", "2026-11-20T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&touchpoint("a", "2026-11-20T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&conversion("cv", "2026-11-20T11:00:00Z", (Some("a"), None), 100, None));
    let f = e.flush();
    assert_eq!(set(&f, Model::FirstTouch)[0].row(0).unwrap().touchpoint, "a");
    assert_eq!(set(&f, Model::LastTouch)[0].row(0).unwrap().touchpoint, "b");
}

#[test]
fn default_model_of_the_account_drives_metric_credit() {
    let mut cfg = EngineConfig::single();
    cfg.accounts.insert(acct(), AccountSettings { default_model: Model::Linear, ..AccountSettings::default() });
    let mut e = Engine::new(cfg);
    e.ingest(&touchpoint("t1", "2026-11-20T08:00:00Z", (Some("a"), None), "click", Some("c1")));
    e.ingest(&touchpoint("t2", "2026-11-20T09:00:00Z", (Some("a"), None), "click", Some("c2")));
    e.ingest(&conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None));
    let f = e.flush();
    for c in ["c1", "c2"] {
        let m = f.metrics.iter().find(|m| m.campaign_id == c).unwrap();
        assert_eq!(m.conversions, Decimal::new(5, 1));
        assert_eq!(m.revenue, Decimal::new(500, 2));
    }
}

#[test]
fn watermark_refuses_too_late_records_and_evicts_state() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("old", "2026-09-01T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.ingest(&touchpoint("new", "2026-11-19T10:00:00Z", (Some("a"), None), "click", Some("c")));
    e.flush();
    e.advance_watermark(ts("2026-11-20T00:00:00Z"));
    assert_eq!(e.counters().evicted_touches, 1);
    assert_eq!(e.ingest(&touchpoint("late", "2026-11-01T10:00:00Z", (Some("a"), None), "click", Some("c"))), Ingest::TooLate);
    assert_eq!(e.counters().too_late, 1);
    assert_eq!(e.ingest(&touchpoint("ok", "2026-11-15T10:00:00Z", (Some("a"), None), "click", Some("c"))), Ingest::Applied);
}

#[test]
fn snapshot_restore_round_trip_and_version_check() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("t1", "2026-11-20T08:00:00Z", (Some("a"), None), "click", Some("c1")));
    e.ingest(&conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None));
    let snap = e.snapshot();
    let mut r = Engine::restore(EngineConfig::single(), &snap).unwrap();
    let mut r2 = Engine::restore(EngineConfig::single(), &r.snapshot()).unwrap();
    let (a, b, c) = (r.flush(), r2.flush(), e.flush());
    assert_eq!(a, c);
    assert_eq!(b, c);
    assert_eq!(a.attributions.len(), Model::PER_CONVERSION.len());
    // Header: b"TLES", version (u32 LE), partition (u32 LE), codec.
    assert_eq!(&snap[..4], b"TLES");
    let mut bad = snap.clone();
    bad[4..8].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(Engine::restore(EngineConfig::single(), &bad), Err(EngineError::SnapshotVersion { version: 99, .. })));
    assert!(matches!(
        Engine::restore(EngineConfig::single(), b"{\"format\":\"touchline-engine-state\",\"version\":1}"),
        Err(EngineError::SnapshotVersion { version: 1, .. })
    ));
    let mut corrupt = snap.clone();
    corrupt.truncate(snap.len() / 2);
    assert!(matches!(Engine::restore(EngineConfig::single(), &corrupt), Err(EngineError::Snapshot(_))));
    // A JSON-codec body that inflates to bytes that are not UTF-8: refused, saying so.
    let mut not_text = snap[..13].to_vec();
    not_text[12] = 1;
    let mut enc = flate2::write::DeflateEncoder::new(&mut not_text, flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, b"{\"watermark\":\"\xff\xfe\"}").unwrap();
    enc.finish().unwrap();
    match Engine::restore(EngineConfig::single(), &not_text) {
        Err(EngineError::Snapshot(msg)) => assert!(msg.contains("UTF-8"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(Engine::restore(EngineConfig::single(), b"").is_err());
    let other = EngineConfig { partition: 3, partitions: 4, ..EngineConfig::default() };
    assert!(Engine::restore(other, &e.snapshot()).is_err());
}

/// A snapshot written by the JSON codec (codec byte 1, written by d7a5d79 from the records
/// below, before snapshots became MessagePack) still restores, and the restored engine goes on
/// exactly as one that never stopped.
#[test]
fn a_json_codec_snapshot_of_an_earlier_build_restores() {
    let before = [
        touchpoint("t1", "2026-11-20T08:00:00Z", (Some("a"), None), "click", Some("c1")),
        touchpoint("t2", "2026-11-20T08:30:00Z", (Some("b"), None), "impression", Some("c2")),
        rec("ev1", ts("2026-11-20T08:40:00Z"), Some("a"), None, event_body("page", None, None, Some("c1"), None)),
        conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None),
    ];
    let after = conversion("cv2", "2026-11-20T11:00:00Z", (Some("b"), None), 500, None);
    let fixture = include_bytes!("data/snapshot-codec1.bin");
    assert_eq!(fixture[12], 1, "the fixture is a JSON-codec snapshot");
    let mut restored = Engine::restore(EngineConfig::single(), fixture).unwrap();
    let mut uninterrupted = Engine::new(EngineConfig::single());
    for r in &before {
        uninterrupted.ingest(r);
    }
    restored.ingest(&after);
    uninterrupted.ingest(&after);
    let (a, b) = (restored.flush(), uninterrupted.flush());
    assert!(!a.attributions.is_empty());
    assert_eq!(a, b);
    // What the restored engine snapshots now is the MessagePack codec, and it restores too.
    let again = restored.snapshot();
    assert_eq!(again[12], 2);
    assert_eq!(Engine::restore(EngineConfig::single(), &again).unwrap().snapshot(), again);
}

#[test]
fn paths_feed_markov_and_shapley() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&rec("t1", ts("2026-11-20T08:00:00Z"), Some("a"), None, tp_body("click", Some("c"), None, Some("search"), None)));
    e.ingest(&rec("t2", ts("2026-11-20T09:00:00Z"), Some("a"), None, tp_body("click", Some("c"), None, Some("email"), None)));
    e.ingest(&conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None));
    e.ingest(&rec("t3", ts("2026-11-20T08:00:00Z"), Some("b"), None, tp_body("click", Some("c"), None, Some("search"), None)));
    let paths = e.paths(acct(), ts("2026-11-01T00:00:00Z"), ts("2026-12-01T00:00:00Z"));
    assert_eq!(paths.len(), 2);
    let m = markov(&paths);
    assert!((m.channels.iter().map(|c| c.conversions).sum::<f64>() - 1.0).abs() < 1e-9);
    // search → email → conv; search → null. Removing email kills the only conversion: RE 1;
    // removing search also: RE 1 → 0.5 each.
    assert!(m.channels.iter().all(|c| (c.conversions - 0.5).abs() < 1e-9), "{m:?}");
    let s = shapley(&paths, ShapleyOptions::default());
    assert!(s.channels.iter().all(|c| (c.conversions - 0.5).abs() < 1e-9), "{s:?}");
}

#[test]
fn link_clicks_count_unless_bots_or_without_campaign() {
    let lc = |bot: bool, campaign: Option<&str>| link_click(None, bot, campaign);
    let mut e = Engine::new(EngineConfig::single());
    assert_eq!(e.ingest(&rec("l1", ts("2026-11-20T08:00:00Z"), Some("a"), None, lc(false, Some("c")))), Ingest::Applied);
    assert_eq!(e.ingest(&rec("l2", ts("2026-11-20T08:00:00Z"), Some("a"), None, lc(true, Some("c")))), Ingest::Ignored);
    assert_eq!(e.ingest(&rec("l3", ts("2026-11-20T08:00:00Z"), Some("a"), None, lc(false, None))), Ingest::Ignored);
    e.ingest(&conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None));
    let f = e.flush();
    assert_eq!(set(&f, Model::LastTouch)[0].row(0).unwrap().channel, "short_link");
    assert_eq!(f.metrics.iter().find(|m| m.campaign_id == "c").unwrap().clicks, 1);
    assert!(f.link_clicks.is_empty(), "clicks without a short code count for no link");
}

#[test]
fn every_click_of_a_short_link_counts_once_per_utc_day() {
    let lc = |code: &str, bot: bool, campaign: Option<&str>| link_click(Some(code), bot, campaign);
    let mut e = Engine::new(EngineConfig::single());
    // Humans and bots, with a campaign or without, all count for their link.
    assert_eq!(e.ingest(&rec("l1", ts("2026-11-20T08:00:00Z"), Some("a"), None, lc("abc", false, Some("c")))), Ingest::Applied);
    assert_eq!(e.ingest(&rec("l2", ts("2026-11-20T23:59:59Z"), Some("b"), None, lc("abc", true, Some("c")))), Ingest::Applied);
    assert_eq!(e.ingest(&rec("l3", ts("2026-11-21T00:00:00Z"), Some("a"), None, lc("abc", false, None))), Ingest::Applied);
    assert_eq!(e.ingest(&rec("l4", ts("2026-11-20T09:00:00Z"), Some("c"), None, lc("xyz", false, None))), Ingest::Applied);
    // A retried record (same id) is not counted again, bot or not.
    assert_eq!(e.ingest(&rec("l2", ts("2026-11-20T23:59:59Z"), Some("b"), None, lc("abc", true, Some("c")))), Ingest::Duplicate);
    assert_eq!(e.ingest(&rec("l1", ts("2026-11-20T08:00:00Z"), Some("a"), None, lc("abc", false, Some("c")))), Ingest::Duplicate);
    let counts = |f: &touchline_engine::Flush| -> Vec<(String, String, u64, u64)> {
        f.link_clicks.iter().map(|p| (p.short_code.clone(), p.date.to_string(), p.human_clicks, p.bot_clicks)).collect()
    };
    let f = e.flush();
    assert_eq!(
        counts(&f),
        vec![
            ("abc".into(), "2026-11-20".into(), 1, 1),
            ("abc".into(), "2026-11-21".into(), 1, 0),
            ("xyz".into(), "2026-11-20".into(), 1, 0)
        ]
    );
    // Counts survive a snapshot, and a flush carries the day's new absolute count.
    let mut e = Engine::restore(EngineConfig::single(), &e.snapshot()).unwrap();
    assert_eq!(e.ingest(&rec("l1", ts("2026-11-20T08:00:00Z"), Some("a"), None, lc("abc", false, Some("c")))), Ingest::Duplicate);
    e.ingest(&rec("l5", ts("2026-11-20T10:00:00Z"), Some("d"), None, lc("abc", false, None)));
    assert_eq!(counts(&e.flush()), vec![("abc".into(), "2026-11-20".into(), 2, 1)]);
}

#[test]
fn a_utm_only_touch_is_credited_to_its_utm_campaign() {
    // A landing page with UTMs but no campaign id: its attribution rows name the utm_campaign,
    // the same campaign key the daily metrics use.
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&event("p1", ts("2026-11-20T08:00:00Z"), "a", Some(("google", "cpc", "winter"))));
    e.ingest(&conversion("cv", "2026-11-20T10:00:00Z", (Some("a"), None), 1000, None));
    let f = e.flush();
    let row = set(&f, Model::LastTouch)[0].row(0).unwrap();
    assert_eq!(row.campaign_id, Some("winter"));
    assert_eq!(row.channel, "google");
    assert!(f.metrics.iter().any(|m| m.campaign_id == "winter" && m.conversions > rust_decimal::Decimal::ZERO));
}

/// A conversion keeps its identity's place in the state (by id, checked against the identity's
/// key): when an earlier duplicate of another identity takes the order over, the new identity's
/// touches are credited, and the first identity's later touches no longer reach it, before and
/// after a snapshot and restore.
#[test]
fn an_order_taken_over_by_another_identity_follows_that_identity() {
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("ta1", "2026-11-10T10:00:00Z", (Some("anon-a"), None), "click", Some("camp-a")));
    e.ingest(&touchpoint("tb1", "2026-11-10T11:00:00Z", (Some("anon-b"), None), "click", Some("camp-b")));
    e.ingest(&conversion("cv-late", "2026-11-12T10:00:00Z", (Some("anon-a"), None), 5000, Some("o-1")));
    let f = e.flush();
    assert!(f.attributions.iter().all(|s| s.row(0).unwrap().touchpoint == "ta1"), "{:?}", f.attributions);
    // The same order, earlier, from anon-b: it wins dedup and takes the conversion over.
    e.ingest(&conversion("cv-early", "2026-11-12T09:00:00Z", (Some("anon-b"), None), 5000, Some("o-1")));
    let f = e.flush();
    assert_eq!(f.attributions.len(), Model::PER_CONVERSION.len());
    assert!(f.attributions.iter().all(|s| s.row(0).unwrap().touchpoint == "tb1" && s.conversion_id == "cv-early"));
    let check = |e: &mut Engine, version: u64| {
        // A new touch of anon-a no longer concerns the order; one of anon-b does.
        e.ingest(&touchpoint(&format!("ta-{version}"), "2026-11-11T10:00:00Z", (Some("anon-a"), None), "click", Some("camp-a")));
        assert!(e.flush().attributions.is_empty());
        e.ingest(&touchpoint(&format!("tb-{version}"), "2026-11-11T10:00:00Z", (Some("anon-b"), None), "click", Some("camp-b")));
        let f = e.flush();
        let last = set(&f, Model::LastTouch);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].row(0).unwrap().touchpoint, format!("tb-{version}"));
        assert_eq!(last[0].version, version);
        let linear = set(&f, Model::Linear);
        let touched: Vec<&str> = linear[0].rows().map(|r| r.touchpoint).collect();
        assert_eq!(touched, ["tb1", format!("tb-{version}").as_str()]);
    };
    let restored = Engine::restore(EngineConfig::single(), &e.snapshot()).unwrap();
    check(&mut e, 3);
    let mut restored = restored;
    check(&mut restored, 3);
}

#[test]
fn journeys_count_converting_paths_and_close_non_converting_ones() {
    let click = |rid: &str, at: &str, who: &str, channel: &str| {
        rec(rid, ts(at), Some(who), None, tp_body("click", Some("spring"), None, Some(channel), None))
    };
    let journeys = |f: &touchline_engine::Flush| -> Vec<(String, String, u64, u64, String)> {
        f.journeys
            .iter()
            .map(|j| (j.date.to_string(), j.channels.clone(), j.conversions, j.non_conversions, j.revenue.normalize().to_string()))
            .collect()
    };
    let mut e = Engine::new(EngineConfig::single());
    // a: email then search, converts (100). b: one display click, never converts. c: email,
    // converts (50); a search click before its conversion arrives late.
    e.ingest(&click("a1", "2026-11-01T09:00:00Z", "a", "email"));
    e.ingest(&click("a2", "2026-11-03T09:00:00Z", "a", "search"));
    e.ingest(&conversion("ca", "2026-11-05T09:00:00Z", (Some("a"), None), 10_000, None));
    e.ingest(&click("b1", "2026-11-02T09:00:00Z", "b", "display"));
    e.ingest(&click("c1", "2026-11-04T09:00:00Z", "c", "email"));
    e.ingest(&conversion("cc", "2026-11-06T09:00:00Z", (Some("c"), None), 5_000, None));
    assert_eq!(
        journeys(&e.flush()),
        vec![("2026-11-05".into(), "email > search".into(), 1, 0, "100".into()), ("2026-11-06".into(), "email".into(), 1, 0, "50".into())],
        "a converting journey counts on its conversion's day; b's may still convert"
    );
    e.ingest(&click("c2", "2026-11-05T09:00:00Z", "c", "search"));
    assert_eq!(
        journeys(&e.flush()),
        vec![("2026-11-06".into(), "email".into(), 0, 0, "0".into()), ("2026-11-06".into(), "email > search".into(), 1, 0, "50".into())],
        "the late touch moves c's conversion to its new path (absolute counts)"
    );
    // The touches leave the state once older than watermark − 7 days of lateness − 30 days of
    // lookback (2026-11-13 here); b's display click is credited by nothing, but a touch of b
    // could still join it until 2026-12-02 (30 days after it).
    e.advance_watermark(ts("2026-12-20T00:00:00Z"));
    assert!(journeys(&e.flush()).is_empty());
    let mut e = Engine::restore(EngineConfig::single(), &e.snapshot()).unwrap();
    e.advance_watermark(ts("2027-01-10T00:00:00Z"));
    assert_eq!(journeys(&e.flush()), vec![("2026-11-02".into(), "display".into(), 0, 1, "0".into())], "closed once nothing can join it");
    e.advance_watermark(ts("2027-03-10T00:00:00Z"));
    assert!(journeys(&e.flush()).is_empty(), "counted once");
}

/// Per-conversion Markov and Shapley: the conversion is split over its channels by the
/// account's weights, a channel's share over its touches; the daily metrics follow when the
/// data-driven model is the account's default; new weights credit the held conversion again.
#[test]
fn data_driven_models_split_a_conversion_by_channel_weights() {
    let table = |pairs: &[(&str, f64)]| ChannelWeights(pairs.iter().map(|(c, w)| ((*c).to_owned(), *w)).collect());
    let mut cfg = EngineConfig::single();
    cfg.default_settings.default_model = Model::Markov;
    cfg.catalog.channel_weights.insert((acct(), Model::Markov), table(&[("search", 0.6), ("display", 0.2), ("email", 0.2)]));
    let mut e = Engine::new(cfg.clone());
    let who = (Some("v"), None);
    e.ingest(&rec("t1", ts("2026-11-10T10:00:00Z"), Some("v"), None, tp_body("click", Some("brand"), None, Some("search"), None)));
    e.ingest(&rec("t2", ts("2026-11-11T10:00:00Z"), Some("v"), None, tp_body("click", Some("retarget"), None, Some("display"), None)));
    e.ingest(&rec("t3", ts("2026-11-12T10:00:00Z"), Some("v"), None, tp_body("click", Some("generic"), None, Some("search"), None)));
    e.ingest(&conversion("cv", "2026-11-12T12:00:00Z", who, 8000, None));
    let f = e.flush();
    // By hand: search 0.6 / (0.6 + 0.2) = 3/4 over two touches, 3/8 each; display 1/4.
    // 80.00 → 30.00, 20.00, 30.00.
    let markov = set(&f, Model::Markov);
    let rows: Vec<(String, f64, Decimal)> =
        markov[0].rows().map(|r| (r.touchpoint.to_owned(), (r.weight * 1e9).round() / 1e9, r.attributed_revenue.normalize())).collect();
    assert_eq!(
        rows,
        [
            ("t1".to_owned(), 0.375, Decimal::new(30, 0)),
            ("t2".to_owned(), 0.25, Decimal::new(20, 0)),
            ("t3".to_owned(), 0.375, Decimal::new(30, 0))
        ]
    );
    // No Shapley weights for the account: the linear split.
    assert!(set(&f, Model::Shapley)[0].rows().all(|r| (r.weight - 1.0 / 3.0).abs() < 1e-12));
    let revenue =
        |f: &Flush, campaign: &str| f.metrics.iter().filter(|m| m.campaign_id == campaign).map(|m| m.revenue).sum::<Decimal>().normalize();
    assert_eq!((revenue(&f, "brand"), revenue(&f, "retarget"), revenue(&f, "generic")), (30.into(), 20.into(), 30.into()));

    // A refresh that weighs display alone moves all of it there, once.
    let mut catalog = cfg.catalog.clone();
    catalog.channel_weights.insert((acct(), Model::Markov), table(&[("display", 1.0)]));
    e.set_catalog(catalog.clone());
    let f = e.flush();
    assert_eq!(f.attributions.iter().map(|s| s.model).collect::<Vec<_>>(), [Model::Markov]);
    assert_eq!(f.attributions[0].rows().map(|r| r.touchpoint.to_owned()).collect::<Vec<_>>(), ["t2"]);
    assert_eq!(revenue(&f, "retarget"), 80.into());
    e.set_catalog(catalog);
    assert!(e.flush().attributions.is_empty(), "the same weights again change nothing");
}
