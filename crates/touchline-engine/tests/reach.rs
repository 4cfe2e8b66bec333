//! Reach: people counted under their stitching root, the cell sketches the engine flushes, and
//! the sketch's union and error properties. Expected figures are worked out by hand in each
//! test, or are the published error bound of HyperLogLog (1.04/√m, Flajolet et al. 2007).
#![allow(clippy::unwrap_used)]

mod common;

use chrono::NaiveDate;
use common::*;
use proptest::prelude::*;
use touchline_engine::*;
use touchline_model::reach::{ReachSketch, EXACT_LIMIT, STANDARD_ERROR};
use touchline_model::ReachUnion;

fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, n).unwrap()
}

/// The partial of campaign `c` on `date` in a flush.
fn cell(f: &Flush, date: NaiveDate) -> &DailyPartial {
    f.metrics.iter().find(|m| m.campaign_id == "c" && m.date == date).unwrap()
}

fn sketch(p: &DailyPartial) -> ReachSketch {
    ReachSketch::from_bytes(&p.reach_sketch).unwrap()
}

#[test]
fn a_visitor_linked_before_the_touch_counts_as_the_customer() {
    // anon-1 is cust-1; both touch campaign c on Nov 20: one person, two impressions.
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&identify("id1", "2026-11-20T07:00:00Z", "anon-1", "cust-1"));
    e.ingest(&touchpoint("i1", "2026-11-20T08:00:00Z", (Some("anon-1"), None), "impression", Some("c")));
    e.ingest(&touchpoint("i2", "2026-11-20T09:00:00Z", (None, Some("cust-1")), "impression", Some("c")));
    let f = e.flush();
    let m = cell(&f, day(20));
    assert_eq!((m.impressions, m.reach), (2, 1));
    assert_eq!(sketch(m), ReachSketch::of_identities(["cust-1"]));
    assert_eq!(m.report().frequency, Some(2.0));
}

#[test]
fn a_link_after_the_touch_recounts_the_visitor_as_the_customer() {
    // First flush: anon-1 and cust-1 look like two people. The identify then arrives: the cell
    // is flushed again with one person, the same bytes as when the link came first.
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("i1", "2026-11-20T08:00:00Z", (Some("anon-1"), None), "impression", Some("c")));
    e.ingest(&touchpoint("k1", "2026-11-20T09:00:00Z", (None, Some("cust-1")), "click", Some("c")));
    let before = e.flush();
    assert_eq!(cell(&before, day(20)).reach, 2);
    e.ingest(&identify("id1", "2026-11-21T07:00:00Z", "anon-1", "cust-1"));
    let after = e.flush();
    let m = cell(&after, day(20));
    assert_eq!((m.impressions, m.clicks, m.reach), (1, 1, 1));
    assert_eq!(sketch(m), ReachSketch::of_identities(["cust-1"]));

    let mut linked_first = Engine::new(EngineConfig::single());
    linked_first.ingest(&identify("id1", "2026-11-21T07:00:00Z", "anon-1", "cust-1"));
    linked_first.ingest(&touchpoint("k1", "2026-11-20T09:00:00Z", (None, Some("cust-1")), "click", Some("c")));
    linked_first.ingest(&touchpoint("i1", "2026-11-20T08:00:00Z", (Some("anon-1"), None), "impression", Some("c")));
    let f = linked_first.flush();
    assert_eq!(cell(&f, day(20)).reach_sketch, m.reach_sketch);
}

#[test]
fn a_retried_touch_after_the_link_leaves_one_person() {
    // The touch is counted as anon-1, the link moves it to cust-1, then the SDK resends the
    // same touch: it replaces itself under the same root, still one person.
    let mut e = Engine::new(EngineConfig::single());
    e.ingest(&touchpoint("i1", "2026-11-20T08:00:00Z", (Some("anon-1"), None), "impression", Some("c")));
    e.ingest(&identify("id1", "2026-11-20T09:00:00Z", "anon-1", "cust-1"));
    e.ingest(&touchpoint("i1", "2026-11-20T08:00:00Z", (Some("anon-1"), None), "impression", Some("c")));
    let f = e.flush();
    let m = cell(&f, day(20));
    assert_eq!((m.impressions, m.reach), (1, 1));
    assert_eq!(sketch(m), ReachSketch::of_identities(["cust-1"]));
}

