//! The DDL runner. Files under `clickhouse/` (`NNNN_name.sql`) are applied in order, then the
//! files under `clickhouse/extras/`; each applied file is recorded in
//! `<database>.schema_migrations` with its SHA-256, so re-running is a no-op and an applied
//! file that was edited afterwards is an error naming it.
//!
//! # Version gating
//!
//! A file whose first lines hold `-- requires: MAJOR.MINOR` is applied only on servers of at
//! least that version. On an older server it is skipped and *not* recorded, so the first
//! `migrate` after an upgrade applies it. The gated files live under `clickhouse/extras/`:
//! nothing in the base schema depends on them.
//!
//! # The database name
//!
//! The files say `touchline.table`; the runner replaces the identifier `touchline` followed by
//! `.` (outside strings and comments) with the configured database, so the same files serve
//! production (`touchline`) and tests (one database each), and still run as they are with
//! `clickhouse-client --multiquery < clickhouse/0001_raw.sql`.

use sha2::{Digest, Sha256};

use crate::{ClickHouse, Error, Result, ServerVersion};

/// One DDL file, embedded at build time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Path under `clickhouse/`: `0001_raw.sql`, `extras/0001_retention_ttl.sql`.
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! ddl {
    ($($name:literal),* $(,)?) => {
        &[$(Migration { name: $name, sql: include_str!(concat!("../../../clickhouse/", $name)) }),*]
    };
}

/// Every migration, in the order applied. A test checks this list against the directory.
pub static MIGRATIONS: &[Migration] = ddl![
    "0001_raw.sql",
    "0002_results.sql",
    "0003_reports.sql",
    "0004_link_clicks.sql",
    "0005_journeys.sql",
    "0006_reach.sql",
    "0007_metric_currency.sql",
    "0008_report_currency.sql",
    "extras/0001_retention_ttl.sql",
    "extras/0002_low_cardinality.sql",
    "extras/0003_insert_dedup_window.sql",
];

pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

impl Migration {
    /// Hex SHA-256 of the file as written.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    /// The `-- requires: MAJOR.MINOR` header, if any (in the leading comment block).
    pub fn requires(&self) -> Result<Option<ServerVersion>> {
        for line in self.sql.lines() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            let Some(comment) = t.strip_prefix("--") else { break };
            if let Some(v) = comment.trim().strip_prefix("requires:") {
                return ServerVersion::parse(v).map(Some).ok_or_else(|| Error::Migration {
                    file: self.name.into(),
                    message: format!("bad `-- requires:` header {:?}: use MAJOR.MINOR", v.trim()),
                });
            }
        }
        Ok(None)
    }

    /// The statements of the file with the database substituted.
    pub fn statements(&self, database: &str) -> Result<Vec<String>> {
        split_statements(self.sql, database).map_err(|message| Error::Migration { file: self.name.into(), message })
    }
}

/// What [`migrate`] does with a file on a server of some version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanStep {
    Apply,
    /// The server is older than the file's `-- requires:`.
    Skip {
        requires: ServerVersion,
    },
}

