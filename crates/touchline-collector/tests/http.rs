//! The collector over real HTTP (port 0) with the real embedded log behind it.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use serde_json::{json, Value};
use touchline_bus::{Bus, EmbeddedLog, LogConfig};
use touchline_collector::{router, serve, AppState, CollectorConfig, KeyInfo, KeyKind, MemoryKeys};
use uuid::Uuid;

const WRITE: &str = "tl_wk_testwritekey";
const SECRET: &str = "tl_sk_testsecretkey";
const OTHER: &str = "tl_wk_otheraccount";
const ACCOUNT: Uuid = Uuid::from_u128(0xacc);

struct Harness {
    base: String,
    bus: Arc<EmbeddedLog>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Harness {
    start_with(CollectorConfig::default()).await
}

async fn start_with(config: CollectorConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedLog::open(dir.path(), LogConfig { partitions: 4, retention_check_secs: 0, ..LogConfig::default() }).await.unwrap();
    let keys = MemoryKeys::new();
    keys.insert(WRITE, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Write, anonymize_ip: false });
    keys.insert(SECRET, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Secret, anonymize_ip: false });
    keys.insert(OTHER, KeyInfo { account_id: Uuid::from_u128(0xb), kind: KeyKind::Write, anonymize_ip: false });
    let state = AppState::new(bus.clone(), Arc::new(keys), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(router(state), listener, async move {
        let _ = rx.await;
    }));
    Harness { base, bus, http: reqwest::Client::new(), _dir: dir, _stop: tx }
}

impl Harness {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(WRITE).json(&body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Every record stored on a topic, as JSON, in partition then offset order.
    async fn stored(&self, topic: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for p in 0..self.bus.partitions() {
            let end = self.bus.end_offset(topic, p).await.unwrap();
            if end == 0 {
                continue;
            }
            for r in self.bus.read(topic, p, 0, 100_000, Duration::ZERO).await.unwrap() {
                out.push(serde_json::from_slice(&r.value).unwrap());
            }
        }
        out
    }

    async fn count(&self, topic: &str) -> usize {
        self.stored(topic).await.len()
    }
}

#[tokio::test]
async fn every_native_route_single_and_array() {
    let h = start().await;
    let cases = [
        ("/v1/events", "touchline.events", json!({"event_name": "view", "anonymous_id": "a1"})),
        ("/v1/sessions", "touchline.sessions", json!({"session_id": "s1", "started_at": "2026-11-21T10:00:00Z", "anonymous_id": "a1"})),
        ("/v1/touchpoints", "touchline.touchpoints", json!({"kind": "click", "campaign_id": "c1", "anonymous_id": "a1"})),
        ("/v1/conversions", "touchline.conversions", json!({"kind": "purchase", "value": 10, "currency": "USD", "customer_id": "u1"})),
        ("/v1/clicks", "touchline.link_clicks", json!({"short_code": "abc", "device_id": "d1"})),
        ("/v1/spend", "touchline.spend", json!({"date": "2026-11-20", "campaign_id": "c1", "cost": "5.5", "currency": "USD"})),
    ];
    for (path, topic, record) in cases {
        let (s, body) = h.post(path, record.clone()).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["accepted"], 1, "{path}");
        let (s, body) = h.post(path, json!([record.clone(), record])).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["accepted"], 2);
        let stored = h.stored(topic).await;
        assert_eq!(stored.len(), 3, "{path} stored");
        for r in &stored {
            assert_eq!(r["v"], 1);
            assert_eq!(r["account_id"], ACCOUNT.to_string());
            assert!(r["received_at"].is_string());
        }
    }
}

#[tokio::test]
async fn mixed_batch_partial_rejects_and_tenant_from_key() {
    let h = start().await;
    let (s, body) = h
        .post(
            "/v1/batch",
            json!({"batch": [
                {"type": "event", "event_name": "view", "anonymous_id": "a1", "account_id": Uuid::from_u128(0xbad)},
                {"type": "conversion", "kind": "purchase", "value": "abc", "currency": "USD", "customer_id": "u"},
                {"type": "touchpoint", "kind": "impression", "anonymous_id": "a1", "campain_id": "x"},
                {"type": "track", "event": "Signed Up", "userId": "u1"},
                {"type": "identify", "customer_id": "u1", "anonymous_id": "a1"}
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["records"], 4, "Signed Up is an event and a signup conversion");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["field"], "value");
    assert_eq!(rejected[1]["index"], 2);
    assert!(rejected[1]["message"].as_str().unwrap().contains("campain_id"));
    let events = h.stored("touchline.events").await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["account_id"] == ACCOUNT.to_string()), "account never from the body");
    assert_eq!(h.count("touchline.conversions").await, 1);
    assert_eq!(h.count("touchline.identities").await, 1);
    assert_eq!(h.count("touchline.touchpoints").await, 0, "rejected records are not stored");
}

