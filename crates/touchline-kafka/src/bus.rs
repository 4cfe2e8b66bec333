//! [`KafkaBus`]: the [`Bus`] trait on Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use touchline_bus::{partition_for_key, validate_topic, Bus, BusError, Membership, OutRecord, Position, StoredRecord};

use crate::context::{client_config, with_properties, Ctx};
use crate::membership::{KafkaMembership, MemberCtx};
use crate::reader::Reader;
use crate::{blocking, bus_error, KafkaConfig};

/// (topic, partition) and the acknowledged end offset known before a send.
pub(crate) type Floor = ((String, u32), Option<u64>);

/// The bus on Kafka. Open it with [`KafkaBus::connect`]; share the `Arc`.
pub struct KafkaBus {
    pub(crate) cfg: KafkaConfig,
    /// Replaced when librdkafka reports a fatal (idempotence) error.
    producer: RwLock<Arc<FutureProducer<Ctx>>>,
    pub(crate) reader: Arc<Reader>,
    /// Topics known to exist with the configured partition count.
    topics: Mutex<BTreeSet<String>>,
    topic_create: tokio::sync::Mutex<()>,
    /// Offset committers of groups this process is not a member of.
    committers: Mutex<HashMap<String, Arc<BaseConsumer<Ctx>>>>,
    /// Group members started by [`Bus::join`]; commits of their group go through them.
    members: Mutex<HashMap<String, Weak<BaseConsumer<MemberCtx>>>>,
    /// One past the highest offset acknowledged to this process, per (topic, partition).
    acked: Mutex<HashMap<(String, u32), u64>>,
}

impl KafkaBus {
    /// Builds the clients (no network yet: librdkafka connects lazily). Call [`Bus::ready`]
    /// to check the broker.
    pub fn connect(cfg: KafkaConfig) -> Result<Arc<KafkaBus>, BusError> {
        cfg.validate().map_err(BusError::Config)?;
        let producer = Arc::new(build_producer(&cfg)?);
        let reader = Reader::new(&cfg)?;
        Ok(Arc::new(KafkaBus {
            cfg,
            producer: RwLock::new(producer),
            reader,
            topics: Mutex::new(BTreeSet::new()),
            topic_create: tokio::sync::Mutex::new(()),
            committers: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
            acked: Mutex::new(HashMap::new()),
        }))
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    fn producer(&self) -> Arc<FutureProducer<Ctx>> {
        self.producer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// After a failed or unconfirmed delivery: the producer is replaced by a fresh one (a new
    /// producer id) and the old one is purged and destroyed. A failure leaves a gap in the
    /// idempotent producer's sequence numbers, which librdkafka repairs with an epoch bump
    /// (KIP-360); not every broker supports that (tansu 0.6 does not), and a fresh producer
    /// needs nothing from the broker but a new id. Purging also guarantees that records whose
    /// append failed are never delivered later behind the caller's back.
    fn reset_producer(&self, used: &Arc<FutureProducer<Ctx>>) {
        let mut slot = self.producer.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !Arc::ptr_eq(&slot, used) {
            return;
        }
        match build_producer(&self.cfg) {
            Ok(p) => {
                if let Some((code, why)) = used.client().fatal_error() {
                    tracing::error!(code = ?code, "kafka producer hit a fatal error ({why})");
                }
                let old = std::mem::replace(&mut *slot, Arc::new(p));
                old.purge(PurgeConfig::default().queue().inflight());
                // Destroying a producer blocks briefly (it collects the purged reports).
                let _ = std::thread::Builder::new().name("kafka-producer-drop".into()).spawn(move || drop(old));
                tracing::warn!("kafka producer reset after a failed delivery");
            }
            Err(e) => tracing::error!(error = %e, "kafka producer could not be rebuilt after a failed delivery"),
        }
    }

    /// One past the highest offset of `topic`/`partition` this process saw acknowledged.
    pub fn last_acked(&self, topic: &str, partition: u32) -> Option<u64> {
        self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&(topic.to_owned(), partition)).copied()
    }

    /// Makes sure `topic` exists with the configured partition count (creating it when
    /// `auto_create_topics` is on).
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        if self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(topic) {
            return Ok(());
        }
        validate_topic(topic)?;
        let _creating = self.topic_create.lock().await;
        if self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(topic) {
            return Ok(());
        }
        let want = self.cfg.partitions;
        let found = crate::admin::partition_count(&self.cfg, topic).await?;
        match found {
            Some(n) if n == want => {}
            Some(n) => {
                return Err(BusError::Config(format!(
                    "kafka topic {topic} has {n} partitions but kafka.partitions is {want}; every touchline topic must have the same partition count"
                )))
            }
            None if !self.cfg.auto_create_topics => {
                return Err(BusError::Config(format!(
                    "kafka topic {topic} does not exist (run `touchline migrate`, or set kafka.auto_create_topics)"
                )))
            }
            None => {
                crate::admin::create_topic(&self.cfg, topic).await?;
            }
        }
        self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(topic.to_owned());
        Ok(())
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<(), BusError> {
        if partition >= self.cfg.partitions {
            return Err(BusError::NoSuchPartition { topic: topic.to_owned(), partition, partitions: self.cfg.partitions });
        }
        Ok(())
    }

    pub(crate) fn register_member(&self, group: &str, consumer: &Arc<BaseConsumer<MemberCtx>>) {
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(group.to_owned(), Arc::downgrade(consumer));
    }

    fn member(&self, group: &str) -> Option<Arc<BaseConsumer<MemberCtx>>> {
        let mut m = self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match m.get(group).and_then(Weak::upgrade) {
            Some(c) => Some(c),
            None => {
                m.remove(group);
                None
            }
        }
    }

    fn committer(&self, group: &str) -> Result<Arc<BaseConsumer<Ctx>>, BusError> {
        let mut m = self.committers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = m.get(group) {
            return Ok(c.clone());
        }
        let mut c = client_config(&self.cfg, "offsets");
        c.set("group.id", group).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
        let c: BaseConsumer<Ctx> = with_properties(c, &self.cfg)
            .create_with_context(Ctx::new("offsets"))
            .map_err(|e| BusError::Config(format!("kafka offsets client: {e}")))?;
        let c = Arc::new(c);
        m.insert(group.to_owned(), c.clone());
        Ok(c)
    }

    /// Appends `records`, waiting at most `timeout` for the delivery reports. On failure the
    /// error comes with, per (topic, partition) written to, the acknowledged end offset known
    /// before sending (`None`: unknown): a failed record can only have landed at or after it.
    pub(crate) async fn append_within(&self, records: Vec<OutRecord>, timeout: Duration) -> Result<Vec<Position>, (BusError, Vec<Floor>)> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut topics: Vec<&str> = Vec::new();
        for r in &records {
            if r.key.is_empty() {
                let e = BusError::Config(format!(
                    "a record for topic {} has an empty key; every record needs its account:identity key",
                    r.topic
                ));
                return Err((e, Vec::new()));
            }
            if !topics.contains(&r.topic.as_str()) {
                topics.push(&r.topic);
            }
        }
        for t in topics {
            self.ensure_topic(t).await.map_err(|e| (e, Vec::new()))?;
        }
        let floors = {
            let acked = self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut f: Vec<Floor> = Vec::new();
            for r in &records {
                let k = (r.topic.clone(), partition_for_key(&r.key, self.cfg.partitions));
                if !f.iter().any(|(x, _)| *x == k) {
                    let v = acked.get(&k).copied();
                    f.push((k, v));
                }
            }
            f
        };
        self.produce(&records, timeout).await.map_err(|e| (e, floors))
    }

