//! Key checks in front of the [`KeyStore`]: a bounded cache of unknown keys, and a per-address
//! throttle on failed authentications.
//!
//! The write key is public, so guessing it is not the threat; cost is. Each unknown key may cost
//! the store a query, and a request whose key is in its body costs a read, an inflate and a parse
//! before the key is even seen. A key the store knows in memory ([`KeyStore::known_valid`]) passes
//! at once. Otherwise, an address that failed `auth_failure_limit` times within
//! `auth_failure_window_secs` is answered 429 without a lookup until the window ends, and an
//! unknown key is remembered for `negative_key_cache_ttl_secs`. A key created meanwhile works as
//! soon as the store's memory has it (the catalog's next refresh), and at the latest when its
//! negative entry expires.
//!
//! The maps are `quick_cache` caches: bounded by entries, evicting what is least used, sharded so
//! worker threads rarely contend. Entries carry their start time and count as absent once older
//! than their TTL.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::{ApiError, CollectorConfig, CollectorStats, KeyInfo, KeyStore};

/// Keys longer than this are refused unseen (stores do the same).
const MAX_KEY_LEN: usize = 256;

/// Whom failures are counted against: an IPv4 address, or an IPv6 /64, the smallest network a
/// host is usually given (counting single IPv6 addresses would let one host rotate through 2^64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Failures of one source in a fixed window that starts at its first failure.
struct Window {
    started: Instant,
    failures: AtomicU32,
}

pub(crate) struct Auth {
    keys: Arc<dyn KeyStore>,
    /// SHA-256 of keys the store did not know, with when it said so.
    unknown: Cache<[u8; 32], Instant>,
    unknown_ttl: Duration,
    failures: Option<Cache<Source, Arc<Window>>>,
    limit: u32,
    window: Duration,
}

fn fresh(at: Option<Instant>, ttl: Duration) -> bool {
    at.is_some_and(|t| t.elapsed() < ttl)
}

impl Auth {
    pub(crate) fn new(keys: Arc<dyn KeyStore>, config: &CollectorConfig) -> Auth {
        let entries = config.negative_key_cache_entries.max(1);
        Auth {
            keys,
            unknown: Cache::new(entries),
            unknown_ttl: Duration::from_secs(config.negative_key_cache_ttl_secs),
            failures: (config.auth_failure_limit > 0).then(|| Cache::new(config.auth_failure_max_sources.max(1))),
            limit: config.auth_failure_limit,
            window: Duration::from_secs(config.auth_failure_window_secs),
        }
    }

    /// The current window of `ip`, if it has one.
    fn window_of(&self, ip: IpAddr) -> Option<Arc<Window>> {
        self.failures.as_ref()?.get(&Source::from(ip)).filter(|w| w.started.elapsed() < self.window)
    }

    /// 429 when `ip` is over its failure limit.
    pub(crate) fn check_throttle(&self, ip: IpAddr, stats: &CollectorStats) -> Result<(), ApiError> {
        let Some(w) = self.window_of(ip) else { return Ok(()) };
        if w.failures.load(Ordering::Relaxed) < self.limit {
            return Ok(());
        }
        stats.auth_throttled.fetch_add(1, Ordering::Relaxed);
        let left = self.window.saturating_sub(w.started.elapsed());
        Err(ApiError::AuthThrottled { retry_after_secs: (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1) })
    }

    /// Counts a failed authentication (unknown, malformed or missing key) against `ip`.
    pub(crate) fn failed(&self, ip: IpAddr, stats: &CollectorStats) {
        stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        let Some(failures) = &self.failures else { return };
        let w = self.window_of(ip).unwrap_or_else(|| {
            // Two first failures racing may each start a window; one of them is lost. Harmless.
            let w = Arc::new(Window { started: Instant::now(), failures: AtomicU32::new(0) });
            failures.insert(Source::from(ip), w.clone());
            w
        });
        w.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks `key` for a request from `ip`.
    pub(crate) async fn authenticate(&self, ip: IpAddr, key: &str, stats: &CollectorStats) -> Result<KeyInfo, ApiError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            self.check_throttle(ip, stats)?;
            self.failed(ip, stats);
            return Err(ApiError::BadKey);
        }
        // Known valid keys pass whatever else their address sent: one bad client behind a shared
        // NAT or proxy does not lock out the rest.
        if let Some(info) = self.keys.known_valid(key) {
            return Ok(info);
        }
        self.check_throttle(ip, stats)?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if fresh(self.unknown.get(&digest), self.unknown_ttl) {
            stats.negative_key_hits.fetch_add(1, Ordering::Relaxed);
            self.failed(ip, stats);
            return Err(ApiError::BadKey);
        }
        match self.keys.lookup(key).await {
            Some(info) => Ok(info),
            None => {
                self.unknown.insert(digest, Instant::now());
                self.failed(ip, stats);
                Err(ApiError::BadKey)
            }
        }
    }
}
