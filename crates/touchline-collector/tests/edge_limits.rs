//! The HTTP edge against hostile clients, over real TCP: slow and idle connections, connection
//! floods, work before authentication, failed-authentication floods, forged `X-Forwarded-For`,
//! `anonymize_ip` and CORS. Timeouts are shortened in each test's config; every wait is bounded.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use touchline_bus::{Bus, EmbeddedLog, LogConfig};
use touchline_collector::{router, serve_with, AppState, CollectorConfig, KeyInfo, KeyKind, KeyStore, MemoryKeys};
use uuid::Uuid;

const WRITE: &str = "tl_wk_edgewritekey";
const ANON: &str = "tl_wk_anonymizedacct";
const ACCOUNT: Uuid = Uuid::from_u128(0xacc);
const ANON_ACCOUNT: Uuid = Uuid::from_u128(0xa11);

/// A key store with a "store" behind it, counting the store lookups. With `memory`, it also
/// answers known keys from memory, as the catalog's snapshot does; without, like a store that
/// has no such cache, every answer is a lookup.
struct CountingKeys {
    inner: MemoryKeys,
    memory: AtomicBool,
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl KeyStore for CountingKeys {
    async fn lookup(&self, key: &str) -> Option<KeyInfo> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.lookup(key).await
    }

    fn known_valid(&self, key: &str) -> Option<KeyInfo> {
        self.memory.load(Ordering::SeqCst).then(|| self.inner.known_valid(key)).flatten()
    }
}

struct Harness {
    addr: SocketAddr,
    base: String,
    bus: Arc<EmbeddedLog>,
    state: Arc<AppState>,
    keys: Arc<CountingKeys>,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// The collector with `config`, plus `extra` routes merged outside its CORS layer as the
/// binary merges links and reports.
async fn start(config: CollectorConfig, extra: Router) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedLog::open(dir.path(), LogConfig { partitions: 2, retention_check_secs: 0, ..LogConfig::default() }).await.unwrap();
    let keys = Arc::new(CountingKeys { inner: MemoryKeys::new(), memory: AtomicBool::new(true), lookups: AtomicUsize::new(0) });
    keys.inner.insert(WRITE, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Write, anonymize_ip: false });
    keys.inner.insert(ANON, KeyInfo { account_id: ANON_ACCOUNT, kind: KeyKind::Write, anonymize_ip: true });
    let state = AppState::new(bus.clone(), keys.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state.clone()).merge(extra);
    let server = tokio::spawn(serve_with(
        app,
        listener,
        async move {
            let _ = rx.await;
        },
        state.serve_options(),
    ));
    Harness {
        addr,
        base: format!("http://{addr}"),
        bus,
        state,
        keys,
        http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
        stop: Some(tx),
        server,
        _dir: dir,
    }
}

impl Harness {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    async fn stored(&self, topic: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for p in 0..self.bus.partitions() {
            if self.bus.end_offset(topic, p).await.unwrap() == 0 {
                continue;
            }
            for r in self.bus.read(topic, p, 0, 100_000, Duration::ZERO).await.unwrap() {
                out.push(serde_json::from_slice(&r.value).unwrap());
            }
        }
        out
    }

    fn lookups(&self) -> usize {
        self.keys.lookups.load(Ordering::SeqCst)
    }

    async fn post_event(&self, key: &str, forwarded_for: Option<&str>) -> reqwest::Response {
        let mut req =
            self.http.post(format!("{}/v1/events", self.base)).bearer_auth(key).json(&json!({"event_name": "x", "anonymous_id": "a"}));
        if let Some(f) = forwarded_for {
            req = req.header("x-forwarded-for", f);
        }
        req.send().await.unwrap()
    }
}

/// Reads until the server closes the connection (EOF or reset) and returns what it sent; panics
/// if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {limit:?}; it sent {:?}", String::from_utf8_lossy(&out)),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn edge(header_ms: u64, body_ms: u64, idle_ms: u64) -> CollectorConfig {
    CollectorConfig {
        header_read_timeout_ms: header_ms,
        body_read_timeout_ms: body_ms,
        idle_timeout_ms: idle_ms,
        ..CollectorConfig::default()
    }
}

// ---- Class 4: slow clients ----