#[test]
fn a_record_carrying_both_ids_tells_the_visitors_partition() {
    // Two partitions; anon-1 lives on one, the customer on the other. The visitor's impression
    // is counted on the visitor's partition; the click carrying both ids is keyed by the
    // customer, so it links them on the customer's partition. A link notice must carry the
    // link back, so the visitor's partition recounts the impression as the customer: one
    // person on Nov 20 across both partitions, as on one engine.
    let cfg = |p| EngineConfig { partition: p, partitions: 2, ..EngineConfig::default() };
    let partition = |r: &touchline_model::Record| touchline_model::partition_for(r.partition_key().as_bytes(), 2) as usize;
    let impression = touchpoint("i1", "2026-11-20T08:00:00Z", (Some("anon-1"), None), "impression", Some("c"));
    let click_of = |cust: &str| touchpoint("k1", "2026-11-20T09:00:00Z", (Some("anon-1"), Some(cust)), "click", Some("c"));
    let customer = (0..100).map(|i| format!("cust-{i}")).find(|c| partition(&click_of(c)) != partition(&impression)).unwrap();
    let click = click_of(&customer);
    let mut engines = [Engine::new(cfg(0)), Engine::new(cfg(1))];
    let (visitor_p, customer_p) = (partition(&impression), partition(&click));
    engines[visitor_p].ingest(&impression);
    engines[customer_p].ingest(&click);
    let visitor_first = engines[visitor_p].flush();
    assert_eq!(sketch(cell(&visitor_first, day(20))), ReachSketch::of_identities(["anon-1"]));

    let customer_flush = engines[customer_p].flush();
    let [notice] = customer_flush.transfers.as_slice() else { panic!("one notice: {:?}", customer_flush.transfers) };
    assert!(notice.notice && notice.touches.is_empty());
    assert_eq!((notice.from.as_str(), notice.to.as_str()), ("anon-1", customer.as_str()));
    assert_eq!(notice.partition_key(), impression.partition_key(), "goes to the visitor's partition");
    engines[visitor_p].ingest_identities_message(&notice.to_json()).unwrap();
    let visitor_after = engines[visitor_p].flush();
    let recounted = cell(&visitor_after, day(20));
    assert_eq!((recounted.impressions, recounted.reach), (1, 1));
    assert_eq!(sketch(recounted), ReachSketch::of_identities([customer.as_str()]));
    // And the visitor's impression now goes to the customer's partition for attribution.
    let [transfer] = visitor_after.transfers.as_slice() else { panic!("one transfer: {:?}", visitor_after.transfers) };
    assert_eq!((transfer.notice, transfer.touches.len()), (false, 1));

    let mut union = ReachUnion::default();
    for p in [recounted, cell(&customer_flush, day(20))] {
        union.add(p.date, p.reach as i64, &p.reach_sketch).unwrap();
    }
    assert_eq!(union.reach(), 1);
}

#[test]
fn three_people_over_two_days_with_one_in_common_reach_three() {
    // Nov 20: ann, bob (bob twice). Nov 21: bob, cat. Each day 2 people; both days 3, with 5
    // impressions: frequency 5/3 over the range.
    let mut e = Engine::new(EngineConfig::single());
    for (rid, at, who) in [
        ("i1", "2026-11-20T08:00:00Z", "ann"),
        ("i2", "2026-11-20T09:00:00Z", "bob"),
        ("i3", "2026-11-20T10:00:00Z", "bob"),
        ("i4", "2026-11-21T08:00:00Z", "bob"),
        ("i5", "2026-11-21T09:00:00Z", "cat"),
    ] {
        e.ingest(&touchpoint(rid, at, (Some(who), None), "impression", Some("c")));
    }
    let f = e.flush();
    let (d1, d2) = (cell(&f, day(20)), cell(&f, day(21)));
    assert_eq!((d1.reach, d2.reach), (2, 2));
    let mut range = ReachUnion::default();
    for p in [d1, d2] {
        range.add(p.date, p.reach as i64, &p.reach_sketch).unwrap();
    }
    assert_eq!(range.reach(), 3);
    let rows = combine_partials(&[d1.clone(), d2.clone()]);
    assert_eq!(rows.iter().map(|r| r.reach).collect::<Vec<_>>(), vec![2, 2], "a day is not the range");
}

/// Impressions of campaign `c` by `people` on Nov 20 (`day_offset` days later), in order.
fn impressions(e: &mut Engine, people: &[String], day_offset: u32, tag: &str) {
    for (i, who) in people.iter().enumerate() {
        let at = format!("2026-11-{:02}T{:02}:{:02}:00Z", 20 + day_offset, (i / 60) % 24, i % 60);
        e.ingest(&touchpoint(&format!("{tag}-{i}"), &at, (Some(who), None), "impression", Some("c")));
    }
}

