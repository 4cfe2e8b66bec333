//! The catalog cache the collector and aggregator read on their hot paths.
//!
//! * Loaded at start; lookups read an immutable snapshot through `ArcSwap` (lock-free).
//! * Refreshed without restart: a background task waits for a change (Postgres LISTEN/NOTIFY,
//!   or a poll on SQLite), compares `catalog_version`, and swaps in a new snapshot.
//! * A key missing from the snapshot costs one store lookup (it may have been created a moment
//!   ago); an unknown key is then remembered as negative for `negative_ttl`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use uuid::Uuid;

use crate::{Account, Advertisement, ApiKey, Campaign, Catalog, CatalogStore, ChannelWeights, CurrencyRate, Link, Result};

/// An immutable view of the catalog.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub accounts: HashMap<Uuid, Account>,
    /// Live (not revoked) keys by hash.
    pub keys: HashMap<String, ApiKey>,
    pub campaigns: HashMap<(Uuid, String), Campaign>,
    pub advertisements: HashMap<(Uuid, String), Advertisement>,
    /// Links by short code, deleted ones included (the redirect answers 410 for them).
    pub links: HashMap<String, Link>,
    /// Data-driven channel weights by (account, model).
    pub channel_weights: HashMap<(Uuid, String), ChannelWeights>,
    /// Exchange rates, sorted by (from, to, valid_from).
    pub currency_rates: Vec<CurrencyRate>,
}

impl Snapshot {
    fn from_catalog(c: Catalog) -> Snapshot {
        Snapshot {
            version: c.version,
            accounts: c.accounts.into_iter().map(|a| (a.id, a)).collect(),
            keys: c.keys.into_iter().filter(|k| !k.revoked).map(|k| (k.key_hash.clone(), k)).collect(),
            campaigns: c.campaigns.into_iter().map(|x| ((x.account_id, x.id.clone()), x)).collect(),
            advertisements: c.advertisements.into_iter().map(|x| ((x.account_id, x.id.clone()), x)).collect(),
            links: c.links.into_iter().map(|l| (l.short_code.clone(), l)).collect(),
            channel_weights: c.channel_weights.into_iter().map(|w| ((w.account_id, w.model.clone()), w)).collect(),
            currency_rates: c.currency_rates,
        }
    }

    /// The time zone of a campaign, else of its account, else UTC.
    pub fn campaign_timezone(&self, account: Uuid, campaign: &str) -> &str {
        self.campaigns
            .get(&(account, campaign.to_owned()))
            .map(|c| c.timezone.as_str())
            .or_else(|| self.accounts.get(&account).map(|a| a.timezone.as_str()))
            .unwrap_or("UTC")
    }
}

pub struct CatalogCache {
    store: Arc<dyn CatalogStore>,
    snapshot: ArcSwap<Snapshot>,
    /// Keys found by a direct lookup after the snapshot was taken.
    found: DashMap<String, ApiKey>,
    negative: DashMap<String, Instant>,
    negative_ttl: Duration,
}

impl CatalogCache {
    /// Loads the catalog now.
    pub async fn load(store: Arc<dyn CatalogStore>, negative_ttl: Duration) -> Result<Arc<CatalogCache>> {
        let snap = Snapshot::from_catalog(store.load_catalog().await?);
        Ok(Arc::new(CatalogCache {
            store,
            snapshot: ArcSwap::from_pointee(snap),
            found: DashMap::new(),
            negative: DashMap::new(),
            negative_ttl,
        }))
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A key by hash: the snapshot, then (once per negative TTL) the store.
    pub async fn lookup_key_hash(&self, hash: &str) -> Option<ApiKey> {
        if let Some(k) = self.snapshot.load().keys.get(hash) {
            return Some(k.clone());
        }
        if let Some(k) = self.found.get(hash) {
            return Some(k.clone());
        }
        if let Some(t) = self.negative.get(hash) {
            if t.elapsed() < self.negative_ttl {
                return None;
            }
        }
        match self.store.find_key(hash).await {
            Ok(Some(k)) if !k.revoked => {
                self.found.insert(hash.to_owned(), k.clone());
                self.negative.remove(hash);
                Some(k)
            }
            Ok(_) => {
                // Bound the negative cache against floods of random keys.
                if self.negative.len() > 100_000 {
                    self.negative.clear();
                }
                self.negative.insert(hash.to_owned(), Instant::now());
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "key lookup failed");
                None
            }
        }
    }

    /// Reloads when the catalog version moved; returns whether it did.
    pub async fn refresh(&self) -> Result<bool> {
        let v = self.store.catalog_version().await?;
        if v == self.snapshot.load().version {
            return Ok(false);
        }
        let snap = Snapshot::from_catalog(self.store.load_catalog().await?);
        self.snapshot.store(Arc::new(snap));
        self.found.clear();
        self.negative.clear();
        Ok(true)
    }

    /// Keeps the cache fresh until the cache is dropped. `poll` bounds the staleness when no
    /// notification arrives.
    pub fn spawn_refresh(self: &Arc<Self>, poll: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<CatalogCache> = Arc::downgrade(self);
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                store.wait_for_change(poll).await;
                let Some(cache) = weak.upgrade() else { return };
                match cache.refresh().await {
                    Ok(true) => tracing::debug!(version = cache.snapshot().version, "catalog reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "catalog refresh failed; keeping the last snapshot"),
                }
            }
        })
    }
}
