//! The warehouse on a real file system: restarts remove exactly what no checkpoint covers,
//! merges keep every row once (even when interrupted), link clicks are counted, and DuckDB and
//! ClickHouse (chdb) read the files as they are.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use touchline_model::Record;
use touchline_warehouse::{compact, files, Entity, Warehouse};
use uuid::Uuid;

const ACCOUNT: Uuid = Uuid::from_u128(1);

fn event(n: u64, day: u32) -> Record {
    let json = format!(
        r#"{{"v":1,"type":"event","record_id":"e{n}","account_id":"{ACCOUNT}","timestamp":"2026-03-{day:02}T10:00:00Z",
            "received_at":"2026-03-{day:02}T10:00:01Z","anonymous_id":"v{n}","event_name":"page_view"}}"#
    );
    Record::from_json(json.as_bytes()).unwrap()
}

fn conversion(n: u64, value: &str) -> Record {
    let json = format!(
        r#"{{"v":1,"type":"conversion","record_id":"c{n}","account_id":"{ACCOUNT}","timestamp":"2026-03-01T10:00:00Z",
            "received_at":"2026-03-01T10:00:00Z","customer_id":"u{n}","kind":"purchase","value":"{value}","currency":"EUR"}}"#
    );
    Record::from_json(json.as_bytes()).unwrap()
}

/// Events `from..to` (offsets equal to their numbers) written as one flush of `partition`.
fn flush(w: &Warehouse, partition: u32, range: std::ops::Range<u64>) -> Vec<touchline_warehouse::FileName> {
    let records: Vec<Record> = range.clone().map(|n| event(n, 1)).collect();
    let offsets: Vec<u64> = range.collect();
    let written = w.write(partition, &records, &offsets).unwrap();
    let dirs: Vec<_> = written.files.iter().map(|f| (f.entity, f.date)).collect();
    w.compact(partition, &dirs, &written.files).unwrap();
    written.files
}

fn ids(w: &Warehouse, entity: Entity) -> Vec<String> {
    let mut ids: Vec<String> = w.record_ids(entity).unwrap().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    ids
}

fn expected_events(range: std::ops::Range<u64>) -> Vec<String> {
    let mut ids: Vec<String> = range.map(|n| format!("e{n}")).collect();
    ids.sort();
    ids
}

fn resume_at(w: &Warehouse, partition: u32, events: u64) -> usize {
    let offsets = BTreeMap::from([(Entity::Events.topic().to_owned(), events)]);
    w.resume(partition, &offsets).unwrap()
}

#[test]
fn a_restart_removes_what_no_checkpoint_covers_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::new(dir.path());
    flush(&w, 0, 0..10);
    flush(&w, 0, 10..20);
    flush(&w, 1, 0..5);
    // The checkpoint covers offsets below 10: the second flush's file goes, partition 1 stays.
    assert_eq!(resume_at(&w, 0, 10), 1);
    assert_eq!(ids(&w, Entity::Events), {
        let mut all = expected_events(0..10);
        all.extend(expected_events(0..5));
        all.sort();
        all
    });
    // A replay from offset 4 (a date, or the log's retention) trims the file it starts in.
    assert_eq!(resume_at(&w, 0, 4), 1);
    let kept: Vec<(String, i64)> = w.record_ids(Entity::Events).unwrap().into_iter().filter(|(_, o)| *o < 100).collect();
    let names = files::list(dir.path()).unwrap().files;
    let p0: Vec<_> = names.iter().filter(|f| f.partition == 0).collect();
    assert_eq!(p0.len(), 1);
    assert_eq!((p0[0].start, p0[0].end), (0, 4), "the trimmed file is named by what it holds");
    assert_eq!(kept.len(), 4 + 5);
    // Writing the same offsets again after the restart leaves each record once.
    flush(&w, 0, 4..20);
    let mut all = expected_events(0..20);
    all.extend(expected_events(0..5));
    all.sort();
    assert_eq!(ids(&w, Entity::Events), all);
}

#[test]
fn a_torn_write_is_removed_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::new(dir.path());
    let files = flush(&w, 3, 0..4);
    let torn = touchline_warehouse::FileName { start: 4, end: 9, ..files[0].clone() };
    std::fs::write(torn.temp_path(dir.path()), b"PAR1 half a file").unwrap();
    assert_eq!(resume_at(&w, 3, 4), 1);
    assert!(files::list(dir.path()).unwrap().temporary.is_empty());
    assert_eq!(ids(&w, Entity::Events), expected_events(0..4));
}

