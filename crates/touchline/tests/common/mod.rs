//! Real servers for the integration tests: a Kafka-protocol broker (tansu) of the test's own,
//! a ClickHouse database and a Postgres database of the test's own, and the app itself served
//! on loopback.
#![allow(dead_code)]

pub mod dataset;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The librdkafka property every Kafka test sets. tansu 0.6 answers a fetch from an offset
/// inside a record batch with the *next* batch (the records before it in that batch are
/// skipped) and reports the high watermark as the last batch's base offset + 1; Apache Kafka
/// does neither. With one record per batch every offset starts a batch, so consumers restarting
/// from a checkpoint see every record. Users on Kafka keep librdkafka's batching.
pub const TANSU_ONE_RECORD_PER_BATCH: (&str, &str) = ("batch.num.messages", "1");

/// A tansu broker on a free loopback port, killed on drop.
pub struct Broker {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

pub fn tansu_bin() -> PathBuf {
    std::env::var_os("TOUCHLINE_TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/touchline/tansu/bin/tansu"))
}

impl Broker {
    pub fn start() -> Broker {
        let bin = tansu_bin();
        assert!(bin.exists(), "the tansu broker is needed at {} (run scripts/tansu.sh build, or set TOUCHLINE_TANSU_BIN)", bin.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .args(["broker", "--cluster-id", "touchline-test"])
            .args(["--listener-url", &format!("tcp://{addr}"), "--advertised-listener-url", &format!("tcp://{addr}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not answer on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { addr, child, _dir: dir }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn clickhouse_url() -> String {
    std::env::var("TOUCHLINE_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A ClickHouse database name of the test's own (created by the app's migrations).
pub fn clickhouse_database(tag: &str) -> String {
    format!("touchline_{tag}_{}", uuid::Uuid::new_v4().simple())
}

pub async fn drop_clickhouse_database(name: &str) {
    let _ = reqwest::Client::new().post(clickhouse_url()).body(format!("DROP DATABASE IF EXISTS {name}")).send().await;
}

/// A Postgres database of the test's own; returns its URL.
pub async fn postgres_database(tag: &str) -> (String, String) {
    use sqlx::Connection;
    let server = std::env::var("TOUCHLINE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("touchline_{tag}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await.expect("the test Postgres must be running");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    (format!("{server}/{name}"), name)
}

pub async fn drop_postgres_database(name: &str) {
    use sqlx::Connection;
    let server = std::env::var("TOUCHLINE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
    }
}

/// Attribution rows in a stable order (Postgres and ClickHouse sort text differently).
pub fn sorted_attributions(mut v: Vec<touchline_sql::AttributionRow>) -> Vec<touchline_sql::AttributionRow> {
    v.sort_by(|a, b| {
        (&a.conversion_id, &a.attribution_model, &a.touchpoint_id).cmp(&(&b.conversion_id, &b.attribution_model, &b.touchpoint_id))
    });
    v
}

/// Serves `app` on a free loopback port until the returned sender is dropped; returns its base
/// URL (`http://127.0.0.1:PORT`).
pub async fn serve_on_loopback(app: touchline::app::App) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    (base, tx)
}
