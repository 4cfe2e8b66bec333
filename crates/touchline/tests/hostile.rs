//! Hostile input against the binary's own routes (reports, short links, configuration), over
//! real HTTP: every probe must get a clear answer, never a dropped connection, and nothing a
//! client controls may grow without bound.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};
use touchline::app::App;
use touchline::config::Config;
use touchline_sql::{Account, ApiKey, KeyKind};
use uuid::Uuid;

const WRITE: &str = "tl_wk_hostile_write_key_001";
const SECRET: &str = "tl_sk_hostile_secret_key_01";
const OTHER_SECRET: &str = "tl_sk_hostile_other_account";
const ACCOUNT: Uuid = Uuid::from_u128(0x4057);
const OTHER: Uuid = Uuid::from_u128(0x07e4);

struct Running {
    base: String,
    http: reqwest::Client,
    links: Arc<touchline_links::LinkState>,
    bus: Arc<dyn touchline_bus::Bus>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(tune: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config { data_dir: dir.path().join("data"), write_key: Some(WRITE.into()), secret_key: Some(SECRET.into()), ..Config::default() };
    config.aggregator.flush_interval_ms = 100;
    tune(&mut config);
    let store = touchline::app::open_store(&config).await.unwrap();
    store.upsert_account(&Account::new(ACCOUNT, "default")).await.unwrap();
    store.upsert_account(&Account::new(OTHER, "other")).await.unwrap();
    let hash = touchline_collector::hash_key(OTHER_SECRET);
    store
        .insert_key(&ApiKey { account_id: OTHER, kind: KeyKind::Secret, key_hash: hash, prefix: "tl_sk_host".into(), revoked: false })
        .await
        .unwrap();
    let app = App::build(config, touchline::app::Role::Serve).await.unwrap();
    let (links, bus) = (app.links.clone(), app.bus.clone());
    let (base, tx) = common::serve_on_loopback(app).await;
    let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    Running { base, http, links, bus, _dir: dir, _stop: tx }
}

impl Running {
    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("an answer, not a dropped connection");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn create_link(&self, key: &str, body: Value) -> (StatusCode, Value) {
        let r = self.http.post(format!("{}/v1/links", self.base)).bearer_auth(key).json(&body).send().await.expect("an answer");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn report_dates_at_the_edges_of_the_calendar_get_a_400_not_a_panic() {
    let t = start(|_| {}).await;
    // chrono's smallest and largest dates: `to - 30 days` used to overflow and panic.
    for q in
        ["to=-262143-01-01", "to=%2B262142-12-31", "from=-262143-01-01&to=2026-01-01", "to=1999-12-31", "from=2101-01-01&to=2101-01-02"]
    {
        for route in ["/v1/reports/campaigns", "/v1/reports/attribution", "/v1/reports/paths"] {
            let (status, body) = t.get(&format!("{route}?{q}"), SECRET).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route}?{q}: {body}");
            let msg = body["error"].as_str().unwrap_or_default();
            assert!(msg.contains("`to`") || msg.contains("`from`") || msg.contains("date"), "{route}?{q}: {msg}");
        }
    }
    let (status, body) = t.get("/v1/reports/campaigns?from=2000-01-01&to=2100-12-31", SECRET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a century is refused by the span rule: {body}");
    assert!(body["error"].as_str().unwrap().contains("3660 days"), "{body}");
    let (status, body) = t.get("/v1/reports/campaigns?from=2026-01-01&to=2026-03-31", SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (q, name) in [("by=ad", "`by`"), ("limit=0", "`limit`"), ("limit=1001", "`limit`")] {
        let (status, body) = t.get(&format!("/v1/reports/paths?{q}"), SECRET).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "paths?{q}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(name), "paths?{q}: {body}");
    }
    // The server still answers after every probe.
    assert_eq!(t.get("/v1/reports/campaigns", SECRET).await.0, StatusCode::OK);
    assert_eq!(t.get("/v1/reports/paths", SECRET).await.0, StatusCode::OK);
}

#[tokio::test]
async fn link_fields_are_bounded() {
    let t = start(|_| {}).await;
    let huge = "x".repeat(300 * 1024);
    let cases = [
        (json!({"target_url": "https://shop.example/", "utm_campaign": huge}), "utm_campaign"),
        (json!({"target_url": format!("https://shop.example/?q={}", "a".repeat(9_000))}), "target_url"),
        (json!({"target_url": "https://shop.example/", "utm_source": "news\u{0}letter"}), "utm_source"),
        (json!({"target_url": "https://shop.example/", "campaign_id": "c".repeat(129)}), "campaign_id"),
    ];
    for (body, field) in cases {
        let (status, answer) = t.create_link(SECRET, body).await;
        // The 300 KB UTM is over the 64 KiB body limit of the link routes: 413 names no field.
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            assert_eq!(answer["code"], "too_large", "{field}: {answer}");
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(&format!("`{field}`")), "{field}: {answer}");
    }
    let (status, _) =
        t.create_link(SECRET, json!({"target_url": "https://shop.example/", "utm_campaign": "u".repeat(255), "code": "ok-255"})).await;
    assert_eq!(status, StatusCode::CREATED, "255 characters is the limit, inclusive");
    // A PATCH obeys the same limits.
    let r = t
        .http
        .patch(format!("{}/v1/links/ok-255", t.base))
        .bearer_auth(SECRET)
        .json(&json!({"utm_term": "t".repeat(256)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_account_cannot_hold_more_links_than_its_quota() {
    let t = start(|c| c.links.max_per_account = 3).await;
    for i in 0..3 {
        let (status, body) = t.create_link(SECRET, json!({"target_url": format!("https://shop.example/{i}")})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = t.create_link(SECRET, json!({"target_url": "https://shop.example/4"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "quota_exceeded");
    assert!(body["error"].as_str().unwrap().contains("links.max_per_account"), "{body}");
    // Another account's quota is its own.
    let (status, _) = t.create_link(OTHER_SECRET, json!({"target_url": "https://shop.example/other"})).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn qr_codes_are_only_served_for_the_accounts_own_links() {
    let t = start(|_| {}).await;
    let (status, _) = t.create_link(SECRET, json!({"target_url": "https://shop.example/", "code": "mine"})).await;
    assert_eq!(status, StatusCode::CREATED);
    for fmt in ["svg", "png"] {
        let own = t.http.get(format!("{}/v1/links/mine/qr.{fmt}", t.base)).bearer_auth(SECRET).send().await.unwrap();
        assert_eq!(own.status(), StatusCode::OK);
        let other = t.http.get(format!("{}/v1/links/mine/qr.{fmt}", t.base)).bearer_auth(OTHER_SECRET).send().await.unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND, "another account's secret key must not see this link");
    }
}

#[tokio::test]
async fn the_unique_click_window_stays_within_its_capacity() {
    let t = start(|c| c.links.unique_window_entries = 500).await;
    let (status, _) = t.create_link(SECRET, json!({"target_url": "https://shop.example/", "code": "flood"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
    // Every request without a cookie is a new device: 5,000 distinct pairs.
    for _ in 0..5_000 {
        let r = t.http.get(format!("{}/l/flood", t.base)).header("user-agent", ua).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
    }
    assert!(t.links.unique.len() <= 600, "{} pairs held for a capacity of 500", t.links.unique.len());
    // A returning device within the window is still recognised.
    let first = t.http.get(format!("{}/l/flood", t.base)).header("user-agent", ua).send().await.unwrap();
    let cookie = first.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let again = t.http.get(format!("{}/l/flood", t.base)).header("user-agent", ua).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FOUND);
    let device = cookie.split('=').nth(1).unwrap();
    assert!(!t.links.unique.first_in_window(device, "flood", std::time::Instant::now()));
}

#[tokio::test]
async fn a_huge_user_agent_is_cut_before_the_click_is_queued() {
    let t = start(|_| {}).await;
    let (status, _) = t.create_link(SECRET, json!({"target_url": "https://shop.example/", "code": "big-ua"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let ua = format!("Mozilla/5.0 {}", "A".repeat(60_000));
    for _ in 0..20 {
        let r = t.http.get(format!("{}/l/big-ua", t.base)).header("user-agent", &ua).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
    }
    // The clicks reach the log with the User-Agent cut to its cap.
    let mut clicks = Vec::new();
    for _ in 0..100 {
        clicks.clear();
        for p in 0..t.bus.partitions() {
            let recs = t.bus.read("touchline.link_clicks", p, 0, 1_000, std::time::Duration::ZERO).await.unwrap();
            clicks.extend(recs.into_iter().map(|r| serde_json::from_slice::<Value>(&r.value).unwrap()));
        }
        if clicks.len() == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(clicks.len(), 20);
    for c in &clicks {
        let ua = c["user_agent"].as_str().unwrap();
        assert_eq!(ua.len(), touchline_model::limits::MAX_USER_AGENT_BYTES, "cut to the cap");
        assert!(ua.starts_with("Mozilla/5.0 AAAA"));
    }
}

#[tokio::test]
async fn metrics_can_live_on_an_address_of_their_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let t = start(|c| c.metrics_addr = Some(addr)).await;
    let public = t.http.get(format!("{}/metrics", t.base)).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND, "the public listener must not serve the counters");
    let private = t.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(private.status(), StatusCode::OK);
    assert!(private.text().await.unwrap().contains("# TYPE touchline_records_accepted_total counter"));
    // Without metrics_addr, /metrics stays where it was.
    let t = start(|_| {}).await;
    assert_eq!(t.http.get(format!("{}/metrics", t.base)).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn guessing_secret_keys_on_reports_and_links_is_throttled() {
    let t = start(|c| c.collector.auth_failure_limit = 5).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let path = if i % 2 == 0 { "/v1/reports/campaigns" } else { "/v1/links" };
        let r = t.http.get(format!("{}{path}", t.base)).bearer_auth(format!("tl_sk_guess_{i:04}_00000000000")).send().await.unwrap();
        statuses.push((r.status(), r.headers().get("retry-after").is_some()));
    }
    assert!(statuses[..5].iter().all(|(s, _)| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert!(statuses[5..].iter().all(|(s, retry)| *s == StatusCode::TOO_MANY_REQUESTS && *retry), "{statuses:?}");
    // The right key still works from the same address: the catalog knows it.
    assert_eq!(t.get("/v1/reports/campaigns", SECRET).await.0, StatusCode::OK);
}
