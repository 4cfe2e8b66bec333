//! Short links: the redirect (`GET /l/{code}`, and `/{code}` on a dedicated short-link domain)
//! that logs every click without waiting on the bus, and link management with the secret key
//! (create, list with click counts, update, soft delete, QR codes). The binary merges
//! [`router`] into the collector's routes; errors are the collector's [`touchline_collector::ApiError`].

mod clicks;
mod manage;
mod qr;
mod redirect;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::http::HeaderValue;
use axum::routing::get;
use axum::Router;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use touchline_bus::Bus;
use touchline_collector::AppState;
use touchline_sql::{CatalogCache, Store};

pub use clicks::{ClickQueue, ClickStats, UniqueClicks};
pub use redirect::{is_bot, merge_utm};

/// Limits of the short-link routes (`links.*` in the configuration).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinksConfig {
    /// Links one account may hold (deleted ones included); creating more answers 403.
    pub max_per_account: usize,
    /// Bytes of clicks queued for the bus at most; see the click pipeline.
    pub click_queue_bytes: usize,
    /// How long a redirect waits for room in a full click queue before dropping its click.
    pub click_queue_wait_ms: u64,
    /// A device's repeat click on a link within this window is not unique.
    pub unique_window_secs: u64,
    /// (device, link) pairs the unique-click window remembers at most.
    pub unique_window_entries: usize,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            max_per_account: 100_000,
            click_queue_bytes: 16 * 1024 * 1024,
            click_queue_wait_ms: 2_000,
            unique_window_secs: 3_600,
            unique_window_entries: 200_000,
        }
    }
}

pub struct LinkState {
    pub catalog: Arc<CatalogCache>,
    pub store: Arc<dyn Store>,
    /// Where click counts are read (the SQL store or ClickHouse).
    pub results: Arc<dyn touchline_sql::ResultReader>,
    /// The collector's state: key checks (with its throttle) and the client-address rule.
    pub collector: Arc<AppState>,
    pub config: LinksConfig,
    /// Base of short URLs, e.g. `https://go.example` (then links are `{base}/l/{code}`).
    base_url: std::sync::RwLock<String>,
    pub stats: Arc<ClickStats>,
    pub clicks: ClickQueue,
    pub unique: UniqueClicks,
    /// Target with UTMs merged, per code, valid for one catalog version.
    locations: DashMap<String, (i64, HeaderValue, Arc<str>)>,
}

/// Largest body the link management routes read.
const MAX_LINK_BODY_BYTES: usize = 64 * 1024;

/// The first-party device cookie of redirects.
const COOKIE: &str = "tl_did";

/// Where a link's state comes from.
pub struct LinkDeps {
    pub catalog: Arc<CatalogCache>,
    pub store: Arc<dyn Store>,
    pub results: Arc<dyn touchline_sql::ResultReader>,
    pub collector: Arc<AppState>,
    pub bus: Arc<dyn Bus>,
}

impl LinkState {
    /// Starts the click drainer.
    pub fn new(deps: LinkDeps, config: LinksConfig, base_url: String) -> Arc<LinkState> {
        let stats = Arc::new(ClickStats::default());
        let clicks =
            ClickQueue::start(deps.bus, stats.clone(), config.click_queue_bytes, Duration::from_millis(config.click_queue_wait_ms));
        let unique = UniqueClicks::new(config.unique_window_entries, Duration::from_secs(config.unique_window_secs));
        Arc::new(LinkState {
            catalog: deps.catalog,
            store: deps.store,
            results: deps.results,
            collector: deps.collector,
            config,
            base_url: std::sync::RwLock::new(base_url),
            stats,
            clicks,
            unique,
            locations: DashMap::new(),
        })
    }

    pub fn base_url(&self) -> String {
        self.base_url.read().map(|b| b.clone()).unwrap_or_default()
    }

    /// Sets the base of short URLs (once the listener's address is known).
    pub fn set_base_url(&self, base: String) {
        if let Ok(mut b) = self.base_url.write() {
            *b = base;
        }
    }
}

/// The state of the link routes: the links, and the collector's state that authenticates the
/// management calls' secret keys.
#[derive(Clone, FromRef)]
struct LinkRoutes {
    links: Arc<LinkState>,
    collector: Arc<AppState>,
}

pub fn router(state: Arc<LinkState>, short_domain: bool) -> Router {
    use manage::{create, list, remove, show, update};
    use qr::{qr_png, qr_svg};
    use redirect::redirect;
    let mut r = Router::new()
        .route("/l/{code}", get(redirect).head(redirect))
        .route("/v1/links", get(list).post(create))
        .route("/v1/links/{code}", get(show).patch(update).delete(remove))
        .route("/v1/links/{code}/qr.svg", get(qr_svg))
        .route("/v1/links/{code}/qr.png", get(qr_png));
    if short_domain {
        r = r.route("/{code}", get(redirect).head(redirect));
    }
    // Link JSON is a few hundred bytes; nothing legitimate comes near this.
    let collector = state.collector.clone();
    r.layer(axum::extract::DefaultBodyLimit::max(MAX_LINK_BODY_BYTES)).with_state(LinkRoutes { links: state, collector })
}
