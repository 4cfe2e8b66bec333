//! The collector: a stateless axum service that authenticates the tenant, decodes (JSON, gzip,
//! Segment, pixel query strings, beacon text/plain), validates, stamps server time and appends to
//! the bus. It answers 2xx only after the bus has durably accepted the records.
//!
//! Its error type ([`ApiError`]) and key extractors ([`WriteKey`], [`SecretKey`]) serve every
//! JSON route of the binary too (reports, short links), so all of them answer alike.

mod auth;
mod body;
pub mod client_ip;
pub mod error;
pub mod extract;
pub mod keys;
pub mod server;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use touchline_bus::{Bus, OutRecord};
use touchline_model::{DecodeOptions, EntityKind, Expect, Record, RequestCtx, SegmentType};
use tower_http::cors::{Any, CorsLayer};

pub use body::decode_content;
use body::read_body;
pub use client_ip::{anonymize_ip, client_ip, IpRange};
pub use error::ApiError;
pub use extract::{authorization_key, query_key, ApiBody, ApiPath, ApiQuery, SecretKey, WriteKey};
pub use keys::{generate_key, hash_key, KeyInfo, KeyKind, KeyStore, MemoryKeys};
pub use server::{serve_with, ConnStats, ServeOptions};

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
    /// Take the client address from `X-Forwarded-For` when the peer is in `trusted_proxies`: the
    /// right-most entry that is not a trusted proxy (see [`client_ip`]).
    pub trust_forwarded_for: bool,
    /// The proxies whose `X-Forwarded-For` entries are believed: addresses or CIDR ranges. Default:
    /// loopback and the private ranges, where a reverse proxy usually sits. List your proxies
    /// instead when other hosts of the private network can reach the collector directly.
    pub trusted_proxies: Vec<IpRange>,
    /// Segment `track` names that are conversions too, with the conversion kind
    /// (matched without regard to case). Default: Order Completed → purchase, Signed Up → signup.
    pub conversion_events: std::collections::BTreeMap<String, String>,
    /// Records per second one account may send (0 = no limit); over it the collector answers
    /// 429 with `Retry-After`. Bursts up to one full batch are allowed.
    pub rate_limit_per_sec: u32,
    /// Most time to receive a request head, from the moment the connection is ready for one: the
    /// accept, or the end of the previous response on a kept-alive connection. So it also closes
    /// connections that never send a byte and kept-alive connections that send nothing more.
    pub header_read_timeout_ms: u64,
    /// Most time to receive a whole request body; past it the answer is 408 and the connection
    /// is closed.
    pub body_read_timeout_ms: u64,
    /// A connection that moved no byte for this long while no handler worked on it is closed
    /// (a client that stops reading its response, or stalls a body nobody reads).
    pub idle_timeout_ms: u64,
    /// Most connections open at once; those over it are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers); over it hyper answers 431.
    pub max_header_bytes: usize,
    /// Unknown keys remembered, so a repeated one costs no store lookup.
    pub negative_key_cache_entries: usize,
    /// How long an unknown key is remembered: a key created meanwhile works at most this late.
    pub negative_key_cache_ttl_secs: u64,
    /// Failed authentications (missing, malformed or unknown key) one address may make within
    /// `auth_failure_window_secs` before it is answered 429 without a lookup (0 = no limit).
    /// IPv6 addresses count per /64. Keys the key store knows in memory (the catalog snapshot)
    /// are accepted from such an address all the same.
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, from an address's first failure.
    pub auth_failure_window_secs: u64,
    /// Addresses whose failures are tracked at once; the least active are forgotten first.
    pub auth_failure_max_sources: usize,
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
            trusted_proxies: client_ip::default_trusted_proxies(),
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            negative_key_cache_entries: 10_000,
            negative_key_cache_ttl_secs: 60,
            auth_failure_limit: 20,
            auth_failure_window_secs: 60,
            auth_failure_max_sources: 100_000,
        }
    }
}