#[test]
fn merges_keep_every_row_once_even_when_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::new(dir.path());
    // 7 flushes: nothing to merge yet (the 8th file is always the fresh one).
    for i in 0..8 {
        flush(&w, 0, i * 3..i * 3 + 3);
    }
    let before: Vec<files::FileName> = files::list(dir.path()).unwrap().files;
    assert_eq!(before.len(), 8);
    assert!(before.iter().all(|f| f.level == 0));
    // Keep copies of the level-0 files the next merge replaces, to put them back afterwards as
    // a crash between the merged file's rename and the removals would leave them.
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> =
        before.iter().map(|f| (f.path(dir.path()), std::fs::read(f.path(dir.path())).unwrap())).collect();
    flush(&w, 0, 24..27);
    let after = files::list(dir.path()).unwrap().files;
    assert_eq!(after.iter().filter(|f| f.level == 1).count(), 1, "{after:?}");
    let merged = after.iter().find(|f| f.level == 1).unwrap();
    assert_eq!((merged.start, merged.end), (0, 24));
    assert_eq!(ids(&w, Entity::Events), expected_events(0..27));

    for (path, bytes) in &saved {
        std::fs::write(path, bytes).unwrap();
    }
    assert_eq!(ids(&w, Entity::Events), expected_events(0..27), "readers skip files a merged one covers");
    assert_eq!(resume_at(&w, 0, 27), saved.len(), "the restart removes them");
    assert_eq!(files::list(dir.path()).unwrap().files.len(), 2);

    // Enough flushes to reach the top level: every row still there once, files few.
    let flushes = (compact::FANOUT as u64).pow(2) + 5;
    for i in 9..flushes {
        flush(&w, 0, i * 3..i * 3 + 3);
    }
    assert_eq!(ids(&w, Entity::Events), expected_events(0..flushes * 3));
    let levels: Vec<u8> = files::list(dir.path()).unwrap().files.iter().map(|f| f.level).collect();
    assert!(levels.contains(&2), "{levels:?}");
    assert!(levels.len() <= 3 * (compact::FANOUT - 1) + 1, "{} files: {levels:?}", levels.len());
}

fn python() -> std::path::PathBuf {
    std::env::var_os("TOUCHLINE_TEST_PYTHON").map(Into::into).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        Path::new(&home).join(".cache/touchline/venv/bin/python")
    })
}

/// DuckDB and ClickHouse (chdb) open the files as they are: the counts, the hive `date`
/// column, the exact money sum and the timestamps come back as written.
#[test]
fn duckdb_and_clickhouse_read_the_files_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::new(dir.path());
    let mut records: Vec<Record> = (0..30).map(|n| event(n, 1 + (n % 3) as u32)).collect();
    records.extend([conversion(1, "19.99"), conversion(2, "0.000001"), conversion(3, "1000000.5")]);
    let offsets: Vec<u64> = (0..records.len() as u64).collect();
    w.write(0, &records, &offsets).unwrap();
    let script = r#"
import sys, duckdb, chdb
root = sys.argv[1]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
events = con.sql(f"SELECT date::VARCHAR, count(*) FROM read_parquet('{root}/events/*/*.parquet', hive_partitioning = true) GROUP BY 1 ORDER BY 1").fetchall()
money = con.sql(f"SELECT sum(value)::VARCHAR, typeof(sum(value)), min(timestamp)::VARCHAR FROM read_parquet('{root}/conversions/*/*.parquet')").fetchall()[0]
ch = chdb.query(f"SELECT count(), toString(sum(value)) FROM file('{root}/conversions/*/*.parquet', Parquet)", "CSV").bytes().decode().strip()
print(events)
print(money)
print(ch)
"#;
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{} with duckdb and chdb is needed (scripts/test.sh installs them): {e}", python().display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Events 0..30 arrive on 1, 2 and 3 March, ten each (n % 3).
    assert_eq!(lines[0], "[('2026-03-01', 10), ('2026-03-02', 10), ('2026-03-03', 10)]");
    // 19.99 + 0.000001 + 1000000.5 = 1000020.490001, exactly.
    assert!(lines[1].starts_with("('1000020.490001', 'DECIMAL(38,6)', '2026-03-01 10:00:00+00"), "{}", lines[1]);
    assert_eq!(lines[2], "3,\"1000020.490001\"");
}
