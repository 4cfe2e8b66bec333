//! The collector: a stateless axum service that authenticates the tenant, decodes (JSON, gzip,
//! Segment, pixel query strings, beacon text/plain), validates, stamps server time and appends to
//! the bus. It answers 2xx only after the bus has durably accepted the records.

pub mod error;
pub mod keys;

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use touchline_bus::{Bus, OutRecord};
use touchline_model::{DecodeOptions, EntityKind, Expect, Record, RequestCtx, SegmentType};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;
pub use keys::{generate_key, hash_key, KeyInfo, KeyKind, KeyStore, MemoryKeys};

/// Collector settings. Defaults are the brief's limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Largest single record, in bytes of JSON.
    pub max_record_bytes: usize,
    /// Largest request body, compressed and decompressed.
    pub max_body_bytes: usize,
    /// Most records in one request.
    pub max_batch_records: usize,
    /// Use the first `X-Forwarded-For` address as the client ip (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Segment `track` names that are conversions too, with the conversion kind
    /// (matched without regard to case). Default: Order Completed → purchase, Signed Up → signup.
    pub conversion_events: std::collections::BTreeMap<String, String>,
    /// Records per second one account may send (0 = no limit); over it the collector answers
    /// 429 with `Retry-After`. Bursts up to one full batch are allowed.
    pub rate_limit_per_sec: u32,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        let d = DecodeOptions::default();
        CollectorConfig {
            max_record_bytes: d.max_record_bytes,
            max_body_bytes: 5 * 1024 * 1024,
            max_batch_records: d.max_batch_records,
            trust_forwarded_for: false,
            conversion_events: d.conversion_events,
            rate_limit_per_sec: 0,
        }
    }
}

impl CollectorConfig {
    /// The decoder's limits and mappings for these settings.
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_record_bytes: self.max_record_bytes,
            max_batch_records: self.max_batch_records,
            conversion_events: self.conversion_events.iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect(),
            ..DecodeOptions::default()
        }
    }
}

/// Counters the collector keeps (exported at `/metrics` by the binary).
#[derive(Default, Debug)]
pub struct CollectorStats {
    pub requests: AtomicU64,
    pub records_accepted: AtomicU64,
    pub records_rejected: AtomicU64,
    pub bus_failures: AtomicU64,
    pub pixels_dropped: AtomicU64,
    pub rate_limited: AtomicU64,
}

type Limiter = governor::DefaultKeyedRateLimiter<uuid::Uuid>;

/// What every handler shares.
pub struct AppState {
    pub bus: Arc<dyn Bus>,
    pub keys: Arc<dyn KeyStore>,
    pub config: CollectorConfig,
    pub stats: CollectorStats,
    decode: DecodeOptions,
    limiter: Option<Limiter>,
}

impl AppState {
    pub fn new(bus: Arc<dyn Bus>, keys: Arc<dyn KeyStore>, config: CollectorConfig) -> Arc<Self> {
        let decode = config.decode_options();
        let limiter = std::num::NonZeroU32::new(config.rate_limit_per_sec).map(|rate| {
            let burst = std::num::NonZeroU32::new(config.rate_limit_per_sec.max(config.max_batch_records as u32).max(1)).unwrap_or(rate);
            governor::RateLimiter::dashmap(governor::Quota::per_second(rate).allow_burst(burst))
        });
        Arc::new(AppState { bus, keys, config, stats: CollectorStats::default(), decode, limiter })
    }
}