impl CollectorConfig {
    /// The decoder's limits and mappings for these settings.
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_record_bytes: self.max_record_bytes,
            max_batch_records: self.max_batch_records,
            // What the records of one request may hold in all, header copies included: the
            // body limit, so a small body cannot grow past it by amplification.
            max_request_bytes: self.max_body_bytes,
            conversion_events: self.conversion_events.iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect(),
            ..DecodeOptions::default()
        }
    }

    /// The edge settings that must be positive, named as in the configuration file.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("negative_key_cache_entries", self.negative_key_cache_entries as u64),
            ("negative_key_cache_ttl_secs", self.negative_key_cache_ttl_secs),
            ("auth_failure_window_secs", self.auth_failure_window_secs),
            ("auth_failure_max_sources", self.auth_failure_max_sources as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("collector.{name} must be at least 1"));
        }
        if self.max_connections > 1_000_000 {
            return Err("collector.max_connections must be at most 1000000".to_owned());
        }
        // Below this, ordinary browser requests (cookies, long referrers) start to be refused.
        if self.max_header_bytes < 8192 {
            return Err("collector.max_header_bytes must be at least 8192".to_owned());
        }
        Ok(())
    }

    /// The listener limits of these settings, counting into `stats`.
    pub fn serve_options(&self, stats: Arc<ConnStats>) -> ServeOptions {
        ServeOptions {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            stats,
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
    /// Requests that failed authentication (missing, malformed or unknown key).
    pub auth_failures: AtomicU64,
    /// Requests answered 429 for their address's failures, without a key lookup.
    pub auth_throttled: AtomicU64,
    /// Unknown keys answered from the negative cache, without a store lookup.
    pub negative_key_hits: AtomicU64,
    /// Bodies that did not arrive within `body_read_timeout_ms`.
    pub body_timeouts: AtomicU64,
    /// The connections of the listener served with [`AppState::serve_options`].
    pub connections: Arc<ConnStats>,
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
    auth: auth::Auth,
}

impl AppState {
    pub fn new(bus: Arc<dyn Bus>, keys: Arc<dyn KeyStore>, config: CollectorConfig) -> Arc<Self> {
        let decode = config.decode_options();
        let limiter = std::num::NonZeroU32::new(config.rate_limit_per_sec).map(|rate| {
            let burst = std::num::NonZeroU32::new(config.rate_limit_per_sec.max(config.max_batch_records as u32).max(1)).unwrap_or(rate);
            governor::RateLimiter::dashmap(governor::Quota::per_second(rate).allow_burst(burst))
        });
        let auth = auth::Auth::new(keys.clone(), &config);
        Arc::new(AppState { bus, keys, config, stats: CollectorStats::default(), decode, limiter, auth })
    }

    /// The listener limits of this collector's config, counting into `stats.connections`.
    pub fn serve_options(&self) -> ServeOptions {
        self.config.serve_options(self.stats.connections.clone())
    }

    /// Checks `key` for a request from `ip`: 429 while `ip` is over its failure limit, the
    /// negative cache, then the key store. Every failure counts against `ip`.
    pub async fn authenticate(&self, ip: IpAddr, key: &str) -> Result<KeyInfo, ApiError> {
        self.auth.authenticate(ip, key, &self.stats).await
    }

    /// 429 while `ip` is over its failure limit.
    pub fn check_auth_throttle(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.auth.check_throttle(ip, &self.stats)
    }

    /// Counts a failed authentication that did not go through [`AppState::authenticate`].
    pub fn auth_failed(&self, ip: IpAddr) {
        self.auth.failed(ip, &self.stats);
    }
}

/// The collector's routes. The binary may merge more (reports, links) into it.
pub fn router(state: Arc<AppState>) -> Router {
    let entity = |k: EntityKind| {
        post(move |s: State<Arc<AppState>>, c: ConnectInfo<SocketAddr>, key: Result<WriteKey, ApiError>, r: Request| {
            ingest(s, c, key, r, Expect::Entity(k))
        })
    };
    let segment = |t: SegmentType| {
        post(move |s: State<Arc<AppState>>, c: ConnectInfo<SocketAddr>, key: Result<WriteKey, ApiError>, r: Request| {
            ingest(s, c, key, r, Expect::Segment(t))
        })
    };
    let batch = || {
        post(|s: State<Arc<AppState>>, c: ConnectInfo<SocketAddr>, key: Result<WriteKey, ApiError>, r: Request| {
            ingest(s, c, key, r, Expect::Any)
        })
    };
    // Ingestion takes the public write key in a header, the query or the body, never a cookie:
    // any origin may send, and no credentials are needed. Preflights for `Authorization` and
    // `Content-Type` pass with `*` as long as the page does not ask for credentials; sendBeacon
    // (credentials "include") posts text/plain, which needs no preflight, and ignores the answer.
    // The routes the binary merges in (secret key: links, reports) are outside this layer.
    let cors = CorsLayer::new()
        .allow_origin(Any)
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

/// Serves the router on `listener` until `shutdown` completes, with the default limits of
/// [`CollectorConfig`] (use [`serve_with`] for configured ones). Bind port 0 in tests.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(router, listener, shutdown, CollectorConfig::default().serve_options(Arc::default())).await
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let details = state.bus.details();
    match state.bus.ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready", "bus": "ok", "bus_details": details}))).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "bus": e.to_string(), "bus_details": details})))
            .into_response(),
    }
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

fn request_ctx(headers: &HeaderMap, ip: IpAddr, info: KeyInfo) -> RequestCtx {
    let ip = if info.anonymize_ip { anonymize_ip(ip) } else { ip };
    RequestCtx {
        account_id: info.account_id,
        received_at: Utc::now(),
        ip: Some(ip.to_string()),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// Applies the account's `anonymize_ip` to the addresses records carry from the body, before
/// they reach the bus (the request's own address is anonymized in [`request_ctx`]).
fn anonymize_records(info: KeyInfo, records: &mut [Record]) {
    if !info.anonymize_ip {
        return;
    }
    for r in records {
        let slot = match &mut r.body {
            touchline_model::Body::Event(e) => &mut e.context.ip,
            touchline_model::Body::Session(s) => &mut s.ip,
            touchline_model::Body::LinkClick(c) => &mut c.ip,
            _ => continue,
        };
        *slot = slot.as_deref().and_then(client_ip::anonymize_ip_text);
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
    key: Result<WriteKey, ApiError>,
    req: Request,
    expect: Expect,
) -> Result<serde_json::Value, ApiError> {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    check_content_type(&headers)?;
    let ip = client_ip(&state.config, &headers, peer);
    // A key in the header or the query string is checked before the body is read: with a bad
    // one, nothing is read, inflated or parsed.
    let WriteKey(early_key) = key?;
    let bytes;
    let (info, parsed) = match early_key {
        Some(k) => {
            let info = state.authenticate(ip, &k).await?;
            bytes = read_body(state, &headers, body).await?;
            (info, touchline_model::parse_body(&bytes, &state.decode)?)
        }
        None => {
            // The key can only be in the body (`writeKey`), which is read and parsed before the
            // key is known: only while the address is under its failure limit, and whatever
            // goes wrong before a valid key is found counts as a failure.
            state.check_auth_throttle(ip)?;
            let failed = |_: &ApiError| state.auth_failed(ip);
            bytes = read_body(state, &headers, body).await.inspect_err(failed)?;
            let parsed = touchline_model::parse_body(&bytes, &state.decode).map_err(ApiError::from).inspect_err(failed)?;
            let key = parsed.write_key.clone().ok_or(ApiError::MissingKey).inspect_err(failed)?;
            (state.authenticate(ip, &key).await?, parsed)
        }
    };
    let ctx = request_ctx(&headers, ip, info);
    let mut decoded = touchline_model::decode_items(&parsed, &ctx, expect, &state.decode);
    anonymize_records(info, &mut decoded.records);
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
    key: Result<WriteKey, ApiError>,
    req: Request,
    expect: Expect,
) -> Result<Json<serde_json::Value>, ApiError> {
    handle_json(&state, peer, key, req, expect).await.map(Json)
}

/// `navigator.sendBeacon`: text/plain JSON, key in the body (or `?k=`); answers 204.
async fn beacon(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    key: Result<WriteKey, ApiError>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    handle_json(&state, peer, key, req, Expect::Any).await.map(|_| StatusCode::NO_CONTENT)
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
    let ip = client_ip(&state.config, headers, peer);
    let Some(key) = query_key(Some(query)) else {
        if state.check_auth_throttle(ip).is_err() {
            return "auth_throttled";
        }
        state.auth_failed(ip);
        return "bad_key";
    };
    let info = match state.authenticate(ip, &key).await {
        Ok(info) => info,
        Err(ApiError::AuthThrottled { .. }) => return "auth_throttled",
        Err(_) => return "bad_key",
    };
    if check_rate(state, info.account_id, 1).is_err() {
        return "rate_limited";
    }
    let ctx = request_ctx(headers, ip, info);
    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
    let (_, result) = touchline_model::decode_pixel(query, referer, &ctx, &state.decode);
    match result {
        Ok(mut records) => {
            anonymize_records(info, &mut records);
            match append(state, &records).await {
                Ok(()) => "stored",
                Err(_) => "unavailable",
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "pixel rejected");
            state.stats.records_rejected.fetch_add(1, Ordering::Relaxed);
            "invalid"
        }
    }
}
