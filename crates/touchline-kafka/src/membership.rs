//! Consumer-group membership: which partitions this process owns.
//!
//! A librdkafka consumer subscribed to the aggregator's topics in the group, with the range
//! assignor: topics with equal partition counts are co-partitioned, so partition `p` of every
//! topic lands on the same member and "owning partition p" is one thing. The member never
//! consumes (its partitions are paused); the records are read through [`crate::KafkaBus`]'s
//! readers. Its rebalance callbacks drive [`Membership::owned`]: an assignment adds
//! partitions; a revocation removes them and then waits — up to `revoke_timeout_ms` — until
//! the owner has flushed, checkpointed and called [`Membership::released`] for each, before
//! the group moves them to another member.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use tokio::sync::watch;
use touchline_bus::{BusError, Membership};

use crate::context::{client_config, with_properties, Ctx};
use crate::KafkaConfig;

pub(crate) struct MemberCtx {
    inner: Ctx,
    group: String,
    owned: watch::Sender<Vec<u32>>,
    state: Mutex<MemberState>,
    released: Condvar,
    revoke_timeout: Duration,
    /// Set when the member leaves: a revocation then does not wait for releases.
    closing: AtomicBool,
}

#[derive(Default)]
struct MemberState {
    assigned: BTreeSet<u32>,
    released: BTreeSet<u32>,
}

fn partitions_of(tpl: &TopicPartitionList) -> BTreeSet<u32> {
    tpl.elements().iter().filter_map(|e| u32::try_from(e.partition()).ok()).collect()
}

impl MemberCtx {
    fn publish(&self, st: &MemberState) {
        let v: Vec<u32> = st.assigned.iter().copied().collect();
        self.owned.send_replace(v);
    }
}

impl ClientContext for MemberCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ConsumerContext for MemberCtx {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            if let Rebalance::Error(e) = rebalance {
                tracing::warn!(group = %self.group, error = %e, "consumer-group rebalance error");
            }
            return;
        };
        let revoked = partitions_of(tpl);
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in &revoked {
            st.assigned.remove(p);
        }
        self.publish(&st);
        tracing::info!(group = %self.group, partitions = ?revoked, "partitions revoked; waiting for the owner to release them");
        let deadline = Instant::now() + self.revoke_timeout;
        loop {
            if self.closing.load(Ordering::Relaxed) || revoked.iter().all(|p| st.released.contains(p)) {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<u32> = revoked.iter().filter(|p| !st.released.contains(p)).copied().collect();
                tracing::warn!(group = %self.group, partitions = ?missing, timeout_ms = self.revoke_timeout.as_millis() as u64,
                    "revoked partitions not released in time; handing them over anyway");
                break;
            }
            st = self.released.wait_timeout(st, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else { return };
        // The member only tracks ownership; the records are read elsewhere.
        if let Err(e) = consumer.pause(tpl) {
            tracing::warn!(group = %self.group, error = %e, "could not pause the membership consumer's partitions");
        }
        let got = partitions_of(tpl);
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in &got {
            st.released.remove(p);
            st.assigned.insert(*p);
        }
        tracing::info!(group = %self.group, partitions = ?got, "partitions assigned");
        self.publish(&st);
    }
}

/// This process's share of a Kafka consumer group. Dropping it leaves the group.
pub struct KafkaMembership {
    ctx: Arc<MemberCtx>,
    pub(crate) consumer: Arc<BaseConsumer<MemberCtx>>,
    stop: Arc<AtomicBool>,
}

impl KafkaMembership {
    pub(crate) fn start(cfg: &KafkaConfig, group: &str, topics: &[&str]) -> Result<KafkaMembership, BusError> {
        if group.is_empty() {
            return Err(BusError::Config("a consumer group name is required".into()));
        }
        let ctx = MemberCtx {
            inner: Ctx::new("member"),
            group: group.to_owned(),
            owned: watch::Sender::new(Vec::new()),
            state: Mutex::new(MemberState::default()),
            released: Condvar::new(),
            revoke_timeout: Duration::from_millis(cfg.revoke_timeout_ms),
            closing: AtomicBool::new(false),
        };
        let mut c = client_config(cfg, "member");
        c.set("group.id", group)
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (cfg.session_timeout_ms / 4).max(100).to_string())
            // The revoke callback may wait for the owner; stay in the group meanwhile.
            .set("max.poll.interval.ms", (cfg.revoke_timeout_ms + 300_000).min(i32::MAX as u64).to_string())
            .set("fetch.max.bytes", "1048576")
            .set("queued.max.messages.kbytes", "1024");
        let consumer: BaseConsumer<MemberCtx> =
            with_properties(c, cfg).create_with_context(ctx).map_err(|e| BusError::Config(format!("kafka group member: {e}")))?;
        let ctx = consumer.context().clone();
        let consumer = Arc::new(consumer);
        consumer.subscribe(topics).map_err(|e| BusError::Config(format!("kafka subscribe {topics:?} in group {group}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (consumer.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("kafka-member-{group}"))
            .spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    // Serves the rebalance callbacks; records (none while paused) are dropped.
                    if let Some(Err(e)) = c2.poll(Duration::from_millis(100)) {
                        tracing::debug!(error = %e, "kafka group member");
                    }
                }
                c2.unsubscribe();
                // Dropping the last handle closes the consumer and leaves the group.
            })
            .map_err(|e| BusError::Unavailable(format!("cannot start the kafka group thread: {e}")))?;
        Ok(KafkaMembership { ctx, consumer, stop })
    }

    /// Leaves the group now and waits (up to 10 s) until the member has left.
    pub async fn leave(self) {
        self.ctx.closing.store(true, Ordering::Relaxed);
        self.ctx.released.notify_all();
        self.stop.store(true, Ordering::Relaxed);
        let consumer = self.consumer.clone();
        drop(self);
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                while Arc::strong_count(&consumer) > 1 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }),
        )
        .await;
    }
}

impl Membership for KafkaMembership {
    fn owned(&self) -> watch::Receiver<Vec<u32>> {
        self.ctx.owned.subscribe()
    }

    fn released(&self, partition: u32) {
        let mut st = self.ctx.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !st.assigned.contains(&partition) {
            st.released.insert(partition);
        }
        drop(st);
        self.ctx.released.notify_all();
    }
}

impl Drop for KafkaMembership {
    fn drop(&mut self) {
        self.ctx.closing.store(true, Ordering::Relaxed);
        self.ctx.released.notify_all();
        self.stop.store(true, Ordering::Relaxed);
    }
}