/// The collector's routes. The binary may merge more (reports, links) into it.
pub fn router(state: Arc<AppState>) -> Router {
    let entity = |k: EntityKind| {
        post(move |s: State<Arc<AppState>>, c: ConnectInfo<SocketAddr>, q: RawQuery, r: Request| ingest(s, c, q, r, Expect::Entity(k)))
    };
    let segment = |t: SegmentType| {
        post(move |s: State<Arc<AppState>>, c: ConnectInfo<SocketAddr>, q: RawQuery, r: Request| ingest(s, c, q, r, Expect::Segment(t)))
    };
    let batch = || post(|s: State<Arc<AppState>>, c: ConnectInfo<SocketAddr>, q: RawQuery, r: Request| ingest(s, c, q, r, Expect::Any));
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::CONTENT_ENCODING])
        .max_age(Duration::from_secs(86_400));
    Router::new()
        .route("/v1/batch", batch())
        .route("/v1/events", entity(EntityKind::Event))
        .route("/v1/sessions", entity(EntityKind::Session))
        .route("/v1/touchpoints", entity(EntityKind::Touchpoint))
        .route("/v1/conversions", entity(EntityKind::Conversion))
        .route("/v1/clicks", entity(EntityKind::LinkClick))
        .route("/v1/spend", entity(EntityKind::Spend))
        .route("/v1/track", segment(SegmentType::Track))
        .route("/v1/page", segment(SegmentType::Page))
        .route("/v1/screen", segment(SegmentType::Screen))
        .route("/v1/identify", segment(SegmentType::Identify))
        .route("/v1/alias", segment(SegmentType::Alias))
        .route("/v1/group", segment(SegmentType::Group))
        // The short paths analytics.js uses when its apiHost points here.
        .route("/v1/t", segment(SegmentType::Track))
        .route("/v1/p", segment(SegmentType::Page))
        .route("/v1/s", segment(SegmentType::Screen))
        .route("/v1/i", segment(SegmentType::Identify))
        .route("/v1/a", segment(SegmentType::Alias))
        .route("/v1/g", segment(SegmentType::Group))
        .route("/v1/b", batch())
        .route("/v1/beacon", post(beacon))
        .route("/p.gif", get(pixel))
        .layer(cors)
        // Bodies are limited (compressed and decompressed) by the handlers themselves.
        .layer(DefaultBodyLimit::disable())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the router on `listener` until `shutdown` completes. Bind port 0 in tests.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let details = state.bus.details();
    match state.bus.ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready", "bus": "ok", "bus_details": details}))).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "bus": e.to_string(), "bus_details": details})))
            .into_response(),
    }
}

/// The key from the `Authorization` header: `Bearer KEY` or Segment's Basic `KEY:`.
fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ApiError::BadKey)?.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| ApiError::BadKey)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::BadKey)?;
        let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
        if !user.is_empty() {
            return Ok(Some(user.to_owned()));
        }
    }
    Err(ApiError::BadKey)
}

fn query_key(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "k" || k == "writeKey" || k == "write_key").map(|(_, v)| v.into_owned())
}

/// Takes `n` records from the account's budget, or says how long to wait.
fn check_rate(state: &AppState, account: uuid::Uuid, n: usize) -> Result<(), ApiError> {
    let Some(limiter) = &state.limiter else { return Ok(()) };
    let Some(n) = std::num::NonZeroU32::new(n.min(u32::MAX as usize) as u32) else { return Ok(()) };
    match limiter.check_key_n(&account, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            state.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            Err(ApiError::RateLimited { retry_after_secs: wait.as_secs().max(1) })
        }
        Err(_) => {
            state.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::RateLimited { retry_after_secs: 1 })
        }
    }
}

async fn authenticate(state: &AppState, key: &str) -> Result<KeyInfo, ApiError> {
    state.keys.lookup(key).await.ok_or(ApiError::BadKey)
}

fn client_ip(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> String {
    if state.config.trust_forwarded_for {
        if let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            return first.to_owned();
        }
    }
    peer.ip().to_string()
}

fn request_ctx(state: &AppState, headers: &HeaderMap, peer: SocketAddr, info: KeyInfo) -> RequestCtx {
    RequestCtx {
        account_id: info.account_id,
        received_at: Utc::now(),
        ip: Some(client_ip(state, headers, peer)),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// Checks the content type: JSON, text/plain (beacons) or none.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    let ok = mime.is_empty()
        || mime == "application/json"
        || mime == "text/plain"
        || (mime.starts_with("application/") && mime.ends_with("+json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type `{mime}` is not accepted; send application/json (or text/plain JSON from a beacon)"
        )))
    }
}

/// Reads the body within the limit and decompresses gzip (by header or magic bytes) or deflate,
/// enforcing the limit on the decompressed size while decompressing.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        if len > limit {
            return Err(ApiError::TooLarge(format!("request body is {len} bytes, over the limit of {limit} bytes")));
        }
    }
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        // The only error to_bytes reports for a well-formed stream is the limit.
        let msg = e.to_string();
        if msg.contains("length limit") {
            ApiError::TooLarge(format!("request body is over the limit of {limit} bytes"))
        } else {
            ApiError::BadRequest(format!("could not read the request body: {msg}"))
        }
    })?;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_ascii_lowercase());
    let gzip_magic = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    match encoding.as_deref() {
        Some("gzip") | Some("x-gzip") => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        Some("deflate") => inflate(flate2::read::ZlibDecoder::new(&raw[..]), limit, "deflate"),
        Some("identity") | Some("") | None if gzip_magic => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        Some("identity") | Some("") | None => Ok(raw),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!("content encoding `{other}` is not supported; use gzip or deflate"))),
    }
}

