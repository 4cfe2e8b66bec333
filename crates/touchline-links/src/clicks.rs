//! The click pipeline: clicks queued by redirects and appended to the bus in batches, and the
//! window that tells a device's first click on a link from its repeats.
//!
//! The queue is bounded by bytes, not by clicks: a click's size is whatever its headers make
//! it, so a count alone would not bound memory. A redirect takes room for its click before
//! queueing it and the drainer gives the room back once the click is on the bus. When the bus
//! falls behind by the whole budget, a redirect waits for room up to `queue_wait_ms`, then
//! answers anyway and counts the click as lost (`touchline_link_clicks_lost_total`): a redirect
//! must not hang on a broken disk, and memory must not grow with the outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use touchline_bus::{Bus, OutRecord};
use touchline_model::Record;

/// Counters of the click pipeline.
#[derive(Debug, Default)]
pub struct ClickStats {
    pub redirects: AtomicU64,
    pub logged: AtomicU64,
    /// Redirects that found the queue's byte budget used up and waited for room.
    pub waited: AtomicU64,
    /// Clicks dropped because the queue stayed full for the whole wait.
    pub lost: AtomicU64,
}

/// Clicks appended per bus append at most.
const DRAIN_BATCH: usize = 1_000;

/// A click on its way to the bus, holding its share of the byte budget.
struct Queued {
    record: OutRecord,
    _room: OwnedSemaphorePermit,
}

/// Clicks waiting for the bus, bounded by their bytes.
pub struct ClickQueue {
    tx: mpsc::UnboundedSender<Queued>,
    room: Arc<Semaphore>,
    budget: u32,
    wait: Duration,
    stats: Arc<ClickStats>,
}

impl ClickQueue {
    /// Starts the drainer that appends queued clicks to `bus`.
    pub fn start(bus: Arc<dyn Bus>, stats: Arc<ClickStats>, budget_bytes: usize, wait: Duration) -> ClickQueue {
        let budget = u32::try_from(budget_bytes.max(1)).unwrap_or(u32::MAX);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(drain(rx, bus, stats.clone()));
        ClickQueue { tx, room: Arc::new(Semaphore::new(budget as usize)), budget, wait, stats }
    }