fn people(ids: &[u32]) -> Vec<String> {
    ids.iter().map(|i| format!("person-{i}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32),
        .. ProptestConfig::default()
    })]

    /// The sketch the engine flushes depends on the people of the cell only, not on the order
    /// their touches arrived in.
    #[test]
    fn the_cell_sketch_does_not_depend_on_arrival_order(ids in proptest::collection::vec(0u32..5_000, 1..300), seed in any::<u64>()) {
        let forward = people(&ids);
        let mut a = Engine::new(EngineConfig::single());
        let mut b = Engine::new(EngineConfig::single());
        impressions(&mut a, &forward, 0, "t");
        // The same records (ids, people, times) in an order shuffled from the seed
        // (Fisher–Yates over a xorshift stream).
        let order: Vec<usize> = {
            let mut o: Vec<usize> = (0..forward.len()).collect();
            let mut x = seed | 1;
            for i in (1..o.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                o.swap(i, (x % (i as u64 + 1)) as usize);
            }
            o
        };
        for i in order {
            let at = format!("2026-11-20T{:02}:{:02}:00Z", (i / 60) % 24, i % 60);
            b.ingest(&touchpoint(&format!("t-{i}"), &at, (Some(&forward[i]), None), "impression", Some("c")));
        }
        let (fa, fb) = (a.flush(), b.flush());
        prop_assert_eq!(&cell(&fa, day(20)).reach_sketch, &cell(&fb, day(20)).reach_sketch);
        let distinct: std::collections::BTreeSet<&u32> = ids.iter().collect();
        prop_assert_eq!(cell(&fa, day(20)).reach, distinct.len() as u64);
    }

    /// The sketch of a union equals the union (merge) of the sketches, byte for byte, for
    /// sets on either side of the exact limit.
    #[test]
    fn the_sketch_of_a_union_is_the_merge_of_the_sketches(
        a in proptest::collection::vec(any::<u64>(), 0..3_000),
        b in proptest::collection::vec(any::<u64>(), 0..3_000),
    ) {
        let mut merged = ReachSketch::from_hashes(a.iter().copied());
        merged.merge(&ReachSketch::from_hashes(b.iter().copied()));
        let union = ReachSketch::from_hashes(a.iter().chain(&b).copied());
        prop_assert_eq!(merged.to_bytes(), union.to_bytes());
        let mut reversed = ReachSketch::from_hashes(b.iter().copied());
        reversed.merge(&ReachSketch::from_hashes(a.iter().copied()));
        prop_assert_eq!(reversed, union);
    }

    /// A union of two days' engine sketches counts the distinct people of both days: exactly
    /// up to the exact limit, within 5 standard errors (5 × 1.04/√2¹⁴ = 4.1 %) above it.
    #[test]
    fn two_days_of_engine_sketches_count_the_people_of_both(
        first in 0u32..3_000, second in 0u32..3_000, overlap in 0u32..1_000,
    ) {
        // Day 1: people 0..first; day 2: people first-overlap .. first-overlap+second.
        let start = first.saturating_sub(overlap);
        let day1: Vec<u32> = (0..first).collect();
        let day2: Vec<u32> = (start..start + second).collect();
        let mut e = Engine::new(EngineConfig::single());
        impressions(&mut e, &people(&day1), 0, "d1");
        impressions(&mut e, &people(&day2), 1, "d2");
        let f = e.flush();
        let mut union = ReachUnion::default();
        for p in f.metrics.iter().filter(|m| m.campaign_id == "c") {
            union.add(p.date, p.reach as i64, &p.reach_sketch).unwrap();
        }
        let truth = f64::from(first.max(start + second));
        let got = union.reach() as f64;
        if truth as usize <= EXACT_LIMIT {
            prop_assert_eq!(got, truth);
        } else {
            let bound = 5.0 * STANDARD_ERROR * truth;
            prop_assert!((got - truth).abs() <= bound, "{got} vs {truth} ± {bound}");
        }
    }

    /// Above the exact limit a sketch's count is within 5 standard errors of the distinct
    /// count (probability of a miss under the normal approximation: 6 × 10⁻⁷ a case).
    #[test]
    fn estimates_are_within_the_published_error(n in (EXACT_LIMIT + 1)..200_000usize, salt in any::<u64>()) {
        let sketch = ReachSketch::from_hashes((0..n as u64).map(|i| touchline_model::reach::identity_hash(&format!("{salt}:{i}"))));
        let bound = 5.0 * STANDARD_ERROR * n as f64;
        prop_assert!((sketch.count() as f64 - n as f64).abs() <= bound, "{} vs {n} ± {bound}", sketch.count());
    }
}