fn inflate(reader: impl Read, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    let mut limited = reader.take(limit as u64 + 1);
    limited.read_to_end(&mut out).map_err(|e| ApiError::BadRequest(format!("body is not valid {what}: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!("decompressed body is over the limit of {limit} bytes")));
    }
    Ok(Bytes::from(out))
}

/// The bus records of decoded records: topic, partition key, versioned JSON value, server time.
pub fn to_out(records: &[Record]) -> Vec<OutRecord> {
    records
        .iter()
        .map(|r| OutRecord {
            topic: r.topic().to_owned(),
            key: r.partition_key(),
            value: r.to_json(),
            timestamp_ms: r.meta.received_at.timestamp_millis(),
        })
        .collect()
}

/// Appends decoded records; answers only after the bus has them durably.
async fn append(state: &AppState, records: &[Record]) -> Result<(), ApiError> {
    if records.is_empty() {
        return Ok(());
    }
    match state.bus.append(to_out(records)).await {
        Ok(_) => {
            state.stats.records_accepted.fetch_add(records.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            state.stats.bus_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, records = records.len(), "bus append failed");
            Err(ApiError::Unavailable(e.to_string()))
        }
    }
}

/// The shared path of every JSON ingestion route.
async fn handle_json(
    state: &AppState,
    peer: SocketAddr,
    query: Option<String>,
    req: Request,
    expect: Expect,
) -> Result<serde_json::Value, ApiError> {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    check_content_type(&headers)?;
    // A key in the header is checked before the body is read.
    let header_info = match header_key(&headers)? {
        Some(k) => Some(authenticate(state, &k).await?),
        None => None,
    };
    let bytes = read_body(state, &headers, body).await?;
    let parsed = touchline_model::parse_body(&bytes, &state.decode)?;
    let info = match header_info {
        Some(i) => i,
        None => {
            let key = parsed.write_key.clone().or_else(|| query_key(query.as_deref())).ok_or(ApiError::MissingKey)?;
            authenticate(state, &key).await?
        }
    };
    let ctx = request_ctx(state, &headers, peer, info);
    let decoded = touchline_model::decode_items(&parsed, &ctx, expect, &state.decode);
    state.stats.records_rejected.fetch_add(decoded.rejected.len() as u64, Ordering::Relaxed);
    if decoded.accepted_items == 0 && !decoded.rejected.is_empty() {
        let too_large = decoded.rejected.iter().all(|r| r.code == "too_large");
        return Err(ApiError::AllRejected { rejected: decoded.rejected, too_large });
    }
    check_rate(state, info.account_id, decoded.records.len())?;
    append(state, &decoded.records).await?;
    Ok(json!({
        "success": true,
        "accepted": decoded.accepted_items,
        "records": decoded.records.len(),
        "rejected": decoded.rejected,
    }))
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    req: Request,
    expect: Expect,
) -> Result<Json<serde_json::Value>, ApiError> {
    handle_json(&state, peer, query, req, expect).await.map(Json)
}

/// `navigator.sendBeacon`: text/plain JSON, key in the body (or `?k=`); answers 204.
async fn beacon(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<StatusCode, ApiError> {
    handle_json(&state, peer, query, req, Expect::Any).await.map(|_| StatusCode::NO_CONTENT)
}

/// A transparent 1×1 GIF (43 bytes).
pub const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `GET /p.gif?k=KEY&…`: always answers the GIF so pages never break; stores the record only
/// when the key and the parameters are valid. `X-Touchline-Status` says what happened.
async fn pixel(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let query = query.unwrap_or_default();
    let status = pixel_inner(&state, peer, &query, &headers).await;
    if status != "stored" {
        state.stats.pixels_dropped.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = (StatusCode::OK, PIXEL_GIF.to_vec()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate, private, max-age=0"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    h.insert("x-touchline-status", HeaderValue::from_static(status));
    resp
}

async fn pixel_inner(state: &AppState, peer: SocketAddr, query: &str, headers: &HeaderMap) -> &'static str {
    if query.len() > state.config.max_record_bytes {
        return "too_large";
    }
    let Some(key) = query_key(Some(query)) else { return "bad_key" };
    let Some(info) = state.keys.lookup(&key).await else { return "bad_key" };
    if check_rate(state, info.account_id, 1).is_err() {
        return "rate_limited";
    }
    let ctx = request_ctx(state, headers, peer, info);
    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
    let (_, result) = touchline_model::decode_pixel(query, referer, &ctx, &state.decode);
    match result {
        Ok(records) => match append(state, &records).await {
            Ok(()) => "stored",
            Err(_) => "unavailable",
        },
        Err(e) => {
            tracing::debug!(error = %e, "pixel rejected");
            state.stats.records_rejected.fetch_add(1, Ordering::Relaxed);
            "invalid"
        }
    }
}