#[tokio::test]
async fn segment_sdk_payloads_with_basic_auth() {
    let h = start().await;
    // analytics-node: Basic auth with the write key as user name, batch with sentAt.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{WRITE}:"));
    let body = json!({
        "batch": [
            {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": "node-1",
             "properties": {"order_id": "o-1", "revenue": 42.5, "currency": "EUR"},
             "context": {"library": {"name": "analytics-node", "version": "6.0.0"}},
             "timestamp": "2026-11-21T10:00:00.000Z", "_metadata": {"nodeVersion": "20"}},
            {"type": "identify", "userId": "u-1", "anonymousId": "anon-9", "traits": {"plan": "pro"}, "messageId": "node-2"}
        ],
        "sentAt": "2026-11-21T10:00:01.000Z"
    });
    let r = h.http.post(format!("{}/v1/batch", h.base)).header("authorization", format!("Basic {basic}")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let conv = h.stored("touchline.conversions").await;
    assert_eq!(conv.len(), 1);
    assert_eq!(conv[0]["value"], "42.5");
    assert_eq!(conv[0]["currency"], "EUR");
    assert_eq!(conv[0]["order_id"], "o-1");
    let ids = h.stored("touchline.identities").await;
    assert_eq!(ids[0]["anonymous_id"], "anon-9");
    assert_eq!(ids[0]["customer_id"], "u-1");

    // analytics.js (apiHost pointed here): /v1/p and /v1/t with writeKey in the body.
    for (path, msg) in [
        (
            "/v1/p",
            json!({"writeKey": WRITE, "anonymousId": "anon-9", "type": "page", "name": "Home",
                          "properties": {"url": "https://s.example/?utm_source=zalo&utm_campaign=tet"},
                          "context": {"page": {"url": "https://s.example/?utm_source=zalo&utm_campaign=tet", "referrer": ""}, "userAgent": "Mozilla/5.0"},
                          "messageId": "ajs-next-1", "timestamp": "2026-11-21T10:00:00.000Z", "sentAt": "2026-11-21T10:00:00.100Z"}),
        ),
        ("/v1/t", json!({"writeKey": WRITE, "anonymousId": "anon-9", "type": "track", "event": "Add To Cart", "properties": {"sku": "X"}})),
        ("/v1/screen", json!({"writeKey": WRITE, "userId": "u-1", "name": "Cart"})),
        ("/v1/alias", json!({"writeKey": WRITE, "userId": "u-1", "previousId": "anon-10"})),
        ("/v1/group", json!({"writeKey": WRITE, "userId": "u-1", "groupId": "g"})),
        ("/v1/track", json!({"writeKey": WRITE, "userId": "u-1", "event": "Viewed"})),
        ("/v1/page", json!({"writeKey": WRITE, "userId": "u-1"})),
        ("/v1/identify", json!({"writeKey": WRITE, "userId": "u-2", "traits": {}})),
    ] {
        let r = h.http.post(format!("{}{path}", h.base)).header("content-type", "text/plain").body(msg.to_string()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}: {}", r.text().await.unwrap());
    }
    let events = h.stored("touchline.events").await;
    let page = events.iter().find(|e| e["record_id"] == "ajs-next-1").expect("page stored");
    assert_eq!(page["event_name"], "page_view");
    assert_eq!(page["context"]["utm_source"], "zalo");
    assert_eq!(page["context"]["utm_campaign"], "tet");
    assert!(page["context"]["ip"].as_str().unwrap().starts_with("127."));
    assert_eq!(events.len(), 1 + 1 + 1 + 1 + 1 + 1 + 1, "order + page + track + screen + group + track + page");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_by_header_and_by_magic_bytes() {
    let h = start().await;
    let body =
        json!([{"type": "event", "event_name": "a", "anonymous_id": "x"}, {"type": "event", "event_name": "b", "anonymous_id": "x"}]);
    let gz = gzip(body.to_string().as_bytes());
    let r = h
        .http
        .post(format!("{}/v1/batch", h.base))
        .bearer_auth(WRITE)
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gz.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = h
        .http
        .post(format!("{}/v1/batch", h.base))
        .bearer_auth(WRITE)
        .header("content-type", "application/json")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "gzip detected by magic bytes");
    assert_eq!(h.count("touchline.events").await, 4);
    let r = h
        .http
        .post(format!("{}/v1/batch", h.base))
        .bearer_auth(WRITE)
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not valid gzip"));
    let r = h.http.post(format!("{}/v1/batch", h.base)).bearer_auth(WRITE).header("content-encoding", "br").body("x").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn pixel_and_beacon() {
    let h = start().await;
    let r = h
        .http
        .get(format!("{}/p.gif?k={WRITE}&e=page_view&aid=anon-1&url=https%3A%2F%2Fs.example%2F%3Futm_source%3Dfb&plan=pro", h.base))
        .header("user-agent", "Mozilla/5.0 (iPhone)")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("no-store"));
    assert_eq!(r.headers()["x-touchline-status"], "stored");
    let gif = r.bytes().await.unwrap();
    assert_eq!(gif.len(), 43);
    assert_eq!(&gif[..6], b"GIF89a");
    let events = h.stored("touchline.events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["context"]["utm_source"], "fb");
    assert_eq!(events[0]["context"]["user_agent"], "Mozilla/5.0 (iPhone)");
    assert_eq!(events[0]["properties"]["plan"], "pro");

    // Bad key and bad parameters: still a GIF, nothing stored.
    for q in ["k=nope&e=x&aid=a", "e=x&aid=a", &format!("k={WRITE}&e=x")] {
        let r = h.http.get(format!("{}/p.gif?{q}", h.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_ne!(r.headers()["x-touchline-status"], "stored", "{q}");
        assert_eq!(r.bytes().await.unwrap().len(), 43);
    }
    let r = h.http.get(format!("{}/p.gif", h.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.count("touchline.events").await, 1);

    // An impression pixel on an ad.
    let r = h.http.get(format!("{}/p.gif?k={WRITE}&t=touchpoint&kind=impression&cid=c7&adid=ad1&aid=anon-1", h.base)).send().await.unwrap();
    assert_eq!(r.headers()["x-touchline-status"], "stored");
    assert_eq!(h.stored("touchline.touchpoints").await[0]["campaign_id"], "c7");

    // sendBeacon: text/plain, key in the body.
    let beacon = json!({"writeKey": WRITE, "batch": [{"type": "event", "event_name": "unload", "anonymous_id": "anon-1"}]});
    let r = h
        .http
        .post(format!("{}/v1/beacon", h.base))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Key on the query string.
    let r = h
        .http
        .post(format!("{}/v1/beacon?k={WRITE}", h.base))
        .header("content-type", "text/plain")
        .body(json!({"type": "event", "event_name": "x", "anonymous_id": "a"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.count("touchline.events").await, 3);
}

#[tokio::test]
async fn malformed_unknown_fields_and_wrong_types_name_the_problem() {
    let h = start().await;
    let r = h
        .http
        .post(format!("{}/v1/events", h.base))
        .bearer_auth(WRITE)
        .header("content-type", "application/json")
        .body("{\"event_name\": \"x\",")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("malformed JSON") && msg.contains("line 1"), "{msg}");

    let (s, body) = h.post("/v1/events", json!({"event_name": "x", "anonymous_id": "a", "campaign": "c"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("unknown field `campaign`"), "{body}");

    let (s, body) = h.post("/v1/conversions", json!({"kind": "purchase", "value": true, "currency": "USD", "customer_id": "c"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["rejected"][0]["field"], "value");

    let (s, body) = h.post("/v1/spend", json!({"date": "20/11/2026", "campaign_id": "c", "cost": 1, "currency": "USD"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["rejected"][0]["field"], "date");

    let (s, body) = h.post("/v1/events", json!({"event_name": "x", "customer_id": "y".repeat(129)})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("customer_id"), "{body}");

    let (s, body) = h.post("/v1/batch", json!({"batch": "nope"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("`batch`"), "{body}");
    assert_eq!(h.count("touchline.events").await, 0);
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let h = start().await;
    let rec = json!({"event_name": "x", "anonymous_id": "a"});
    let r = h.http.post(format!("{}/v1/events", h.base)).json(&rec).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("missing write key"));
    let r = h.http.post(format!("{}/v1/events", h.base)).bearer_auth("tl_wk_wrong").json(&rec).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = h.http.post(format!("{}/v1/events", h.base)).header("authorization", "Basic !!!").json(&rec).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = h
        .http
        .post(format!("{}/v1/events", h.base))
        .json(&json!({"writeKey": "wrong", "event_name": "x", "anonymous_id": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The secret key may send too; another account's key stores under that account.
    let r = h.http.post(format!("{}/v1/events", h.base)).bearer_auth(SECRET).json(&rec).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = h.http.post(format!("{}/v1/events", h.base)).bearer_auth(OTHER).json(&rec).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stored = h.stored("touchline.events").await;
    let mut accounts: Vec<_> = stored.iter().map(|r| r["account_id"].as_str().unwrap().to_owned()).collect();
    accounts.sort();
    let mut want = vec![ACCOUNT.to_string(), Uuid::from_u128(0xb).to_string()];
    want.sort();
    assert_eq!(accounts, want);
}

#[tokio::test]
async fn size_limits_answer_413() {
    let h = start().await;
    // One record over 32 KiB.
    let (s, body) = h.post("/v1/events", json!({"event_name": "x", "anonymous_id": "a", "properties": {"blob": "x".repeat(40_000)}})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("over the limit of 32768"), "{body}");
    // In a batch, the big record is rejected and the others stored.
    let (s, body) = h
        .post("/v1/batch", json!([{"type": "event", "event_name": "ok", "anonymous_id": "a"}, {"type": "event", "event_name": "x", "anonymous_id": "a", "properties": {"blob": "x".repeat(40_000)}}]))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["rejected"][0]["code"], "too_large");
    // A body over 5 MiB.
    let big = "x".repeat(6 * 1024 * 1024);
    let r = h
        .http
        .post(format!("{}/v1/batch", h.base))
        .bearer_auth(WRITE)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A gzip bomb: 64 KiB compressed, 64 MiB inflated.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 200 * 1024);
    let r =
        h.http.post(format!("{}/v1/batch", h.base)).bearer_auth(WRITE).header("content-encoding", "gzip").body(bomb).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("decompressed body"));
    // More than 2,500 records.
    let many: Vec<Value> = (0..2_501).map(|_| json!({"type": "event", "event_name": "x", "anonymous_id": "a"})).collect();
    let (s, body) = h.post("/v1/batch", Value::Array(many)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("2501 records"), "{body}");
    assert_eq!(h.count("touchline.events").await, 1);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let h = start().await;
    let r = h
        .http
        .post(format!("{}/v1/events", h.base))
        .bearer_auth(WRITE)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("event_name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.text().await.unwrap().contains("application/json"));
    let r = h
        .http
        .post(format!("{}/v1/events", h.base))
        .bearer_auth(WRITE)
        .header("content-type", "application/xml")
        .body("<x/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn cors_health_and_readiness() {
    let h = start().await;
    let r = h
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/batch", h.base))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = h
        .http
        .post(format!("{}/v1/events", h.base))
        .header("origin", "https://shop.example")
        .bearer_auth(WRITE)
        .json(&json!({"event_name": "x", "anonymous_id": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(h.http.get(format!("{}/healthz", h.base)).send().await.unwrap().status(), StatusCode::OK);
    let r = h.http.get(format!("{}/readyz", h.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["bus"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_all_stored() {
    let h = Arc::new(start().await);
    let mut tasks = Vec::new();
    for c in 0..20 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let batch: Vec<Value> = (0..10).map(|j| json!({"type": "event", "event_name": "e", "anonymous_id": format!("c{c}"), "message_id": format!("{c}-{i}-{j}")})).collect();
                let (s, _) = h.post("/v1/batch", Value::Array(batch)).await;
                assert_eq!(s, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = h.stored("touchline.events").await;
    assert_eq!(stored.len(), 2_000);
    let ids: std::collections::HashSet<_> = stored.iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2_000);
}

#[tokio::test]
async fn over_the_tenant_rate_is_429_per_account() {
    let h = start_with(CollectorConfig { rate_limit_per_sec: 5, max_batch_records: 20, ..CollectorConfig::default() }).await;
    let batch: Vec<Value> = (0..20).map(|_| json!({"type": "event", "event_name": "x", "anonymous_id": "a"})).collect();
    let (s, _) = h.post("/v1/batch", Value::Array(batch.clone())).await;
    assert_eq!(s, StatusCode::OK, "a full batch fits the burst");
    let r = h.http.post(format!("{}/v1/batch", h.base)).bearer_auth(WRITE).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "retry after {wait}s");
    assert!(r.text().await.unwrap().contains("rate limit"));
    // Another account has its own budget.
    let r = h.http.post(format!("{}/v1/batch", h.base)).bearer_auth(OTHER).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.count("touchline.events").await, 40, "the refused batch was not stored");
}
