//! The binary as a user runs it: `touchline serve` with no configuration, then `tail`.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_touchline");

struct Server {
    child: Child,
    base: String,
    banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &std::path::Path, envs: &[(&str, &str)]) -> Server {
    start(dir, "serve", envs)
}

/// Starts `touchline ROLE` (serve or collector) and reads its banner.
fn start(dir: &std::path::Path, role: &str, envs: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.arg(role).current_dir(dir).env("TOUCHLINE_HTTP_ADDR", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    let mut base = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = Some(rest.trim().to_owned());
        }
        let done = line.contains("touchline tail");
        banner.push(line);
        if done {
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("no banner: {banner:?}"));
    Server { child, base, banner }
}

fn tail(dir: &std::path::Path, topic: &str) -> Vec<Value> {
    let out = Command::new(BIN).args(["tail", "--topic", topic]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "tail failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn serve_with_no_config_then_tail() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let key_line = server.banner.iter().find(|l| l.contains("write key:")).expect("first start prints the write key");
    let key = key_line.split_whitespace().last().unwrap().to_owned();
    assert!(server.banner.iter().any(|l| l.contains("secret key:")));
    assert!(dir.path().join("data/log/meta.json").exists(), "embedded default under ./data");
    assert!(dir.path().join("data/touchline.db").exists(), "SQLite store under ./data");

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/batch", server.base))
        .bearer_auth(&key)
        .json(&json!({"batch": [
            {"type": "event", "event_name": "page_view", "anonymous_id": "v1", "message_id": "m1"},
            {"type": "conversion", "kind": "purchase", "value": "12.00", "currency": "USD", "customer_id": "c1"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("# HELP touchline_records_accepted_total"));
    assert!(m.contains("touchline_records_accepted_total 2"), "{m}");
    // The aggregator's time per stage: labelled counters, the sink's once it has written.
    assert!(m.contains("touchline_aggregator_stage_seconds_total{stage=\"engine\"} "), "{m}");
    // The sinks write before the checkpoint that covers them, so wait for both.
    let state_bytes = |metrics: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix("touchline_aggregator_state_bytes ")).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let mut flushed = String::new();
    for _ in 0..100 {
        flushed = http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
        if flushed.contains("touchline_aggregator_sink_seconds_total{sink=\"sqlite\",rows=\"raw\"}") && state_bytes(&flushed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        flushed.contains("touchline_aggregator_sink_seconds_total{sink=\"sqlite\",rows=\"raw\"}"),
        "no sink time after 10 s: {flushed}"
    );
    assert!(state_bytes(&flushed) > 13, "a checkpointed state holding two records: {flushed}");

    // tail reads while the server runs.
    let events = tail(dir.path(), "touchline.events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["record_id"], "m1");
    assert_eq!(tail(dir.path(), "touchline.conversions")[0]["value"], "12.00");
    drop(server);

    // Second start: same account, no new keys printed, the old key still works, records kept.
    let server = serve(dir.path(), &[]);
    assert!(!server.banner.iter().any(|l| l.contains("write key:")), "{:?}", server.banner);
    let r = http
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(&key)
        .json(&json!({"event_name": "x", "anonymous_id": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(tail(dir.path(), "touchline.events").len(), 2);
}

#[tokio::test]
async fn fixed_keys_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &[("TOUCHLINE_WRITE_KEY", "tl_wk_fixed_key_for_ci_0001"), ("TOUCHLINE_SECRET_KEY", "tl_sk_fixed_key_for_ci_0001")],
    );
    assert!(!server.banner.iter().any(|l| l.contains("write key:")));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/events", server.base))
        .bearer_auth("tl_wk_fixed_key_for_ci_0001")
        .json(&json!({"event_name": "x", "anonymous_id": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/v1/events", server.base))
        .bearer_auth("tl_wk_something_else")
        .json(&json!({"event_name": "x", "anonymous_id": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn bad_config_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.arg("serve").current_dir(dir.path()).env("TOUCHLINE_HTTP_ADDR", "127.0.0.1:0");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{envs:?} was accepted");
        String::from_utf8_lossy(&out.stderr).to_lowercase()
    };
    let e = run(&[("TOUCHLINE_KAFKA_BROKERS", "no-port-here")]);
    assert!(e.contains("kafka.brokers") && e.contains("no-port-here"), "{e}");
    let e = run(&[("TOUCHLINE_KAFKA_BROKERS", "127.0.0.1:9092"), ("TOUCHLINE_KAFKA__PARTITIONS", "0")]);
    assert!(e.contains("kafka.partitions"), "{e}");
    let e = run(&[("TOUCHLINE_REPORTS_SOURCE", "clickhouse")]);
    assert!(e.contains("clickhouse_url"), "{e}");
    let e = run(&[("TOUCHLINE_HTTP_ADDR", "nowhere")]);
    assert!(e.contains("http_addr"), "{e}");
}

/// A key added to the catalog in SQL, by another client, works on the running server without
/// a restart.
#[tokio::test]
async fn catalog_changes_in_sql_reach_the_running_server() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let db = dir.path().join("data/touchline.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let account: String = sqlx::query_scalar("SELECT id FROM accounts WHERE name = 'default'").fetch_one(&mut conn).await.unwrap();
    let key = "tl_wk_added_by_sql_0000000001";
    let hash = touchline_collector::hash_key(key);
    let http = reqwest::Client::new();
    let send =
        || http.post(format!("{}/v1/events", server.base)).bearer_auth(key).json(&json!({"event_name": "x", "anonymous_id": "v"})).send();
    assert_eq!(send().await.unwrap().status(), 401);
    sqlx::query("INSERT INTO api_keys (account_id, kind, key_hash, prefix) VALUES (?, 'write', ?, 'tl_wk_adde')")
        .bind(&account)
        .bind(&hash)
        .execute(&mut conn)
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if send().await.unwrap().status() == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the new key was not accepted within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Revoking it in SQL locks it out again.
    sqlx::query("UPDATE api_keys SET revoked_at = '2026-01-01T00:00:00Z' WHERE key_hash = ?").bind(&hash).execute(&mut conn).await.unwrap();
    let start = std::time::Instant::now();
    while send().await.unwrap().status() != 401 {
        assert!(start.elapsed() < Duration::from_secs(15), "the revoked key still works after 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records the collector appended to the entity topics of the embedded log under `dir` (the
/// aggregator's own identity re-key records left out).
fn count_log(dir: &std::path::Path) -> usize {
    ["touchline.events", "touchline.touchpoints", "touchline.conversions", "touchline.spend", "touchline.identities"]
        .iter()
        .flat_map(|t| tail(dir, t))
        .filter(|r| r["type"] != "identity_transfer")
        .count()
}

#[test]
fn generate_writes_what_it_reports_and_replay_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["generate", "--visitors", "60", "--days", "2", "--json", "--quiet"])
        .env("TOUCHLINE_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "generate failed: {}", String::from_utf8_lossy(&out.stderr));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reported = g["records"].as_u64().unwrap() as usize;
    // 60 + 20 visitors with 1-5 touches each, plus 2 accounts x 3 days x (3 + 1) campaigns x 2 ads
    // of spend: at least 80 + 48 records.
    assert!(reported >= 128, "{g}");
    let data = dir.path().join("data");
    let in_log = ["touchline.events", "touchline.touchpoints", "touchline.conversions", "touchline.spend", "touchline.identities"]
        .iter()
        .map(|t| {
            let out = Command::new(BIN).args(["tail", "--topic", t]).env("TOUCHLINE_DATA_DIR", &data).output().unwrap();
            String::from_utf8(out.stdout).unwrap().lines().count()
        })
        .sum::<usize>();
    assert_eq!(in_log, reported, "the log holds exactly the records generate reported");

    let out = Command::new(BIN).args(["replay", "--quiet", "--json"]).env("TOUCHLINE_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["complete"], true);
    // Every generated record, plus the identity re-key records the replay appends itself.
    assert!(r["records"].as_u64().unwrap() as usize >= reported, "{r}");
    // Every stage that had work reports time spent, and the embedded default's one sink too.
    for stage in ["read", "decode", "engine", "snapshot", "checkpoint", "sinks"] {
        assert!(r["stage_seconds"][stage].as_f64().unwrap() > 0.0, "no time in {stage}: {r}");
    }
    // Raw records go to the Parquet warehouse, results to SQLite.
    let raw = r["sink_seconds"]["warehouse"]["raw"].as_f64().unwrap();
    let results = r["sink_seconds"]["sqlite"]["results"].as_f64().unwrap();
    assert!(raw > 0.0 && results > 0.0, "{r}");
    let parts: f64 =
        ["warehouse", "sqlite"].iter().flat_map(|s| ["raw", "results"].map(|k| r["sink_seconds"][*s][k].as_f64().unwrap_or(0.0))).sum();
    let sinks = r["stage_seconds"]["sinks"].as_f64().unwrap();
    assert!((sinks - parts).abs() < 1e-6, "the sinks stage is the sum of the sinks' parts: {r}");
    // The warehouse holds every generated record once, although the replay rewrote it.
    let mut ids = touchline_warehouse::Warehouse::new(data.join("warehouse")).all_record_keys().unwrap();
    assert_eq!(ids.len(), reported, "one row per generated record");
    ids.dedup();
    assert_eq!(ids.len(), reported, "no record twice");
    // 60 visitors leave some state: more than a snapshot's 13-byte header per partition.
    assert!(r["state_bytes"].as_u64().unwrap() > 8 * 13, "{r}");
}

#[test]
fn replay_stops_at_its_time_limit_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN).args(["generate", "--visitors", "3000", "--quiet"]).env("TOUCHLINE_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success(), "generate failed: {}", String::from_utf8_lossy(&out.stderr));
    let started = std::time::Instant::now();
    let out =
        Command::new(BIN).args(["replay", "--quiet", "--json", "--time-limit", "0.2"]).env("TOUCHLINE_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // A debug build replays ~25 k records far slower than 0.2 s: the limit must have stopped it.
    assert_eq!(r["complete"], false, "{r}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let bad = Command::new(BIN).args(["replay", "--time-limit", "0"]).env("TOUCHLINE_DATA_DIR", &data).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--time-limit must be a positive number"));
}

#[tokio::test]
async fn loadgen_counts_what_the_server_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (wk, sk) = ("tl_wk_loadgen_test_key_0001", "tl_sk_loadgen_test_key_0001");
    let server = serve(dir.path(), &[("TOUCHLINE_WRITE_KEY", wk), ("TOUCHLINE_SECRET_KEY", sk)]);
    let run = |mix: &str, extra: &[&str]| {
        let mut args = vec!["loadgen", "--url", &server.base, "--write-key", wk, "--secret-key", sk, "--mix", mix];
        args.extend_from_slice(&["--connections", "4", "--duration", "0.5", "--warmup", "0", "--batch", "10", "--json"]);
        args.extend_from_slice(extra);
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "loadgen {mix} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let batch = run("batch", &[]);
    assert_eq!(batch["errors"], 0, "{batch}");
    assert!(batch["requests"].as_u64().unwrap() > 0, "{batch}");
    assert_eq!(batch["records"].as_u64().unwrap(), batch["requests"].as_u64().unwrap() * 10);
    // Paced: 40 requests/s over 4 connections for 0.5 s is 20 requests, give or take the edges.
    let paced = run("pixel", &["--rate", "40"]);
    assert_eq!(paced["errors"], 0, "{paced}");
    let n = paced["requests"].as_u64().unwrap();
    assert!((16..=24).contains(&n), "{paced}");
    // Redirects need links, which loadgen creates with the secret key.
    let redirects = run("redirect", &[]);
    assert_eq!(redirects["errors"], 0, "{redirects}");
    assert!(redirects["requests"].as_u64().unwrap() > 0);

    // Every acknowledged record is in the log (with no warm-up, every request sent is counted;
    // clicks are appended by the redirect's queue, so wait for them).
    let expected = batch["records"].as_u64().unwrap() + n + redirects["requests"].as_u64().unwrap();
    let mut clicks_and_records = 0;
    for _ in 0..50 {
        clicks_and_records = count_log(dir.path()) + tail(dir.path(), "touchline.link_clicks").len();
        if clicks_and_records as u64 >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(clicks_and_records as u64, expected);

    let wrong = Command::new(BIN).args(["loadgen", "--url", &server.base, "--mix", "pixle"]).output().unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("unknown shape `pixle`"));
}

/// Redirects answer before their click is on the bus (the click queue); a clean stop must still
/// put every answered click in the log. The stop comes while the load is running, so clicks
/// are queued and in flight when it arrives. The collector role exits as soon as its HTTP side
/// has stopped (no aggregator to flush), so nothing else gives the queue time to drain.
#[tokio::test]
async fn a_clean_stop_under_load_keeps_every_answered_click() {
    let dir = tempfile::tempdir().unwrap();
    let sk = "tl_sk_clicks_stop_test_0001";
    // A tiny journal retires after every commit, fsyncing every segment: each append of queued
    // clicks takes long enough that some are always waiting when the stop arrives.
    let mut server = start(dir.path(), "collector", &[("TOUCHLINE_SECRET_KEY", sk), ("TOUCHLINE_LOG__JOURNAL_BYTES", "4096")]);
    let args = ["--url", &server.base, "--secret-key", sk, "--mix", "redirect", "--connections", "16"];
    let load = Command::new(BIN)
        .arg("loadgen")
        .args(args)
        .args(["--duration", "4", "--warmup", "0", "--links", "5", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let _ = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status();
    let exited = tokio::task::spawn_blocking(move || {
        let status = server.child.wait();
        (server, status)
    });
    let (_server, status) = tokio::time::timeout(Duration::from_secs(30), exited).await.expect("serve did not stop on SIGTERM").unwrap();
    assert!(status.unwrap().success(), "serve exited with an error on SIGTERM");
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "loadgen failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let answered = report["acknowledged"].as_u64().unwrap();
    assert!(answered > 100, "too few redirects before the stop to prove anything: {report}");
    assert_eq!(tail(dir.path(), "touchline.link_clicks").len() as u64, answered, "{report}");
}

#[test]
fn config_prints_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("touchline.toml");
    std::fs::write(
        &file,
        r#"
database_url = "postgres://app:pg-s3cret@db.example:5432/touchline?sslpassword=pg-ssl-s3cret&application_name=tl"
clickhouse_url = "http://default:ch-s3cret@ch.example:8123/?user=default&password=ch-query-s3cret"
kafka_brokers = "broker.example:9092"
secret_key = "tl_sk_config_secret_key_00001"
[clickhouse]
password = "ch-field-s3cret"
[kafka.properties]
"sasl.password" = "kafka-s3cret"
"sasl.username" = "touchline"
"#,
    )
    .unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["pg-s3cret", "pg-ssl-s3cret", "ch-s3cret", "ch-query-s3cret", "ch-field-s3cret", "kafka-s3cret", "tl_sk_config"] {
        assert!(!text.contains(secret), "`touchline config` printed {secret}:\n{text}");
    }
    // What is not a credential stays readable.
    for kept in ["app:***@db.example:5432", "application_name=tl", "user=default", "\"touchline\"", "broker.example:9092"] {
        assert!(text.contains(kept), "expected {kept} in:\n{text}");
    }
}
