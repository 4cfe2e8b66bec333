//! Attributed revenue does not drift: summed over any number of conversions, each campaign's
//! revenue is its exact share of the conversion values within a cent. The exact shares are
//! worked out here in integer arithmetic from the models' definitions (rational weights), not
//! with the engine's splitter.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use common::*;
use proptest::prelude::*;
use rust_decimal::Decimal;
use touchline_engine::*;
use touchline_model::{Body, Record};

const CAMPAIGNS: [&str; 3] = ["ka", "kb", "kc"];
const DAY_MS: i64 = 86_400_000;

fn conv_at(i: usize) -> DateTime<Utc> {
    ts("2026-11-20T00:00:00Z") + Duration::minutes(i as i64)
}

fn valued_conversion(rid: &str, at: DateTime<Utc>, who: &str, value: Decimal) -> Record {
    let mut body = conversion_body("purchase", Some(0), None);
    if let Body::Conversion(c) = &mut body {
        c.value = Some(value);
    }
    rec(rid, at, Some(who), None, body)
}

/// Conversion `i` of `value` over touches `(campaign, whole days before the conversion)`, each a
/// click of its own identity `u{i}`.
fn path(i: usize, value: Decimal, touches: &[(usize, i64)]) -> Vec<Record> {
    let at = conv_at(i);
    let who = format!("u{i}");
    let mut out: Vec<Record> = touches
        .iter()
        .enumerate()
        .map(|(j, (camp, days))| {
            rec(
                &format!("t{i}-{j}"),
                at - Duration::days(*days),
                Some(&who),
                None,
                tp_body("click", Some(CAMPAIGNS[*camp]), None, Some("search"), None),
            )
        })
        .collect();
    out.push(valued_conversion(&format!("cv{i}"), at, &who, value));
    out
}

fn engine(default_model: Model) -> Engine {
    let mut cfg = EngineConfig::single();
    // A one-day half-life: touches whole days before the conversion weigh exactly 2^-days.
    cfg.accounts.insert(acct(), AccountSettings { half_life_secs: DAY_MS / 1000, default_model, ..AccountSettings::default() });
    Engine::new(cfg)
}

/// Attributed revenue per campaign under `model`.
fn by_campaign(f: &Flush, model: Model) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for s in f.attributions.iter().filter(|s| s.model == model) {
        for r in s.rows() {
            *out.entry(r.campaign_id.unwrap_or("").to_owned()).or_insert(Decimal::ZERO) += r.attributed_revenue;
        }
    }
    out
}

fn cent() -> Decimal {
    Decimal::new(1, 2)
}

/// The example. Six conversions of 10.00, each over a > a > b. Linear gives each touch
/// 1/3: a (two touches) is owed 2/3 × 10.00 = 6.666… a conversion, 6 × 6.666… = 40.00 in all,
/// and b 6 × 3.333… = 20.00. At six places each touch gets 3.333333 and one of the three (the
/// same for a conversion every time) 3.333334, so a gets between 6 × 6.666666 = 39.999996 and
/// 6 × 6.666667 = 40.000002, b between 19.999998 and 20.000004. (Rounded to cents with the
/// remainder always on the first touch, a would get 3.34 + 3.33 = 6.67 each time, 40.02 in
/// all.)
#[test]
fn six_conversions_of_ten_over_a_a_b_credit_40_and_20() {
    let mut e = engine(Model::Linear);
    for i in 0..6 {
        for r in path(i, Decimal::new(1000, 2), &[(0, 3), (0, 2), (1, 1)]) {
            e.ingest(&r);
        }
    }
    let f = e.flush();
    let rev = by_campaign(&f, Model::Linear);
    let (a, b) = (rev["ka"], rev["kb"]);
    assert!((a - Decimal::new(4000, 2)).abs() <= cent(), "a {a}");
    assert!((b - Decimal::new(2000, 2)).abs() <= cent(), "b {b}");
    assert!(a >= Decimal::new(39_999_996, 6) && a <= Decimal::new(40_000_002, 6), "a {a}");
    assert!(b >= Decimal::new(19_999_998, 6) && b <= Decimal::new(20_000_004, 6), "b {b}");
    assert_eq!(a + b, Decimal::new(6000, 2));
    // The daily metrics (default model linear here) credit the same.
    let metric = |c: &str| f.metrics.iter().filter(|m| m.campaign_id == c).map(|m| m.revenue).sum::<Decimal>();
    assert_eq!((metric("ka"), metric("kb")), (a, b));
}