    /// Queues a click; waits for room up to the configured wait when the budget is used up.
    pub async fn push(&self, record: &Record) {
        let out = to_out(record);
        let weight = u32::try_from(out.key.len() + out.value.len()).unwrap_or(u32::MAX).clamp(1, self.budget);
        let room = match self.room.clone().try_acquire_many_owned(weight) {
            Ok(p) => Some(p),
            Err(_) => {
                self.stats.waited.fetch_add(1, Ordering::Relaxed);
                tokio::time::timeout(self.wait, self.room.clone().acquire_many_owned(weight)).await.ok().and_then(Result::ok)
            }
        };
        let Some(room) = room else {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(budget_bytes = self.budget, "click queue full for the whole wait: click dropped");
            return;
        };
        if self.tx.send(Queued { record: out, _room: room }).is_err() {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every click queued so far is on the bus, for at most `within`; false when
    /// some were still queued at the deadline. Called once the redirects have stopped, so a
    /// clean shutdown keeps every click it answered.
    pub async fn flush(&self, within: Duration) -> bool {
        // The room of a queued click comes back only after its append: all of it back means
        // nothing is left in the queue or in flight.
        tokio::time::timeout(within, self.room.acquire_many(self.budget)).await.is_ok_and(|r| r.is_ok())
    }

    /// Bytes of clicks queued and not yet on the bus.
    pub fn queued_bytes(&self) -> usize {
        self.budget as usize - self.room.available_permits()
    }
}

fn to_out(r: &Record) -> OutRecord {
    OutRecord {
        topic: r.topic().to_owned(),
        key: r.partition_key(),
        value: r.to_json(),
        timestamp_ms: r.meta.received_at.timestamp_millis(),
    }
}

async fn drain(mut rx: mpsc::UnboundedReceiver<Queued>, bus: Arc<dyn Bus>, stats: Arc<ClickStats>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < DRAIN_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let records: Vec<OutRecord> = batch.iter().map(|q| q.record.clone()).collect();
        append_until_stored(bus.as_ref(), records, &stats).await;
        // Dropping the batch gives its room back to the redirects.
    }
}

/// Appends, retrying with backoff until the bus takes the clicks: they hold their room in
/// the queue meanwhile, so a long outage makes redirects wait (then drop), never grow memory.
async fn append_until_stored(bus: &dyn Bus, records: Vec<OutRecord>, stats: &ClickStats) {
    let n = records.len() as u64;
    let mut backoff = Duration::from_millis(50);
    loop {
        match bus.append(records.clone()).await {
            Ok(_) => {
                stats.logged.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, clicks = n, "appending link clicks failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Which (device, link) pairs clicked within the window: bounded by entries, O(1) per click.
/// When more pairs are live than the capacity, the cache evicts some early and a repeat of an
/// evicted pair counts as unique again; the capacity is sized so that takes an attack.
pub struct UniqueClicks {
    seen: quick_cache::sync::Cache<(String, String), Instant>,
    window: Duration,
}

impl UniqueClicks {
    pub fn new(capacity: usize, window: Duration) -> Self {
        UniqueClicks { seen: quick_cache::sync::Cache::new(capacity.max(1)), window }
    }

    /// True when `device` has not clicked `code` within the window (and starts a new window).
    pub fn first_in_window(&self, device: &str, code: &str, now: Instant) -> bool {
        let key = (device.to_owned(), code.to_owned());
        let repeat = self.seen.get(&key).is_some_and(|first| now.duration_since(first) < self.window);
        if !repeat {
            self.seen.insert(key, now);
        }
        !repeat
    }

    /// Pairs held now (at most about the capacity).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchline_model::{Body, Id, LinkClick, Meta, ENVELOPE_VERSION};

    fn click(n: usize) -> Record {
        let now = chrono::Utc::now();
        Record {
            v: ENVELOPE_VERSION,
            meta: Meta {
                record_id: Id::from_uuid(uuid::Uuid::now_v7()),
                account_id: uuid::Uuid::nil(),
                timestamp: now,
                received_at: now,
                sent_at: None,
                anonymous_id: Id::new(format!("device-{n}")).ok(),
                customer_id: None,
            },
            body: Body::LinkClick(LinkClick {
                link_id: None,
                short_code: Id::new("tet").ok(),
                target_url: Some("https://shop.example/".into()),
                referer: None,
                user_agent: None,
                ip: None,
                device_id: Id::new(format!("device-{n}")).ok(),
                campaign_id: None,
                advertisement_id: None,
                bot: false,
                unique: Some(true),
            }),
        }
    }

    async fn clicks_in_log(bus: &dyn Bus) -> u64 {
        let mut n = 0;
        for p in 0..bus.partitions() {
            n += bus.end_offset("touchline.link_clicks", p).await.expect("end offset");
        }
        n
    }

    #[tokio::test]
    async fn flush_returns_once_every_queued_click_is_in_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = touchline_bus::EmbeddedLog::open(dir.path(), touchline_bus::LogConfig::default()).await.expect("log");
        let queue = ClickQueue::start(bus.clone(), Arc::new(ClickStats::default()), 4 << 20, Duration::from_secs(2));
        // On this single-threaded runtime the drainer has not run yet: the clicks are queued only.
        for n in 0..2_500 {
            queue.push(&click(n)).await;
        }
        assert_eq!(clicks_in_log(bus.as_ref()).await, 0, "the drainer ran before the flush");
        assert!(queue.flush(Duration::from_secs(30)).await, "the queue did not empty");
        assert_eq!(clicks_in_log(bus.as_ref()).await, 2_500);
        assert_eq!(queue.queued_bytes(), 0);
    }

    #[test]
    fn a_repeat_within_the_window_is_not_unique_and_after_it_is() {
        let u = UniqueClicks::new(1_000, Duration::from_secs(3600));
        let t0 = Instant::now();
        assert!(u.first_in_window("d1", "tet", t0));
        assert!(!u.first_in_window("d1", "tet", t0 + Duration::from_secs(3599)));
        assert!(u.first_in_window("d2", "tet", t0), "another device");
        assert!(u.first_in_window("d1", "sale", t0), "another link");
        assert!(u.first_in_window("d1", "tet", t0 + Duration::from_secs(3600)), "the window has passed");
    }

    #[test]
    fn the_window_holds_at_most_its_capacity() {
        let u = UniqueClicks::new(1_000, Duration::from_secs(3600));
        let t0 = Instant::now();
        for i in 0..100_000 {
            assert!(u.first_in_window(&format!("device-{i}"), "tet", t0));
        }
        // quick_cache holds about its capacity (it rounds shard sizes up).
        assert!(u.len() <= 1_100, "{} pairs held", u.len());
        // The most recent pairs are still known.
        assert!(!u.first_in_window("device-99999", "tet", t0));
    }
}