#[tokio::test]
async fn a_partial_request_head_is_closed_after_header_read_timeout() {
    let h = start(edge(300, 60_000, 60_000), Router::new()).await;
    let mut s = h.connect().await;
    s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: app").await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before the timeout: {:?}", started.elapsed());
    // hyper answers 408 to a head that timed out, or just closes.
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&got));
    wait_for("header timeout counted", Duration::from_secs(2), || h.state.stats.connections.header_timeouts.load(Ordering::Relaxed) == 1)
        .await;
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed() {
    let h = start(edge(300, 60_000, 60_000), Router::new()).await;
    let mut s = h.connect().await;
    read_until_closed(&mut s, Duration::from_secs(5)).await;
    wait_for("connection closed", Duration::from_secs(2), || h.state.stats.connections.open.load(Ordering::Relaxed) == 0).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let h = start(edge(300, 60_000, 60_000), Router::new()).await;
    let mut s = h.connect().await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The answer comes, then, with no next request, the close.
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"), "{text}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_idle_timeout() {
    // A response far larger than the socket buffers, never read: the server's writes block.
    let big = Router::new().route("/big", get(|| async { vec![b'x'; 64 * 1024 * 1024] }));
    let h = start(edge(60_000, 60_000, 300), big).await;
    let mut s = h.connect().await;
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    wait_for("stalled writer closed", Duration::from_secs(5), || h.state.stats.connections.idle_closed.load(Ordering::Relaxed) == 1).await;
    assert_eq!(h.state.stats.connections.open.load(Ordering::Relaxed), 0);
    drop(s);
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_after_body_read_timeout() {
    let h = start(edge(60_000, 300, 60_000), Router::new()).await;
    let mut s = h.connect().await;
    let head =
        format!("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"event_name\"").await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(h.state.stats.body_timeouts.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_and_counted() {
    let config = CollectorConfig { max_connections: 3, ..edge(60_000, 60_000, 60_000) };
    let h = start(config, Router::new()).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(h.connect().await);
    }
    wait_for("three connections open", Duration::from_secs(2), || h.state.stats.connections.open.load(Ordering::Relaxed) == 3).await;
    let mut extra = h.connect().await;
    let got = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 503"), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(h.state.stats.connections.refused.load(Ordering::Relaxed), 1);
    // A slot freed is a slot usable.
    drop(held.pop());
    wait_for("a slot freed", Duration::from_secs(2), || h.state.stats.connections.open.load(Ordering::Relaxed) == 2).await;
    let r = h.http.get(format!("{}/healthz", h.base)).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_and_peers_are_known() {
    let slow = Router::new().route(
        "/slow",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            format!("done for {}", peer.ip())
        }),
    );
    let mut h = start(CollectorConfig::default(), slow).await;
    let url = format!("{}/slow", h.base);
    let http = h.http.clone();
    let in_flight = tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() });
    wait_for("request in flight", Duration::from_secs(2), || h.state.stats.connections.open.load(Ordering::Relaxed) == 1).await;
    let _ = h.stop.take().unwrap().send(());
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), in_flight).await.unwrap().unwrap(), "done for 127.0.0.1");
    tokio::time::timeout(Duration::from_secs(5), &mut h.server).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(h.addr).await.is_err(), "no longer listening");
}

// ---- Class 5: work before authentication, unthrottled failures ----

#[tokio::test]
async fn a_bad_query_key_is_refused_before_the_body_is_read() {
    let h = start(CollectorConfig::default(), Router::new()).await;
    let mut s = h.connect().await;
    // Announces 4 MiB and sends none of it.
    let head = "POST /v1/beacon?k=tl_wk_not_a_key HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4194304\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("bad_key"), "{text}");
}