    /// Appends without the empty-key and topic checks.
    async fn produce(&self, records: &[OutRecord], timeout: Duration) -> Result<Vec<Position>, BusError> {
        let producer = self.producer();
        let deadline = Instant::now() + timeout;
        let n = self.cfg.partitions;
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let partition = partition_for_key(&r.key, n);
            let mut rec = FutureRecord::to(&r.topic).key(r.key.as_bytes()).payload(&r.value).partition(partition as i32);
            if r.timestamp_ms > 0 {
                rec = rec.timestamp(r.timestamp_ms);
            }
            // A full queue (the in-flight bound) waits for room, up to the produce timeout.
            loop {
                match producer.send_result(rec) {
                    Ok(f) => {
                        pending.push((partition, f));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if Instant::now() < deadline => {
                        rec = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        // Records already queued are purged with the producer.
                        self.reset_producer(&producer);
                        return Err(bus_error("produce", &e));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(pending.len());
        let mut first_err = None;
        for (partition, f) in pending {
            let res = tokio::time::timeout_at(deadline.into(), f).await;
            match res {
                Ok(Ok(Ok(d))) => {
                    let offset = u64::try_from(d.offset).unwrap_or(0);
                    if u32::try_from(d.partition).ok() != Some(partition) {
                        first_err.get_or_insert(BusError::Unavailable(format!(
                            "kafka delivered a record to partition {} instead of {partition}",
                            d.partition
                        )));
                    }
                    out.push(Position { partition, offset });
                }
                Ok(Ok(Err((e, _)))) => {
                    first_err.get_or_insert(bus_error("delivery", &e));
                }
                Ok(Err(_)) => {
                    first_err.get_or_insert(BusError::Unavailable("kafka producer dropped a delivery report".into()));
                }
                Err(_) => {
                    first_err.get_or_insert(BusError::Unavailable(format!(
                        "kafka delivery not confirmed within {} ms (is the broker reachable?)",
                        timeout.as_millis()
                    )));
                }
            }
        }
        if let Some(e) = first_err {
            self.reset_producer(&producer);
            return Err(e);
        }
        let mut acked = self.acked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (r, p) in records.iter().zip(&out) {
            let slot = acked.entry((r.topic.clone(), p.partition)).or_insert(0);
            *slot = (*slot).max(p.offset + 1);
        }
        Ok(out)
    }

    /// Records not yet committed by `group`, per partition (summed over `topics`): the end
    /// offset minus the committed offset (minus the start offset when nothing is committed).
    pub async fn lag(&self, group: &str, topics: &[&str], partitions: &[u32]) -> Result<BTreeMap<u32, u64>, BusError> {
        let mut out = BTreeMap::new();
        for &p in partitions {
            let mut sum = 0u64;
            for t in topics {
                let (start, end) = self.watermarks(t, p).await?;
                let done = self.committed(group, t, p).await?.unwrap_or(start);
                sum += end.saturating_sub(done);
            }
            out.insert(p, sum);
        }
        Ok(out)
    }

    /// Low and high watermarks of a partition (a network round trip).
    pub async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), BusError> {
        self.check_partition(topic, partition)?;
        self.ensure_topic(topic).await?;
        let consumer = self.reader.consumer.clone();
        let t = topic.to_owned();
        let timeout = self.cfg.request_timeout();
        blocking(move || {
            let (lo, hi) = consumer
                .fetch_watermarks(&t, partition as i32, timeout)
                .map_err(|e| bus_error(&format!("watermarks of {t}/{partition}"), &e))?;
            Ok((u64::try_from(lo).unwrap_or(0), u64::try_from(hi).unwrap_or(0)))
        })
        .await
    }
}

fn build_producer(cfg: &KafkaConfig) -> Result<FutureProducer<Ctx>, BusError> {
    let mut c = client_config(cfg, "producer");
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &cfg.compression)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("queue.buffering.max.messages", cfg.queue_max_messages.to_string())
        .set("queue.buffering.max.kbytes", cfg.queue_max_kbytes.max(1).to_string())
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set("request.timeout.ms", cfg.message_timeout_ms.min(30_000).to_string())
        .set("partitioner", "murmur2_random");
    with_properties(c, cfg).create_with_context(Ctx::new("producer")).map_err(|e| BusError::Config(format!("kafka producer: {e}")))
}

#[async_trait]
impl Bus for KafkaBus {
    fn partitions(&self) -> u32 {
        self.cfg.partitions
    }

    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, BusError> {
        self.append_within(records, self.cfg.produce_timeout()).await.map_err(|(e, _)| e)
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize, wait: Duration) -> Result<Vec<StoredRecord>, BusError> {
        self.check_partition(topic, partition)?;
        self.ensure_topic(topic).await?;
        self.reader.read(topic, partition, from, max, wait).await
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        Ok(self.watermarks(topic, partition).await?.0)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, BusError> {
        Ok(self.watermarks(topic, partition).await?.1)
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), BusError> {
        self.check_partition(topic, partition)?;
        self.ensure_topic(topic).await?;
        let mut tpl = TopicPartitionList::new();
        let offset = i64::try_from(next_offset).map_err(|_| BusError::Config(format!("offset {next_offset} is out of Kafka's range")))?;
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(offset)).map_err(|e| bus_error("commit", &e))?;
        let what = format!("commit of {group} on {topic}/{partition}");
        if let Some(m) = self.member(group) {
            return blocking(move || m.commit(&tpl, CommitMode::Sync).map_err(|e| bus_error(&what, &e))).await;
        }
        let c = self.committer(group)?;
        blocking(move || c.commit(&tpl, CommitMode::Sync).map_err(|e| bus_error(&what, &e))).await
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, BusError> {
        self.check_partition(topic, partition)?;
        self.ensure_topic(topic).await?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition as i32);
        let timeout = self.cfg.request_timeout();
        let what = format!("committed offset of {group} on {topic}/{partition}");
        let got = if let Some(m) = self.member(group) {
            blocking(move || m.committed_offsets(tpl, timeout).map_err(|e| bus_error(&what, &e))).await?
        } else {
            let c = self.committer(group)?;
            blocking(move || c.committed_offsets(tpl, timeout).map_err(|e| bus_error(&what, &e))).await?
        };
        let Some(el) = got.find_partition(topic, partition as i32) else { return Ok(None) };
        if let Err(e) = el.error() {
            return Err(bus_error(&format!("committed offset of {group} on {topic}/{partition}"), &e));
        }
        Ok(match el.offset() {
            Offset::Offset(o) if o >= 0 => Some(o as u64),
            _ => None,
        })
    }

    async fn ready(&self) -> Result<(), BusError> {
        let producer = self.producer();
        if let Some((code, why)) = producer.client().fatal_error() {
            return Err(BusError::Unavailable(format!("kafka producer failed ({code:?}): {why}")));
        }
        let timeout = self.cfg.request_timeout().min(Duration::from_secs(2));
        let brokers = self.cfg.brokers.clone();
        blocking(move || {
            let md = producer.client().fetch_metadata(None, timeout).map_err(|e| bus_error(&format!("metadata from {brokers}"), &e))?;
            if md.brokers().is_empty() {
                return Err(BusError::Unavailable(format!("kafka at {brokers} lists no brokers")));
            }
            Ok(())
        })
        .await
    }

    async fn join(&self, group: &str, topics: &[&str]) -> Result<Arc<dyn Membership>, BusError> {
        for t in topics {
            self.ensure_topic(t).await?;
        }
        let m = KafkaMembership::start(&self.cfg, group, topics)?;
        self.register_member(group, &m.consumer);
        Ok(Arc::new(m))
    }
}
