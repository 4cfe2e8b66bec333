//! Per-partition readers: one librdkafka consumer (no group) with every partition that was
//! read assigned to it and split into its own queue, so each partition prefetches on its own
//! and a read is a non-blocking poll of that queue. A partition is positioned once (by
//! assignment at the requested offset) and seeks only when a read asks for an offset other
//! than the one after the last record it returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use touchline_bus::{BusError, StoredRecord};

use crate::context::{client_config, with_properties, Ctx};
use crate::{bus_error, KafkaConfig};

pub(crate) struct Reader {
    pub(crate) consumer: Arc<BaseConsumer<Ctx>>,
    parts: Mutex<HashMap<(String, u32), SharedPart>>,
    stop: Arc<AtomicBool>,
    request_timeout: Duration,
    last_sweep: Mutex<Instant>,
}

type SharedPart = Arc<tokio::sync::Mutex<Part>>;

struct Part {
    queue: PartitionQueue<Ctx>,
    notify: Arc<Notify>,
    /// Offset the next record in the queue should have (where the last read ended).
    next: u64,
    last_read: Instant,
}

/// A partition nobody read for this long is unassigned (e.g. after a rebalance moved it to
/// another aggregator), so it stops prefetching.
const IDLE_UNASSIGN: Duration = Duration::from_secs(120);

impl Reader {
    pub(crate) fn new(cfg: &KafkaConfig) -> Result<Arc<Reader>, BusError> {
        let mut c = client_config(cfg, "reader");
        // Never joins nor commits; librdkafka's assign API needs a group id all the same.
        c.set("group.id", format!("{}-reader", cfg.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // An offset before the log start resumes at the start; the reader drops records
            // before the requested offset, so an offset past the end is also safe.
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", cfg.fetch_wait_max_ms.to_string())
            // Prefetch per partition: a few read batches, not more (7 topics × partitions).
            .set("queued.min.messages", "20000")
            .set("queued.max.messages.kbytes", "4096");
        let consumer: BaseConsumer<Ctx> =
            with_properties(c, cfg).create_with_context(Ctx::new("reader")).map_err(|e| BusError::Config(format!("kafka reader: {e}")))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        // The main queue carries errors and logs; it must be served even though the records
        // come through the partition queues.
        let (c2, s2) = (Arc::downgrade(&consumer), stop.clone());
        std::thread::Builder::new()
            .name("kafka-reader-poll".into())
            .spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    let Some(c) = c2.upgrade() else { return };
                    if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
                        tracing::debug!(error = %e, "kafka reader");
                    }
                    drop(c);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .map_err(|e| BusError::Unavailable(format!("cannot start the kafka reader thread: {e}")))?;
        Ok(Arc::new(Reader {
            consumer,
            parts: Mutex::new(HashMap::new()),
            stop,
            request_timeout: cfg.request_timeout(),
            last_sweep: Mutex::new(Instant::now()),
        }))
    }

    fn part(&self, topic: &str, partition: u32, from: u64) -> Result<(SharedPart, bool), BusError> {
        let mut parts = self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = parts.get(&(topic.to_owned(), partition)) {
            return Ok((p.clone(), false));
        }
        // Split first, so no record of the partition ever lands on the main queue.
        let mut queue = self
            .consumer
            .split_partition_queue(topic, partition as i32)
            .ok_or_else(|| BusError::Config(format!("kafka reader cannot open {topic}/{partition}")))?;
        let notify = Arc::new(Notify::new());
        let n2 = notify.clone();
        queue.set_nonempty_callback(move || n2.notify_one());
        let mut tpl = TopicPartitionList::new();
        let offset = i64::try_from(from).map_err(|_| BusError::Config(format!("offset {from} is out of Kafka's range")))?;
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(offset)).map_err(|e| bus_error("assign", &e))?;
        self.consumer.incremental_assign(&tpl).map_err(|e| bus_error(&format!("assign {topic}/{partition}"), &e))?;
        let p = Arc::new(tokio::sync::Mutex::new(Part { queue, notify, next: from, last_read: Instant::now() }));
        parts.insert((topic.to_owned(), partition), p.clone());
        Ok((p, true))
    }

    /// Unassigns partitions idle for [`IDLE_UNASSIGN`] (checked at most every 30 s).
    fn sweep(&self) {
        let now = Instant::now();
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if now.duration_since(*last) < Duration::from_secs(30) {
                return;
            }
            *last = now;
        }
        let mut parts = self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let idle: Vec<(String, u32)> = parts
            .iter()
            .filter(|(_, p)| p.try_lock().is_ok_and(|p| now.duration_since(p.last_read) >= IDLE_UNASSIGN))
            .map(|(k, _)| k.clone())
            .collect();
        if idle.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &idle {
            tpl.add_partition(t, *p as i32);
            parts.remove(&(t.clone(), *p));
        }
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::debug!(error = %e, "kafka reader: unassigning idle partitions");
        }
    }

    pub(crate) async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, BusError> {
        self.sweep();
        let (part, new) = self.part(topic, partition, from)?;
        let mut part = part.lock().await;
        part.last_read = Instant::now();
        let mut positioned = new;
        if part.next != from {
            let offset = i64::try_from(from).map_err(|_| BusError::Config(format!("offset {from} is out of Kafka's range")))?;
            // Asynchronous seek: librdkafka discards records fetched before it.
            self.consumer
                .seek(topic, partition as i32, Offset::Offset(offset), Timeout::After(Duration::ZERO))
                .map_err(|e| bus_error(&format!("seek {topic}/{partition} to {from}"), &e))?;
            part.next = from;
            positioned = true;
        }
        let mut wait = wait;
        // How many records to wait for before returning (within `wait`).
        let mut want = 1;
        if positioned && wait < self.request_timeout {
            // Right after positioning nothing is fetched yet; records that already exist at
            // `from` are still returned, as by the embedded log (one watermark round trip).
            let (c, t) = (self.consumer.clone(), topic.to_owned());
            let timeout = self.request_timeout;
            let high = crate::blocking(move || {
                c.fetch_watermarks(&t, partition as i32, timeout).map_err(|e| bus_error(&format!("watermarks of {t}/{partition}"), &e))
            })
            .await?
            .1;
            let high = u64::try_from(high).unwrap_or(0);
            if high > from {
                wait = self.request_timeout;
                want = usize::try_from(high - from).unwrap_or(usize::MAX).min(max.max(1));
            }
        }
        let deadline = Instant::now() + wait;
        let max = max.max(1);
        let mut out = Vec::new();
        loop {
            while out.len() < max {
                match part.queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Err(e)) => {
                        tracing::debug!(topic, partition, error = %e, "kafka fetch");
                        break;
                    }
                    Some(Ok(m)) => {
                        let Ok(offset) = u64::try_from(m.offset()) else { continue };
                        if offset < part.next {
                            continue;
                        }
                        out.push(StoredRecord {
                            topic: topic.to_owned(),
                            partition,
                            offset,
                            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
                            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        });
                    }
                }
            }
            if let Some(last) = out.last() {
                part.next = last.offset + 1;
            }
            let now = Instant::now();
            if out.len() >= want || now >= deadline {
                return Ok(out);
            }
            let notify = part.notify.clone();
            // A record arriving between the poll and here leaves a permit, so this returns.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(250)), notify.notified()).await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