/// The decision for every migration on a server of `version` (pure; [`migrate`] follows it
/// for the files not applied yet).
pub fn plan(version: &ServerVersion) -> Result<Vec<(&'static Migration, PlanStep)>> {
    MIGRATIONS
        .iter()
        .map(|m| {
            Ok((
                m,
                match m.requires()? {
                    Some(r) if !version.at_least(r.major, r.minor) => PlanStep::Skip { requires: r },
                    _ => PlanStep::Apply,
                },
            ))
        })
        .collect()
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Applied {
    name: String,
    checksum: String,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct Record<'a> {
    name: &'a str,
    checksum: &'a str,
    applied_at: u32,
    server_version: &'a str,
}

/// Creates the database when missing and applies every migration not applied yet that the
/// server supports. Returns the names applied by this call (empty when up to date).
pub async fn migrate(ch: &ClickHouse) -> Result<Vec<String>> {
    let db = ch.database();
    ch.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}"), "CREATE DATABASE").await?;
    ch.execute(
        &format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (name String, checksum String, applied_at DateTime('UTC'), \
             server_version String) ENGINE = ReplacingMergeTree ORDER BY name"
        ),
        "CREATE TABLE schema_migrations",
    )
    .await?;
    let applied: Vec<Applied> = ch
        .bounded(
            "reading schema_migrations",
            ch.client()
                .query_raw(&format!("SELECT name, any(checksum) AS checksum FROM {db}.schema_migrations GROUP BY name"))
                .fetch_all::<Applied>(),
        )
        .await?;
    let applied: std::collections::HashMap<String, String> = applied.into_iter().map(|a| (a.name, a.checksum)).collect();
    let mut done = Vec::new();
    for (m, step) in plan(ch.version())? {
        let checksum = m.checksum();
        if let Some(stored) = applied.get(m.name) {
            if *stored != checksum {
                return Err(Error::ChangedMigration { file: m.name.into(), applied: stored.clone(), current: checksum });
            }
            continue;
        }
        if let PlanStep::Skip { requires } = step {
            tracing::info!(file = m.name, %requires, server = %ch.version(), "migration skipped: the server is too old");
            continue;
        }
        for (i, stmt) in m.statements(db)?.iter().enumerate() {
            ch.execute(stmt, &format!("migration {} statement {}", m.name, i + 1)).await.map_err(|e| Error::Migration {
                file: m.name.into(),
                message: format!("statement {} failed: {e}\n{}", i + 1, first_line(stmt)),
            })?;
        }
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        let version = ch.version().to_string();
        let mut insert = ch
            .client()
            .insert_unescaped::<Record<'_>>(&format!("{db}.schema_migrations"))
            .await
            .map_err(|e| ch.query_error("recording a migration", e))?;
        let record = Record { name: m.name, checksum: &checksum, applied_at: now, server_version: &version };
        ch.bounded("recording a migration", async {
            insert.write(&record).await?;
            insert.end().await
        })
        .await?;
        tracing::info!(file = m.name, "migration applied");
        done.push(m.name.to_owned());
    }
    Ok(done)
}

fn first_line(stmt: &str) -> &str {
    stmt.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("--")).unwrap_or("")
}

