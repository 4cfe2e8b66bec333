//! The BI examples (clickhouse/examples/*.sql) on the real server, over the fixed dataset
//! (clickhouse/testdata/bi_dataset.sql), against numbers worked out by hand; and each example
//! appears verbatim in README.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::TestDb;
use touchline_clickhouse::migrate::split_statements;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("clickhouse/examples"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    names
}

/// Compares TSV output with expected rows written with single spaces between fields; numbers
/// compare by value (servers print decimals differently), `\N` is NULL.
fn assert_rows(name: &str, tsv: &str, expected: &[&str]) {
    let got: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    let want: Vec<Vec<&str>> = expected.iter().map(|l| l.split(' ').collect()).collect();
    let same = got.len() == want.len()
        && got.iter().zip(&want).all(|(g, w)| {
            g.len() == w.len()
                && g.iter().zip(w).all(|(a, b)| match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    _ => a == b,
                })
        });
    assert!(same, "{name} returned\n{tsv}\nexpected\n{}", expected.join("\n"));
}

/// The expected results, worked out from the dataset's comments and rows:
fn expected(name: &str) -> &'static [&'static str] {
    match name {
        // 03-01 spring: ad1 = partition 0's latest version (120 imp, 12 clk, 50 reach, 3 conv,
        // 90 rev, 30 cost; the superseded 100/10/… and the copy do not count) + partition 1
        // (80, 8, 30, 1, 30, 10), plus ad2 (50 imp, 25 reach, 5 cost): 250 imp, 20 clk,
        // 105 reach, 4 conv, 120 rev, 45 cost; frequency 250/105 = 2.381, ctr 20/250 = 0.08,
        // cpc 45/20 = 2.25, cpm 45000/250 = 180, cpa 45/4 = 11.25, roas 120/45 = 2.6667.
        // 03-02 spring: 200/20/100/4/100/40 → 2, 0.1, 2, 200, 10, 2.5. summer: all zero, so
        // every ratio is NULL. Account b2 is not shown.
        "01_daily_report_per_campaign.sql" => &[
            "2026-03-01 spring 250 20 105 2.381 4 120 45 0.08 2.25 180 11.25 2.6667",
            "2026-03-02 spring 200 20 100 2 4 100 40 0.1 2 200 10 2.5",
            "2026-03-02 summer 0 0 0 \\N 0 0 0 \\N \\N \\N \\N \\N",
        ],
        // first_touch: c1 → t1 spring (100; its copy counts once) + o2 → t3 spring (60).
        // last_touch: c1's newer version credits t2 summer (100), not t1; o2 → spring (60);
        // c3 is direct (no campaign, 0). linear: c1 split 0.5/0.5 spring/summer (50 + 50),
        // o2 all spring (60): spring 1.5 and 110, summer 0.5 and 50. markov: c1 by channel
        // weights 1/4 spring (25), 3/4 summer (75), o2 all spring (60): spring 1.25 and 85.
        "02_attribution_by_model.sql" => &[
            "first_touch spring 2 160",
            "last_touch (none) 1 0",
            "last_touch spring 1 60",
            "last_touch summer 1 100",
            "linear spring 1.5 110",
            "linear summer 0.5 50",
            "markov spring 1.25 85",
            "markov summer 0.75 75",
        ],
        // The same credits, one column per model; no rows for the other models (shapley among them).
        "03_models_side_by_side.sql" => {
            &[" 0 1 0 0 0 0 0 0 0 0", "spring 2 1 0 1.5 0 0 1.25 0 60 110", "summer 0 1 0 0.5 0 0 0.75 0 100 50"]
        }
        // Viewed: p1, p2, cu3, p5 (p4 never viewed). Added after viewing within 24 h: p1, p2
        // (p5 added 25 h later). Ordered after adding: p1 (cu3 skipped the cart).
        "04_funnel.sql" => &["4 2 1"],
        // 03-01 spring1: k1 (its copy counts once), k2, bot k3 → 3 clicks, 2 human, 2 unique,
        // devices d1, d2. summer1: k4. 03-02 spring1: k5, k6 (a repeat of d1) → 2, 2, 1, 1.
        "05_link_clicks_per_day.sql" => &["2026-03-01 spring1 3 2 2 2", "2026-03-01 summer1 1 1 1 1", "2026-03-02 spring1 2 2 1 1"],
        other => panic!("no expected result for example {other}: add one to this test (and to scripts/chdb_check.py)"),
    }
}

#[tokio::test]
async fn bi_examples_return_the_expected_numbers() {
    let db = TestDb::migrated("bi").await;
    for stmt in split_statements(&read("clickhouse/testdata/bi_dataset.sql"), &db.name).unwrap() {
        db.exec(&stmt).await;
    }
    let names = examples();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        let statements = split_statements(&read(&format!("clickhouse/examples/{name}")), &db.name).unwrap();
        assert_eq!(statements.len(), 1, "{name}: one query per example file");
        let out = db.tsv(&statements[0]).await;
        assert_rows(&name, &out, expected(&name));
    }
}

#[test]
fn docs_list_every_example_and_only_examples_that_exist() {
    let page = read("docs/clickhouse.md");
    for name in examples() {
        assert!(page.contains(&format!("`clickhouse/examples/{name}`")), "docs/clickhouse.md must list clickhouse/examples/{name}");
    }
    let listed: Vec<&str> = page.split("`clickhouse/examples/").skip(1).filter_map(|rest| rest.split('`').next()).collect();
    for name in listed.iter().filter(|n| !n.is_empty()) {
        assert!(
            root().join("clickhouse/examples").join(name).exists(),
            "docs/clickhouse.md lists clickhouse/examples/{name}, which does not exist"
        );
    }
}
