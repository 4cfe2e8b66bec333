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
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").current_dir(dir).env("TOUCHLINE_HTTP_ADDR", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::null());
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