/// Splits a SQL file into statements on `;` outside strings, quoted identifiers and comments,
/// dropping statements that hold only comments, and replaces the identifier `touchline`
/// followed by `.` with `database` (outside strings and comments).
pub fn split_statements(sql: &str, database: &str) -> Result<Vec<String>, String> {
    crate::check_identifier(database).map_err(|e| e.to_string())?;
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has_code = false;
    let mut i = 0;
    // Byte indexes only land on ASCII characters we matched, so slicing stays on char
    // boundaries.
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                cur.push_str(&sql[i..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").map(|n| i + 2 + n + 2).ok_or("unterminated /* comment")?;
                cur.push_str(&sql[i..end]);
                i = end;
            }
            b'\'' | b'"' | b'`' => {
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => return Err(format!("unterminated {} quote", c as char)),
                        Some(b'\\') => j += 2,
                        Some(&q) if q == c => {
                            if b.get(j + 1) == Some(&c) {
                                j += 2;
                            } else {
                                j += 1;
                                break;
                            }
                        }
                        Some(_) => j += 1,
                    }
                }
                let j = j.min(b.len());
                cur.push_str(&sql[i..j]);
                has_code = true;
                i = j;
            }
            b';' => {
                if has_code {
                    out.push(cur.trim().to_owned());
                }
                cur.clear();
                has_code = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                let prev_dot = start > 0 && b[start - 1] == b'.';
                if word == "touchline" && b.get(i) == Some(&b'.') && !prev_dot {
                    cur.push_str(database);
                } else {
                    cur.push_str(word);
                }
                has_code = true;
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or(' ');
                if !ch.is_whitespace() {
                    has_code = true;
                }
                cur.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if has_code {
        out.push(cur.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_strings_and_comments() {
        let sql = "-- header; with a semicolon\nCREATE TABLE touchline.a (x String DEFAULT 'a;b') ENGINE = Log;\n\
                   /* block; comment */ SELECT 'touchline.x', `touchline`.y FROM touchline.a;\n-- trailing comment only\n";
        let s = split_statements(sql, "t_1").unwrap();
        assert_eq!(s.len(), 2, "{s:#?}");
        assert!(s[0].ends_with("CREATE TABLE t_1.a (x String DEFAULT 'a;b') ENGINE = Log"), "{}", s[0]);
        assert!(s[1].contains("SELECT 'touchline.x', `touchline`.y FROM t_1.a"), "{}", s[1]);
    }

    #[test]
    fn only_the_database_identifier_is_replaced() {
        let s = split_statements("SELECT touchline_x.a, x.touchline.b, touchline.c, 'it''s touchline.' FROM touchline.t", "db").unwrap();
        assert_eq!(s, vec!["SELECT touchline_x.a, x.touchline.b, db.c, 'it''s touchline.' FROM db.t"]);
        assert!(split_statements("SELECT 1", "bad;name").is_err());
        assert!(split_statements("SELECT 'open", "db").is_err());
        assert!(split_statements("SELECT 1 /* open", "db").is_err());
    }

    #[test]
    fn non_ascii_text_survives() {
        let s = split_statements("SELECT 'Đà Nẵng — ổn' AS x; -- chú thích\n", "db").unwrap();
        assert_eq!(s, vec!["SELECT 'Đà Nẵng — ổn' AS x"]);
    }

    #[test]
    fn every_file_under_clickhouse_is_listed_in_order() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clickhouse");
        let mut on_disk = Vec::new();
        for dir in ["", "extras/"] {
            let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .map(|n| format!("{dir}{n}"))
                .collect();
            names.sort();
            on_disk.extend(names);
        }
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(listed, on_disk, "MIGRATIONS must list every .sql file under clickhouse/ and clickhouse/extras/, in order");
        for m in MIGRATIONS {
            let number = m.name.rsplit('/').next().unwrap_or("");
            assert!(
                number.len() > 5 && number[..4].chars().all(|c| c.is_ascii_digit()) && &number[4..5] == "_",
                "{} is not NNNN_name.sql",
                m.name
            );
            assert!(!m.statements("touchline").unwrap().is_empty(), "{} has no statement", m.name);
        }
    }

    #[test]
    fn base_files_need_no_version_and_extras_do() {
        for m in MIGRATIONS {
            let req = m.requires().unwrap();
            assert_eq!(
                req.is_some(),
                m.name.starts_with("extras/"),
                "{}: base files run everywhere, extras declare `-- requires:`",
                m.name
            );
        }
    }

    #[test]
    fn the_plan_skips_extras_on_18_16_and_applies_them_on_current_servers() {
        let old = plan(&ServerVersion::new(18, 16, 1)).unwrap();
        for (m, step) in &old {
            assert_eq!(matches!(step, PlanStep::Apply), !m.name.starts_with("extras/"), "{}", m.name);
        }
        let new = plan(&ServerVersion::new(25, 8, 0)).unwrap();
        assert!(new.iter().all(|(_, s)| *s == PlanStep::Apply));
        let mid = plan(&ServerVersion::new(21, 8, 0)).unwrap();
        let applied: Vec<&str> = mid.iter().filter(|(_, s)| *s == PlanStep::Apply).map(|(m, _)| m.name).collect();
        assert!(applied.contains(&"extras/0001_retention_ttl.sql") && !applied.contains(&"extras/0003_insert_dedup_window.sql"));
    }

    #[test]
    fn requires_header_errors_name_the_file() {
        let m = Migration { name: "extras/9999_x.sql", sql: "-- requires: soon\nSELECT 1;" };
        let e = m.requires().unwrap_err().to_string();
        assert!(e.contains("extras/9999_x.sql") && e.contains("soon"), "{e}");
        let m = Migration { name: "x.sql", sql: "SELECT 1;\n-- requires: 99.1\n" };
        assert_eq!(m.requires().unwrap(), None, "only the leading comment block counts");
    }
}