#[tokio::test]
async fn unknown_keys_are_looked_up_once_until_the_negative_ttl() {
    let config = CollectorConfig { auth_failure_limit: 0, negative_key_cache_ttl_secs: 1, ..CollectorConfig::default() };
    let h = start(config, Router::new()).await;
    h.keys.memory.store(false, Ordering::SeqCst);
    let late = "tl_wk_created_a_bit_later";
    for _ in 0..30 {
        assert_eq!(h.post_event(late, None).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    assert_eq!(h.lookups(), 1, "one store lookup for thirty requests with the same unknown key");
    assert_eq!(h.state.stats.negative_key_hits.load(Ordering::Relaxed), 29);
    // The key is created: refused while the negative entry lasts, accepted after its TTL.
    h.keys.inner.insert(late, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Write, anonymize_ip: false });
    assert_eq!(h.post_event(late, None).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(h.post_event(late, None).await.status(), reqwest::StatusCode::OK);

    // A store that knows its keys in memory (the catalog's snapshot) is asked that first: a key
    // created there works at once, negative entry or not.
    h.keys.memory.store(true, Ordering::SeqCst);
    let later = "tl_wk_created_even_later";
    assert_eq!(h.post_event(later, None).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    h.keys.inner.insert(later, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Write, anonymize_ip: false });
    assert_eq!(h.post_event(later, None).await.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn failed_authentications_are_throttled_per_address() {
    let config = CollectorConfig { auth_failure_limit: 5, trust_forwarded_for: true, ..CollectorConfig::default() };
    let h = start(config, Router::new()).await;
    let attacker = Some("203.0.113.5");
    for i in 0..5 {
        assert_eq!(h.post_event(&format!("tl_wk_guess_{i}"), attacker).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let before = h.lookups();
    let r = h.post_event("tl_wk_guess_5", attacker).await;
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "auth_throttled");
    assert_eq!(h.lookups(), before, "a throttled address costs no lookup");
    // A body key from there is not even read.
    let r = h
        .http
        .post(format!("{}/v1/beacon", h.base))
        .header("x-forwarded-for", "203.0.113.5")
        .header("content-type", "text/plain")
        .body(json!({"writeKey": "tl_wk_guess_6", "type": "event", "event_name": "x", "anonymous_id": "a"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    // The pixel still answers its GIF, without a lookup.
    let r =
        h.http.get(format!("{}/p.gif?k=tl_wk_guess_7&e=x&aid=a", h.base)).header("x-forwarded-for", "203.0.113.5").send().await.unwrap();
    assert_eq!(r.headers()["x-touchline-status"], "auth_throttled");
    assert_eq!(h.lookups(), before);
    // A valid key still works from there (a good client behind the same NAT); other addresses
    // are not affected.
    assert_eq!(h.post_event(WRITE, attacker).await.status(), reqwest::StatusCode::OK);
    assert_eq!(h.post_event("tl_wk_guess_8", Some("203.0.113.6")).await.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(h.post_event(WRITE, Some("203.0.113.6")).await.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn requests_without_any_key_count_as_failures() {
    let config = CollectorConfig { auth_failure_limit: 3, ..CollectorConfig::default() };
    let h = start(config, Router::new()).await;
    for _ in 0..3 {
        let r = h.http.post(format!("{}/v1/events", h.base)).json(&json!({"event_name": "x", "anonymous_id": "a"})).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let r = h.http.post(format!("{}/v1/events", h.base)).json(&json!({"event_name": "x", "anonymous_id": "a"})).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.lookups(), 0);
}

// ---- Class 7: client address, anonymize_ip, CORS ----

#[tokio::test]
async fn forwarded_for_takes_the_right_most_untrusted_hop() {
    let h = start(CollectorConfig { trust_forwarded_for: true, ..CollectorConfig::default() }, Router::new()).await;
    // The client forged 6.6.6.6; our proxy (loopback, trusted by default) appended what it saw.
    assert_eq!(h.post_event(WRITE, Some("6.6.6.6, 203.0.113.7")).await.status(), reqwest::StatusCode::OK);
    // Through two proxies, the inner one private.
    assert_eq!(h.post_event(WRITE, Some("6.6.6.6, 203.0.113.9, 10.0.0.2")).await.status(), reqwest::StatusCode::OK);
    let ips: Vec<Value> = h.stored("touchline.events").await.iter().map(|e| e["context"]["ip"].clone()).collect();
    assert!(ips.contains(&json!("203.0.113.7")) && ips.contains(&json!("203.0.113.9")), "{ips:?}");
    assert!(!ips.contains(&json!("6.6.6.6")), "{ips:?}");

    // A peer that is not a trusted proxy is the client, whatever it forwards.
    let config =
        CollectorConfig { trust_forwarded_for: true, trusted_proxies: vec!["192.0.2.1".parse().unwrap()], ..CollectorConfig::default() };
    let h = start(config, Router::new()).await;
    assert_eq!(h.post_event(WRITE, Some("203.0.113.7")).await.status(), reqwest::StatusCode::OK);
    assert_eq!(h.stored("touchline.events").await[0]["context"]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn anonymize_ip_covers_every_address_before_the_bus() {
    let h = start(CollectorConfig { trust_forwarded_for: true, ..CollectorConfig::default() }, Router::new()).await;
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!({"batch": [
        {"type": "event", "event_name": "no_ip", "anonymous_id": "a"},
        {"type": "event", "event_name": "with_ip", "anonymous_id": "a", "context": {"ip": "198.51.100.23"}},
        {"type": "session", "session_id": "s1", "started_at": now, "anonymous_id": "a", "ip": "2001:db8:1:2:3:4:5:6"},
        {"type": "link_click", "short_code": "abc", "device_id": "d1", "ip": "198.51.100.200"},
        {"type": "link_click", "short_code": "abc", "device_id": "d2", "ip": "not an address"},
        {"type": "track", "event": "Viewed", "userId": "u1", "context": {"ip": "192.0.2.99"}}
    ]});
    for key in [ANON, WRITE] {
        let r = h
            .http
            .post(format!("{}/v1/batch", h.base))
            .bearer_auth(key)
            .header("x-forwarded-for", "203.0.113.77")
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["accepted"], 6, "{body}");
    }
    let r = h
        .http
        .get(format!("{}/p.gif?k={ANON}&e=page_view&aid=p", h.base))
        .header("x-forwarded-for", "2001:db8:aa:bb:cc:dd:ee:ff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-touchline-status"], "stored");

    let anon = ANON_ACCOUNT.to_string();
    let mine = |rows: Vec<Value>, account: &str| rows.into_iter().filter(|r| r["account_id"] == account).collect::<Vec<_>>();
    let events = mine(h.stored("touchline.events").await, &anon);
    let ip_of = |name: &str| events.iter().find(|e| e["event_name"] == name).map(|e| e["context"]["ip"].clone()).unwrap();
    assert_eq!(ip_of("no_ip"), "203.0.113.0");
    assert_eq!(ip_of("with_ip"), "198.51.100.0");
    assert_eq!(ip_of("Viewed"), "192.0.2.0");
    assert_eq!(ip_of("page_view"), "2001:db8:aa::");
    assert_eq!(mine(h.stored("touchline.sessions").await, &anon)[0]["ip"], "2001:db8:1::");
    let clicks = mine(h.stored("touchline.link_clicks").await, &anon);
    let click_ip = |d: &str| clicks.iter().find(|c| c["device_id"] == d).map(|c| c["ip"].clone()).unwrap();
    assert_eq!(click_ip("d1"), "198.51.100.0");
    assert_eq!(click_ip("d2"), Value::Null, "what is not an address is dropped, not stored in clear");

    // An account without the setting keeps full addresses.
    let events = mine(h.stored("touchline.events").await, &ACCOUNT.to_string());
    let ip_of = |name: &str| events.iter().find(|e| e["event_name"] == name).map(|e| e["context"]["ip"].clone()).unwrap();
    assert_eq!(ip_of("no_ip"), "203.0.113.77");
    assert_eq!(ip_of("with_ip"), "198.51.100.23");
}

#[tokio::test]
async fn cors_allows_any_origin_without_credentials_and_stays_off_other_routes() {
    let secret = Router::new().route("/v1/links", post(|| async { "secret-key route" })).route("/v1/reports/x", get(|| async { "report" }));
    let h = start(CollectorConfig::default(), secret).await;
    let preflight = |path: &str| {
        h.http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", h.base))
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let r = preflight("/v1/batch").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    let r = h
        .http
        .post(format!("{}/v1/events", h.base))
        .header("origin", "https://shop.example")
        .bearer_auth(WRITE)
        .json(&json!({"event_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().get("access-control-allow-credentials").is_none());
    // Routes that take the secret key answer no CORS at all, so no page can call them.
    for path in ["/v1/links", "/v1/reports/x"] {
        let r = preflight(path).await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{path}: {:?}", r.headers());
        let r = h.http.get(format!("{}{path}", h.base)).header("origin", "https://shop.example").send().await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{path}: {:?}", r.headers());
    }
}