/// The remainder of a conversion's split goes to each of its tied touches about equally often
/// over conversions, and to the same one whenever the conversion is attributed again.
#[test]
fn the_remainder_is_spread_over_tied_touches_and_stable() {
    let n = 300;
    let records: Vec<Record> = (0..n).flat_map(|i| path(i, Decimal::new(1000, 2), &[(0, 3), (0, 2), (1, 1)])).collect();
    let run = |records: &[Record]| {
        let mut e = engine(Model::LastTouch);
        for r in records {
            e.ingest(r);
        }
        e.flush()
    };
    let f = run(&records);
    let mut extra_at = [0usize; 3];
    for s in f.attributions.iter().filter(|s| s.model == Model::Linear) {
        let rows: Vec<Decimal> = s.rows().map(|r| r.attributed_revenue).collect();
        // 10.00 / 3: 3.333333 twice and 3.333334 once.
        let j = rows.iter().position(|r| *r == Decimal::new(3_333_334, 6)).unwrap();
        assert_eq!(rows.iter().filter(|r| **r == Decimal::new(3_333_333, 6)).count(), 2, "{rows:?}");
        extra_at[j] += 1;
    }
    assert_eq!(extra_at.iter().sum::<usize>(), n);
    // Expected 100 each; 60 is five standard deviations (√(300 · 1/3 · 2/3) ≈ 8.2) away.
    assert!(extra_at.iter().all(|k| *k >= 60), "{extra_at:?}");
    // The same records in another order, and a restored engine, give the same rows.
    let mut reversed = records.clone();
    reversed.reverse();
    let by_key = |f: &Flush| {
        let mut v: Vec<String> = f.attributions.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(by_key(&run(&reversed)), by_key(&f));
}

/// The exact weights of `model` over a path of touches `days` before the conversion, sorted as
/// the engine sorts them (time, then record id, which here is the input order), as
/// `(numerators, denominator)`.
fn exact_weights(model: Model, days: &[i64]) -> (Vec<i128>, i128) {
    let n = days.len() as i128;
    match model {
        Model::Linear => (vec![1; days.len()], n),
        // 40 % first and last, 20 % shared by the others (50/50 with two, all to one).
        Model::PositionBased => match days.len() {
            1 => (vec![1], 1),
            2 => (vec![1, 1], 2),
            _ => {
                let mut w = vec![1; days.len()];
                w[0] = 2 * (n - 2);
                w[days.len() - 1] = 2 * (n - 2);
                (w, 5 * (n - 2))
            }
        },
        // 2^-d over the sum, as 2^(10 - d) over the sum of those (d ≤ 10).
        Model::TimeDecay => {
            let w: Vec<i128> = days.iter().map(|d| 1i128 << (10 - d)).collect();
            let sum = w.iter().sum();
            (w, sum)
        }
        _ => unreachable!(),
    }
}

const E18: i128 = 1_000_000_000_000_000_000;

/// `value × num / den` in units of 10⁻¹⁸, rounded to nearest (an error of at most 0.5 · 10⁻¹⁸).
fn exact_share(value: Decimal, num: i128, den: i128) -> i128 {
    let v = value.mantissa() * 10i128.pow(18 - value.scale());
    let p = v * num;
    let (q, r) = (p / den, p % den);
    if 2 * r.abs() >= den {
        q + p.signum()
    } else {
        q
    }
}

fn e18(d: Decimal) -> i128 {
    d.mantissa() * 10i128.pow(18 - d.scale())
}

#[derive(Clone, Debug)]
struct Conv {
    value: Decimal,
    /// (campaign, whole days before the conversion), sorted by days descending (time order).
    touches: Vec<(usize, i64)>,
}

fn arb_value() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        // Cents up to 100,000.00, refunds too.
        4 => (-10_000_000i64..=10_000_000).prop_map(|m| Decimal::new(m, 2)),
        1 => (1i64..=100_000).prop_map(|m| Decimal::new(m, 0)),
        1 => (1i64..=100_000_000).prop_map(|m| Decimal::new(m, 3)),
        1 => (1i64..=100_000_000_000).prop_map(|m| Decimal::new(m, 6)),
    ]
}

fn arb_conv() -> impl Strategy<Value = Conv> {
    (arb_value(), prop::collection::vec((0..CAMPAIGNS.len(), 0i64..=10), 1..=6)).prop_map(|(value, mut touches)| {
        // Earliest first; equal times keep their order, as their record ids (t{i}-{j}) sort.
        touches.sort_by_key(|(_, d)| -d);
        Conv { value, touches }
    })
}

proptest! {
    // 24 cases of up to 2,000 conversions; PROPTEST_CASES=N overrides.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        .. ProptestConfig::default()
    })]

    /// For any number of conversions of any value over random paths of three campaigns, each
    /// campaign's attributed revenue under linear, position-based and time decay is its exact
    /// share within a cent, in the rows and in the daily metrics.
    #[test]
    fn each_campaign_gets_its_exact_share_within_a_cent(convs in prop::collection::vec(arb_conv(), 1..=2000)) {
        let records: Vec<Record> = convs.iter().enumerate().flat_map(|(i, c)| path(i, c.value, &c.touches)).collect();
        for model in [Model::Linear, Model::PositionBased, Model::TimeDecay] {
            let mut e = engine(model);
            for r in &records {
                e.ingest(r);
            }
            let f = e.flush();
            let mut exact = [0i128; CAMPAIGNS.len()];
            for c in &convs {
                let days: Vec<i64> = c.touches.iter().map(|t| t.1).collect();
                let (num, den) = exact_weights(model, &days);
                let mut owed = [0i128; CAMPAIGNS.len()];
                for ((camp, _), w) in c.touches.iter().zip(&num) {
                    owed[*camp] += *w;
                }
                for (k, o) in owed.iter().enumerate() {
                    exact[k] += exact_share(c.value, *o, den);
                }
            }
            let got = by_campaign(&f, model);
            let metric = |c: &str| f.metrics.iter().filter(|m| m.campaign_id == c).map(|m| m.revenue).sum::<Decimal>();
            for (k, camp) in CAMPAIGNS.iter().enumerate() {
                let rows = got.get(*camp).copied().unwrap_or(Decimal::ZERO);
                let off = (e18(rows) - exact[k]).abs();
                prop_assert!(off <= E18 / 100, "{:?} {}: {} vs exact {}e-18 ({} conversions)", model, camp, rows, exact[k], convs.len());
                prop_assert_eq!(metric(camp), rows);
            }
            for s in f.attributions.iter().filter(|s| s.model == model) {
                prop_assert_eq!(s.rows().map(|r| r.attributed_revenue).sum::<Decimal>(), s.value);
            }
        }
    }
}
