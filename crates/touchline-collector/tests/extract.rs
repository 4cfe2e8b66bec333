//! The extractors on routers of their own: which header names a key, what each refusal answers,
//! that refusals count against the client address, and that bad paths, queries and bodies are
//! refused as the API's JSON errors.

// Helpers of a test crate may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use serde_json::Value;
use touchline_bus::{EmbeddedLog, LogConfig};
use touchline_collector::{ApiBody, ApiPath, ApiQuery, AppState, CollectorConfig, KeyInfo, KeyKind, MemoryKeys, SecretKey, WriteKey};
use tower::ServiceExt as _;
use uuid::Uuid;

const WRITE: &str = "tl_wk_extractwrite";
const SECRET: &str = "tl_sk_extractsecret";
const ACCOUNT: Uuid = Uuid::from_u128(0xe47);

struct Harness {
    router: Router,
    state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

async fn start(config: CollectorConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedLog::open(dir.path(), LogConfig { partitions: 1, retention_check_secs: 0, ..LogConfig::default() }).await.unwrap();
    let keys = Arc::new(MemoryKeys::new());
    keys.insert(WRITE, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Write, anonymize_ip: false });
    keys.insert(SECRET, KeyInfo { account_id: ACCOUNT, kind: KeyKind::Secret, anonymize_ip: false });
    let state = AppState::new(bus, keys, config);
    let router = Router::new()
        .route("/secret", get(|SecretKey(account): SecretKey| async move { account.to_string() }))
        .route("/write", get(|WriteKey(key): WriteKey| async move { key.unwrap_or_else(|| "(none)".into()) }))
        .with_state(state.clone());
    Harness { router, state, _dir: dir }
}

/// What a client sees: the status, and the body as JSON (errors) or text (answers).
async fn call(h: &Harness, uri: &str, authorization: Option<&str>, peer: &str) -> (StatusCode, Value) {
    let mut req = Request::builder().uri(uri);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = h.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

fn basic(text: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text))
}

const PEER: &str = "192.0.2.10:5000";

#[tokio::test]
async fn a_secret_key_by_bearer_or_basic_yields_its_account() {
    let h = start(CollectorConfig::default()).await;
    for auth in [format!("Bearer {SECRET}"), basic(&format!("{SECRET}:")), basic(SECRET)] {
        let (status, body) = call(&h, "/secret", Some(&auth), PEER).await;
        assert_eq!((status, body), (StatusCode::OK, Value::String(ACCOUNT.to_string())), "{auth}");
    }
}

#[tokio::test]
async fn secret_routes_refuse_missing_unusable_unknown_and_write_keys() {
    let h = start(CollectorConfig::default()).await;
    let cases = [
        (None, StatusCode::UNAUTHORIZED, "missing_key"),
        (Some(format!("Token {SECRET}")), StatusCode::UNAUTHORIZED, "missing_key"),
        (Some(basic(":password")), StatusCode::UNAUTHORIZED, "missing_key"),
        (Some("Bearer tl_sk_nobodyhasthis".to_owned()), StatusCode::UNAUTHORIZED, "bad_key"),
        (Some(format!("Bearer {WRITE}")), StatusCode::FORBIDDEN, "needs_secret_key"),
    ];
    for (auth, status, code) in cases {
        let (s, body) = call(&h, "/secret", auth.as_deref(), PEER).await;
        assert_eq!((s, body["code"].as_str()), (status, Some(code)), "{auth:?}: {body}");
        assert_eq!(body["success"], false);
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    // Every refusal but the write key's counts as a failed authentication.
    assert_eq!(h.state.stats.auth_failures.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled_and_others_are_not() {
    let config = CollectorConfig { auth_failure_limit: 3, ..CollectorConfig::default() };
    let h = start(config).await;
    for i in 0..3 {
        let (s, body) = call(&h, "/secret", Some(&format!("Bearer tl_sk_guess{i}")), PEER).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (s, body) = call(&h, "/secret", Some("Bearer tl_sk_guess3"), PEER).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("auth_throttled")), "{body}");
    let (s, body) = call(&h, "/secret", None, PEER).await;
    assert_eq!(body["code"], "auth_throttled", "a missing key is throttled too");
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let (s, body) = call(&h, "/write", Some("Basic !!!"), PEER).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("auth_throttled")), "{body}");
    // The secret key is known in memory: it passes from the throttled address all the same.
    assert_eq!(call(&h, "/secret", Some(&format!("Bearer {SECRET}")), PEER).await.0, StatusCode::OK);
    // Another address has its own count.
    let (s, body) = call(&h, "/secret", Some("Bearer tl_sk_guess4"), "198.51.100.7:5000").await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_key")), "{body}");
    assert!(h.state.stats.auth_throttled.load(Ordering::Relaxed) >= 3);
}

#[tokio::test]
async fn the_write_key_comes_from_the_header_else_the_query() {
    let h = start(CollectorConfig::default()).await;
    assert_eq!(call(&h, "/write", Some(&format!("Bearer {WRITE}")), PEER).await.1, WRITE);
    assert_eq!(call(&h, "/write", Some(&basic(&format!("{WRITE}:"))), PEER).await.1, WRITE);
    assert_eq!(call(&h, "/write?k=fromquery", Some("Bearer fromheader"), PEER).await.1, "fromheader", "the header wins");
    for q in ["k", "writeKey", "write_key"] {
        assert_eq!(call(&h, &format!("/write?{q}=fromquery"), None, PEER).await.1, "fromquery", "{q}");
    }
    assert_eq!(call(&h, "/write", None, PEER).await.1, "(none)", "only the body can hold it");
}

#[tokio::test]
async fn an_authorization_header_that_names_no_write_key_is_refused() {
    let h = start(CollectorConfig::default()).await;
    for auth in [format!("Token {WRITE}"), basic(":x"), basic(""), "Bearer".to_owned(), "Basic !!!".to_owned()] {
        let (s, body) = call(&h, "/write?k=fromquery", Some(&auth), PEER).await;
        assert_eq!((s, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_key")), "{auth}: {body}");
    }
    assert_eq!(h.state.stats.auth_failures.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn bad_paths_queries_and_bodies_are_refused_as_api_errors() {
    #[derive(serde::Deserialize)]
    struct Page {
        n: u32,
    }
    let router = Router::new()
        .route("/p/{n}", get(|ApiPath(n): ApiPath<u32>| async move { n.to_string() }))
        .route("/q", get(|ApiQuery(page): ApiQuery<Page>| async move { page.n.to_string() }))
        .route("/b", axum::routing::post(|ApiBody(b): ApiBody| async move { b.len().to_string() }))
        .layer(axum::extract::DefaultBodyLimit::max(16));
    let answer = |req: Request<Body>| {
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let body: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap_or_default();
            (status, body["code"].as_str().unwrap_or("(not an error)").to_owned())
        }
    };
    let get_req = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
    let post_req = |n: usize| Request::builder().method("POST").uri("/b").body(Body::from(vec![b'x'; n])).unwrap();
    assert_eq!(answer(get_req("/p/7")).await.0, StatusCode::OK);
    assert_eq!(answer(get_req("/p/seven")).await, (StatusCode::BAD_REQUEST, "bad_request".into()));
    assert_eq!(answer(get_req("/q?n=7")).await.0, StatusCode::OK);
    assert_eq!(answer(get_req("/q?n=seven")).await, (StatusCode::BAD_REQUEST, "bad_request".into()));
    assert_eq!(answer(post_req(16)).await.0, StatusCode::OK);
    assert_eq!(answer(post_req(17)).await, (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into()));
}
