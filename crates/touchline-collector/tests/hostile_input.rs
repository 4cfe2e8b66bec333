//! Hostile input over real HTTP (port 0) with the real embedded log behind it: records the
//! decoder must refuse with a 400 naming the field (instead of panicking the handler or storing
//! what no store can hold), and header values that must not multiply a request's size.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use touchline_bus::{Bus, EmbeddedLog, LogConfig};
use touchline_collector::{router, serve_with, AppState, CollectorConfig, KeyInfo, KeyKind, MemoryKeys};
use uuid::Uuid;

const WRITE: &str = "tl_wk_testwritekey";
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
    let options = config.serve_options(Arc::default());
    let state = AppState::new(bus.clone(), Arc::new(keys), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        router(state),
        listener,
        async move {
            let _ = rx.await;
        },
        options,
    ));
    Harness { base, bus, http: reqwest::Client::new(), _dir: dir, _stop: tx }
}

impl Harness {
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(WRITE).json(body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `X-Touchline-Status` of a pixel request.
    async fn pixel(&self, query: &str) -> String {
        let r = self.http.get(format!("{}/p.gif?k={WRITE}&{query}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the pixel always answers its GIF");
        r.headers()["x-touchline-status"].to_str().unwrap().to_owned()
    }

    /// Every record stored on a topic, as JSON.
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

    async fn still_serving(&self) {
        assert_eq!(self.http.get(format!("{}/healthz", self.base)).send().await.unwrap().status(), StatusCode::OK);
        let (s, body) = self.post("/v1/events", &json!({"event_name": "ok", "anonymous_id": "a"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
}

/// A 400 whose first rejection names `field`.
fn assert_rejected(status: StatusCode, body: &Value, field: &str, needle: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let first = &body["rejected"][0];
    assert_eq!(first["field"], field, "{body}");
    assert!(first["message"].as_str().unwrap().contains(needle), "{body}");
}

/// `n` arrays nested around a number; its depth is `n`.
fn nest(n: usize) -> Value {
    (0..n).fold(json!(1), |v, _| Value::Array(vec![v]))
}

#[tokio::test]
async fn far_apart_timestamps_answer_400_naming_the_field_and_the_server_keeps_serving() {
    let h = start().await;
    // ±8.2e15 ms (about ±259 800 years) are dates chrono holds, but the skew correction
    // received_at - (sent_at - timestamp) overflows: this used to panic the handler and drop the
    // connection without an answer.
    let (s, body) = h
        .post(
            "/v1/events",
            &json!({"event_name": "x", "anonymous_id": "a", "timestamp": -8_200_000_000_000_000i64, "sent_at": 8_200_000_000_000_000i64}),
        )
        .await;
    assert_rejected(s, &body, "timestamp", "is outside 2000-01-01 to 2100-01-01");
    let (s, body) = h
        .post("/v1/track", &json!({"event": "x", "userId": "u", "timestamp": 8_200_000_000_000_000i64, "sentAt": "2026-11-21T12:00:00Z"}))
        .await;
    assert_rejected(s, &body, "timestamp", "is outside");
    let (s, body) = h
        .post("/v1/track", &json!({"event": "x", "userId": "u", "timestamp": "1526-11-21T12:00:00Z", "sentAt": "2026-11-21T12:00:00Z"}))
        .await;
    assert_rejected(s, &body, "timestamp", "1526-11-21T12:00:00Z is outside");
    // The batch-level sentAt.
    let (s, body) = h
        .post("/v1/batch", &json!({"batch": [{"type": "track", "event": "x", "userId": "u", "timestamp": -8_200_000_000_000_000i64}], "sentAt": "2026-11-21T12:00:00Z"}))
        .await;
    assert_rejected(s, &body, "timestamp", "is outside");
    let (s, body) =
        h.post("/v1/batch", &json!({"batch": [{"type": "track", "event": "x", "userId": "u"}], "sentAt": 8_200_000_000_000_000i64})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("field `sentAt`: "), "{body}");
    // Both in the window, but corrected with sent_at the timestamp lands about a century back.
    let (s, body) = h
        .post("/v1/batch", &json!([{"type": "event", "event_name": "x", "anonymous_id": "a", "timestamp": "2000-01-01T00:00:00Z", "sent_at": "2099-12-31T00:00:00Z"}]))
        .await;
    assert_rejected(s, &body, "timestamp", "corrected for clock skew with `sent_at`");
    // The pixel's ts: 1970 is outside the window.
    assert_eq!(h.pixel("e=v&aid=a&ts=0").await, "invalid");
    assert!(h.stored("touchline.events").await.is_empty());
    h.still_serving().await;
    assert_eq!(h.stored("touchline.events").await.len(), 1);
}

#[tokio::test]
async fn money_of_1e15_answers_400_naming_value_or_cost() {
    let h = start().await;
    let (s, body) = h
        .post("/v1/batch", &json!([{"type": "conversion", "kind": "purchase", "value": 1e15, "currency": "USD", "customer_id": "c"}]))
        .await;
    assert_rejected(s, &body, "value", "out of range");
    let (s, body) = h
        .post(
            "/v1/batch",
            &json!([{"type": "spend", "date": "2026-11-20", "campaign_id": "c", "cost": "1000000000000000", "currency": "USD"}]),
        )
        .await;
    assert_rejected(s, &body, "cost", "out of range");
    let (s, body) =
        h.post("/v1/track", &json!({"event": "Order Completed", "userId": "u", "properties": {"value": 1e15, "currency": "USD"}})).await;
    assert_rejected(s, &body, "properties.value", "out of range");
    assert_eq!(h.pixel("t=conversion&kind=purchase&value=1000000000000000&currency=USD&uid=c").await, "invalid");
    for topic in ["touchline.conversions", "touchline.spend", "touchline.events"] {
        assert!(h.stored(topic).await.is_empty(), "{topic}");
    }
    // Just under 10^12 is stored exactly.
    let (s, body) = h
        .post(
            "/v1/batch",
            &json!([{"type": "conversion", "kind": "purchase", "value": "999999999999.999999", "currency": "USD", "customer_id": "c"}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h.stored("touchline.conversions").await[0]["value"], "999999999999.999999");
}

#[tokio::test]
async fn nul_in_channel_or_utm_answers_400() {
    let h = start().await;
    let (s, body) =
        h.post("/v1/batch", &json!([{"type": "touchpoint", "kind": "click", "channel": "e\u{0}mail", "anonymous_id": "a"}])).await;
    assert_rejected(s, &body, "channel", "U+0000");
    let (s, body) = h.post("/v1/events", &json!({"event_name": "x", "anonymous_id": "a", "context": {"utm_source": "goo\u{0}gle"}})).await;
    assert_rejected(s, &body, "context.utm_source", "U+0000");
    let (s, body) = h.post("/v1/track", &json!({"event": "x", "userId": "u", "context": {"campaign": {"name": "\u{0}"}}})).await;
    assert_rejected(s, &body, "context.utm_campaign", "U+0000");
    // A utm_* in the page URL is decoded too: %00 is a NUL.
    let (s, body) = h
        .post(
            "/v1/events",
            &json!({"event_name": "x", "anonymous_id": "a", "context": {"page_url": "https://s.example/?utm_medium=a%00b"}}),
        )
        .await;
    assert_rejected(s, &body, "context.utm_medium", "U+0000");
    assert_eq!(h.pixel("t=touchpoint&kind=click&aid=a&channel=a%00b").await, "invalid");
    assert_eq!(h.pixel("e=v&aid=a&utm_source=%00").await, "invalid");
    assert!(h.stored("touchline.touchpoints").await.is_empty());
    assert!(h.stored("touchline.events").await.is_empty());
}

/// An event item of exactly `len` bytes of JSON.
fn event_of_len(len: usize) -> String {
    let base = r#"{"type":"event","event_name":"x","anonymous_id":"a","properties":{"p":""}}"#;
    let s = base.replace(r#""p":"""#, &format!(r#""p":"{}""#, "x".repeat(len - base.len())));
    assert_eq!(s.len(), len);
    s
}

#[tokio::test]
async fn a_400_kb_user_agent_is_stored_cut_to_1024_bytes_and_never_amplified() {
    // The edge's own head limit is raised so that the decoder's cap is what is tested.
    let h = start_with(CollectorConfig { max_header_bytes: 512 * 1024, ..CollectorConfig::default() }).await;
    let ua = "Mozilla/5.0 (X11) ".repeat(400_000 / 18);
    assert_eq!(ua.len(), 399_996);
    let send = |body: String| {
        h.http
            .post(format!("{}/v1/batch", h.base))
            .bearer_auth(WRITE)
            .header("user-agent", ua.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // 2,500 small events: each gets 1,024 bytes of the header, not 400 KB.
    let small: Vec<String> = (0..2_500).map(|_| event_of_len(100)).collect();
    let r = send(format!("[{}]", small.join(","))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 2_500);
    let events = h.stored("touchline.events").await;
    assert_eq!(events.len(), 2_500);
    for e in &events {
        assert_eq!(e["context"]["user_agent"].as_str().unwrap(), &ua[..1024]);
        assert_eq!(e["context"]["truncated"], json!(["user_agent"]));
    }
    // Each stored record is its 100-byte item, 1,024 bytes of User-Agent and an envelope of a few
    // hundred bytes: under 2 KiB, where copying the header whole would make it 400 KB.
    for e in &events {
        assert!(serde_json::to_vec(e).unwrap().len() < 2_048, "{e}");
    }

    // 2,500 items of 2,000 bytes: a 5,002,501-byte body, under the 5 MiB limit. Each item costs
    // 2,000 + 1,024 (User-Agent) + 9 ("127.0.0.1") = 3,033 bytes against the request's
    // 5,242,880: 1,728 fit (5,241,024 bytes), the 1,729th would make 5,244,057.
    assert_eq!(events[0]["context"]["ip"], "127.0.0.1");
    let big: Vec<String> = (0..2_500).map(|_| event_of_len(2_000)).collect();
    let body = format!("[{}]", big.join(","));
    assert_eq!(body.len(), 5_002_501);
    let r = send(body).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], 1_728);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 772);
    assert_eq!(rejected[0]["index"], 1_728);
    assert!(rejected.iter().all(|e| e["code"] == "too_large"));
    assert!(rejected[0]["message"].as_str().unwrap().contains("brings the request to 5244057 bytes"), "{}", rejected[0]);
    assert_eq!(h.stored("touchline.events").await.len(), 2_500 + 1_728);

    // One item that fits alone but not with the header copied in: 31,800 + 1,033 > 32,768.
    let r = send(format!("[{}]", event_of_len(31_800))).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["rejected"][0]["field"], "context.user_agent");
    assert!(answer["rejected"][0]["message"].as_str().unwrap().contains("from the `User-Agent` header"), "{answer}");
}

#[tokio::test]
async fn segment_page_name_nested_past_the_stored_limit_is_refused_naming_it() {
    let h = start().await;
    // Stored as properties.name: 1 level for properties + 31 = 32, the limit.
    let (s, body) = h.post("/v1/page", &json!({"userId": "u", "name": nest(31)})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = h.post("/v1/page", &json!({"userId": "u", "name": nest(32)})).await;
    assert_rejected(s, &body, "name", "more than 32 levels deep as stored");
    let (s, body) = h.post("/v1/batch", &json!([{"type": "page", "userId": "u", "name": nest(120)}])).await;
    assert_rejected(s, &body, "name", "32 levels");
    let (s, body) = h.post("/v1/group", &json!({"userId": "u", "groupId": "g", "traits": {"t": nest(31)}})).await;
    assert_rejected(s, &body, "traits", "32 levels");
    let events = h.stored("touchline.events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["properties"]["name"], nest(31));
}
