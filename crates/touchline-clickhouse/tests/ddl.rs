//! The DDL on the real server: applies from empty, re-applies as a no-op, refuses a changed
//! applied file, and gates the extras by server version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use touchline_clickhouse::{migrate, plan, Error, PlanStep, ServerVersion};

const TABLES: [&str; 15] = [
    "attribution_model_comparison",
    "attributions",
    "attributions_current",
    "campaign_daily_metrics",
    "campaign_daily_report",
    "conversions",
    "events",
    "identities",
    "journey_partials",
    "link_click_partials",
    "link_clicks",
    "schema_migrations",
    "sessions",
    "spend",
    "touchpoints",
];

#[tokio::test]
async fn applies_from_empty_and_reapplies_cleanly() {
    let db = TestDb::fresh("ddl").await;
    let expected: Vec<String> =
        plan(db.ch.version()).unwrap().into_iter().filter(|(_, s)| *s == PlanStep::Apply).map(|(m, _)| m.name.to_owned()).collect();
    let applied = migrate(&db.ch).await.expect("first migrate");
    assert_eq!(applied, expected, "every file the server supports, in order");
    assert!(applied.starts_with(&["0001_raw.sql".to_owned(), "0002_results.sql".to_owned(), "0003_reports.sql".to_owned()]));

    let tables = db.tsv(&format!("SELECT name FROM system.tables WHERE database = '{}' ORDER BY name", db.name)).await;
    for t in TABLES {
        assert!(tables.lines().any(|l| l == t), "{t} missing from {tables}");
    }
    let recorded = db.tsv(&format!("SELECT name, length(checksum) FROM {}.schema_migrations FINAL ORDER BY name", db.name)).await;
    assert_eq!(recorded.lines().count(), expected.len(), "{recorded}");
    assert!(recorded.lines().all(|l| l.ends_with("\t64")), "sha-256 checksums: {recorded}");

    assert_eq!(migrate(&db.ch).await.expect("second migrate"), Vec::<String>::new(), "re-applying is a no-op");
    let recorded_again = db.count(&format!("SELECT count() FROM {}.schema_migrations", db.name)).await;
    assert_eq!(recorded_again as usize, expected.len(), "nothing recorded twice");
    // The views answer on the empty schema.
    for v in ["campaign_daily_report", "attributions_current", "attribution_model_comparison"] {
        assert_eq!(db.count(&format!("SELECT count() FROM {}.{v}", db.name)).await, 0);
    }
}

#[tokio::test]
async fn a_changed_applied_file_is_an_error_naming_it() {
    let db = TestDb::fresh("ddl_changed").await;
    migrate(&db.ch).await.expect("migrate");
    // As if 0002_results.sql had been edited after it was applied: the recorded checksum no
    // longer matches the file.
    db.exec(&format!(
        "INSERT INTO {}.schema_migrations (name, checksum, applied_at, server_version) VALUES ('0002_results.sql', 'deadbeef', now(), 'x')",
        db.name
    ))
    .await;
    // OPTIMIZE does nothing, and says nothing, while a background merge holds some of the
    // parts (one per applied file, so likely once there are a few), hence the repeats.
    let copies = format!("SELECT count() FROM {}.schema_migrations WHERE name = '0002_results.sql'", db.name);
    for _ in 0..100 {
        db.exec(&format!("OPTIMIZE TABLE {}.schema_migrations FINAL", db.name)).await;
        if db.count(&copies).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // ReplacingMergeTree without a version keeps the last row inserted.
    let remaining = db.tsv(&format!("SELECT checksum FROM {}.schema_migrations WHERE name = '0002_results.sql'", db.name)).await;
    assert_eq!(remaining.trim(), "deadbeef");
    let err = migrate(&db.ch).await.expect_err("a changed applied migration must fail");
    assert!(matches!(err, Error::ChangedMigration { ref file, .. } if file == "0002_results.sql"), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("0002_results.sql") && msg.contains("deadbeef") && msg.contains("new numbered file"), "{msg}");
}

#[tokio::test]
async fn extras_are_gated_by_the_server_version() {
    let db = TestDb::migrated("ddl_gate").await;
    let version = db.ch.version().clone();
    let recorded = db.tsv(&format!("SELECT name FROM {}.schema_migrations FINAL ORDER BY name", db.name)).await;
    let events = db.tsv(&format!("SHOW CREATE TABLE {}.events", db.name)).await;
    let ttl_applied = version.at_least(20, 3);
    assert_eq!(recorded.contains("extras/0001_retention_ttl.sql"), ttl_applied, "server {version}: {recorded}");
    assert_eq!(events.contains("TTL"), ttl_applied, "server {version}: {events}");
    assert_eq!(recorded.contains("extras/0003_insert_dedup_window.sql"), version.has_dedup_token(), "server {version}: {recorded}");
    if !version.at_least(20, 3) {
        // 18.16 here: the base schema is complete without the extras, and forcing an extra on
        // the old server fails with an error naming the file and the statement.
        assert!(!events.contains("LowCardinality"));
        let pretend = db.ch.clone().with_assumed_version(ServerVersion::new(25, 8, 0));
        let err = migrate(&pretend).await.expect_err("TTL is unknown to 18.16").to_string();
        assert!(err.contains("extras/0001_retention_ttl.sql") && err.contains("statement 1"), "{err}");
        // Nothing half-applied was recorded; the real version still skips the extras.
        assert_eq!(migrate(&db.ch).await.unwrap(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_that_says_how_to_start_one() {
    let cfg = touchline_clickhouse::ClickHouseConfig {
        query_timeout_secs: 5,
        ..touchline_clickhouse::ClickHouseConfig::from_url("http://127.0.0.1:1")
    };
    let err = touchline_clickhouse::connect(&cfg).await.expect_err("nothing listens on port 1").to_string();
    assert!(err.contains("127.0.0.1:1") && err.contains("scripts/clickhouse.sh"), "{err}");
}
