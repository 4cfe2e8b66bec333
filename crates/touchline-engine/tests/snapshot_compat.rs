//! Checkpoints written by earlier builds keep loading and keep giving the results of an
//! uninterrupted run. A restored conversion must not be emitted again for models whose rows did
//! not change (which a fingerprint mismatch would cause):
//! - `fixtures/snapshot_v2_fnv.bin`: a format-2 snapshot written before the per-conversion
//!   fingerprints moved from byte-wise FNV-1a to a word-at-a-time hash;
//! - `fixtures/snapshot_v2_words.bin`: written (2026-12-06) while the fingerprints hashed every
//!   row's bytes with that word hash, before they moved to per-touch hashes.
//!
//! Regenerate one (only with the build that wrote the original format):
//! `TOUCHLINE_WRITE_FIXTURE=snapshot_v2_words.bin cargo test -p touchline-engine --release --test snapshot_compat`
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rust_decimal::Decimal;
use touchline_engine::{Engine, EngineConfig, Flush, Model};
use touchline_model::Record;

/// Before the snapshot: paths of three identities and their conversions.
fn first() -> Vec<Record> {
    let mut v = Vec::new();
    for who in ["a0", "a1", "a2"] {
        for (i, (day, kind, camp)) in
            [(1, "impression", "k0"), (3, "click", "k1"), (6, "click", "k2"), (8, "impression", "k1")].into_iter().enumerate()
        {
            v.push(touchpoint(&format!("t-{who}-{i}"), &format!("2026-11-0{day}T10:00:00Z"), (Some(who), None), kind, Some(camp)));
        }
        v.push(conversion(&format!("c-{who}"), "2026-11-09T12:00:00Z", (Some(who), None), 4999, Some(&format!("o-{who}"))));
    }
    v
}

/// After it: touches inside the paths (first/last touch unchanged, the others change), a new
/// conversion, a duplicate.
fn second() -> Vec<Record> {
    vec![
        touchpoint("late-a0", "2026-11-05T09:00:00Z", (Some("a0"), None), "click", Some("k3")),
        touchpoint("late-a1", "2026-11-07T09:00:00Z", (Some("a1"), None), "impression", Some("k0")),
        conversion("c-a2-bis", "2026-11-09T18:00:00Z", (Some("a2"), None), 1250, Some("o-a2-bis")),
        conversion("c-a0-dup", "2026-11-09T12:00:00Z", (Some("a0"), None), 4999, Some("o-a0")),
    ]
}

fn feed(e: &mut Engine, records: &[Record]) -> Flush {
    for r in records {
        e.ingest(r);
    }
    e.flush()
}

/// Restores `fixture` (the state after [`first`]) and checks that [`second`] then gives exactly
/// what it gives after [`first`] in one uninterrupted run of this build, but for the rows the
/// fixtures' builds split differently.
///
/// Those builds rounded attributed revenue to cents, the remainder on the first touch; this one
/// splits at six places. a1's path does not change in [`second`] (its late impression is outside
/// the one-day view lookback), but its multi-touch rows do (and a2's, see below): 49.99 over its two clicks was
/// 25.00 + 24.99 under linear and position-based (50/50 with two touches) and is now 24.995 +
/// 24.995, and time decay's shares now have six places. Re-attributed, a1 emits these three
/// models once more, with a new version. Its one-hot models (first, last, last non-direct
/// touch: 49.99 to one touch, written as before) are not emitted.
///
/// Those builds credited no conversion under `markov` and `shapley`. The restore credits every
/// held conversion under them once, which also re-splits the multi-touch models of a2 (whose
/// path [`second`] does not change either): a1's and a2's sets, absent from the uninterrupted
/// run's output there, are emitted with a new version, the data-driven ones split linearly
/// since the configuration has no channel weights.
fn restores_without_reemitting(fixture: &str) {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let mut e = Engine::new(EngineConfig::single());
    feed(&mut e, &first());
    if std::env::var("TOUCHLINE_WRITE_FIXTURE").is_ok_and(|f| f == fixture) {
        std::fs::write(&path, e.snapshot()).unwrap();
    }
    let want = feed(&mut e, &second());
    let bytes = std::fs::read(&path).unwrap();
    let mut back = Engine::restore(EngineConfig::single(), &bytes).unwrap();
    let mut got = feed(&mut back, &second());
    assert!(!want.attributions.is_empty());
    let (first_credit, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut got.attributions)
        .into_iter()
        .partition(|s| ["c-a1", "c-a2"].contains(&s.conversion_id.as_str()) && s.model.is_data_driven());
    got.attributions = rest;
    let credited: Vec<(&str, Model)> = first_credit.iter().map(|s| (s.conversion_id.as_str(), s.model)).collect();
    assert_eq!(credited, [("c-a1", Model::Markov), ("c-a1", Model::Shapley), ("c-a2", Model::Markov), ("c-a2", Model::Shapley)]);
    for s in &first_credit {
        assert_eq!(s.version, 2);
        let n = s.rows().count() as f64;
        assert!(n > 0.0 && s.rows().all(|r| (r.weight - 1.0 / n).abs() < 1e-12), "{s:?}");
        assert_eq!(s.rows().map(|r| r.attributed_revenue).sum::<Decimal>(), Decimal::new(4999, 2));
    }
    let resplit = [Model::Linear, Model::TimeDecay, Model::PositionBased];
    let (again, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut got.attributions)
        .into_iter()
        .partition(|s| ["c-a1", "c-a2"].contains(&s.conversion_id.as_str()) && resplit.contains(&s.model));
    let models: Vec<(&str, Model)> = again.iter().map(|s| (s.conversion_id.as_str(), s.model)).collect();
    assert_eq!(models, ["c-a1", "c-a2"].into_iter().flat_map(|c| resplit.map(|m| (c, m))).collect::<Vec<_>>());
    let half = Decimal::new(24_995, 3);
    for s in &again {
        assert_eq!(s.version, 2);
        let rev: Vec<Decimal> = s.rows().map(|r| r.attributed_revenue).collect();
        assert_eq!(rev.iter().sum::<Decimal>(), Decimal::new(4999, 2));
        assert!(rev.iter().all(|r| r.scale() == 6), "{rev:?}");
        if s.model != Model::TimeDecay {
            assert_eq!(rev, [half, half]);
        }
    }
    got.attributions = rest;
    // Snapshots of builds before journeys do not say which path their conversions were counted
    // under, so journeys are counted from the first change after the restore (documented with
    // `journey_partials`); everything else must be identical.
    let without_journeys = |f: Flush| Flush { journeys: Vec::new(), ..f };
    assert_eq!(without_journeys(got), without_journeys(want));
}

#[test]
fn format_2_snapshot_with_fnv_fingerprints_restores_without_reemitting() {
    restores_without_reemitting("snapshot_v2_fnv.bin");
}

#[test]
fn snapshot_with_word_hash_row_fingerprints_restores_without_reemitting() {
    restores_without_reemitting("snapshot_v2_words.bin");
}
