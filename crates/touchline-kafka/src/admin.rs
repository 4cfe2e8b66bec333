//! Topic management: create touchline's topics with the configured partition count and
//! replication factor, idempotently, and check that existing ones are co-partitioned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use touchline_bus::{validate_topic, BusError};

use crate::context::{client_config, with_properties, Ctx};
use crate::{blocking, bus_error, KafkaConfig};

/// What [`ensure_topics`] found or did for one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicState {
    Created,
    Exists,
}

/// The outcome of [`ensure_topics`]: every topic with its partition count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicReport {
    pub topics: Vec<(String, u32, TopicState)>,
}

impl TopicReport {
    pub fn created(&self) -> Vec<&str> {
        self.topics.iter().filter(|t| t.2 == TopicState::Created).map(|t| t.0.as_str()).collect()
    }
}

impl std::fmt::Display for TopicReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, n, state) in &self.topics {
            let s = match state {
                TopicState::Created => "created",
                TopicState::Exists => "exists",
            };
            writeln!(f, "kafka topic {name}: {n} partitions ({s})")?;
        }
        Ok(())
    }
}

fn admin(cfg: &KafkaConfig) -> Result<Arc<AdminClient<Ctx>>, BusError> {
    with_properties(client_config(cfg, "admin"), cfg)
        .create_with_context(Ctx::new("admin"))
        .map(Arc::new)
        .map_err(|e| BusError::Config(format!("kafka admin client: {e}")))
}

async fn count(admin: &Arc<AdminClient<Ctx>>, topic: &str, timeout: Duration) -> Result<Option<u32>, BusError> {
    let (a, t) = (admin.clone(), topic.to_owned());
    blocking(move || count_with(&a, &t, timeout)).await
}

/// The partition count of `topic`, or `None` when it does not exist.
pub(crate) async fn partition_count(cfg: &KafkaConfig, topic: &str) -> Result<Option<u32>, BusError> {
    count(&admin(cfg)?, topic, cfg.request_timeout()).await
}

fn count_with(admin: &AdminClient<Ctx>, topic: &str, timeout: Duration) -> Result<Option<u32>, BusError> {
    let md = admin.inner().fetch_metadata(Some(topic), timeout).map_err(|e| bus_error(&format!("metadata of topic {topic}"), &e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition || code == RDKafkaErrorCode::UnknownTopic {
            return Ok(None);
        }
        if code != RDKafkaErrorCode::LeaderNotAvailable {
            return Err(BusError::Unavailable(format!("kafka metadata of topic {topic}: {code}")));
        }
    }
    if t.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(t.partitions().len() as u32))
}

/// Creates `topic` with the configured partitions and replication factor (an existing topic
/// is fine) and waits until the metadata shows it.
pub(crate) async fn create_topic(cfg: &KafkaConfig, topic: &str) -> Result<u32, BusError> {
    let admin = admin(cfg)?;
    create_with(&admin, cfg, topic).await
}

async fn create_with(admin: &Arc<AdminClient<Ctx>>, cfg: &KafkaConfig, topic: &str) -> Result<u32, BusError> {
    validate_topic(topic)?;
    let timeout = cfg.request_timeout();
    let new = NewTopic::new(topic, cfg.partitions as i32, TopicReplication::Fixed(i32::from(cfg.replication_factor)));
    let opts = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    let results = admin.create_topics([&new], &opts).await.map_err(|e| bus_error(&format!("create topic {topic}"), &e))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions = cfg.partitions, replication = cfg.replication_factor, "created kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                return Err(BusError::Config(format!(
                "kafka cannot create topic {name} with replication factor {}: the cluster has fewer brokers (set kafka.replication_factor)",
                cfg.replication_factor
            )))
            }
            Err((name, code)) => return Err(BusError::Unavailable(format!("kafka create topic {name}: {code}"))),
        }
    }
    // The metadata may lag the creation for a moment.
    let deadline = Instant::now() + timeout;
    loop {
        match count(admin, topic, timeout).await {
            Ok(Some(n)) => return Ok(n),
            _ if Instant::now() >= deadline => {
                return Err(BusError::Unavailable(format!("kafka topic {topic} was created but does not show in the metadata yet")))
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Creates every topic of `topics` that is missing, with `cfg.partitions` partitions and
/// `cfg.replication_factor` replicas, and checks that every one that exists has
/// `cfg.partitions` partitions (co-partitioning: one identity's records of every entity must
/// meet in one aggregator partition). Idempotent; the error names each mismatched topic.
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[&str]) -> Result<TopicReport, BusError> {
    cfg.validate().map_err(BusError::Config)?;
    let admin = admin(cfg)?;
    let timeout = cfg.request_timeout();
    let mut report = TopicReport { topics: Vec::new() };
    let mut mismatched = Vec::new();
    for &topic in topics {
        validate_topic(topic)?;
        match count(&admin, topic, timeout).await? {
            Some(n) => {
                if n != cfg.partitions {
                    mismatched.push(format!("{topic} has {n}"));
                }
                report.topics.push((topic.to_owned(), n, TopicState::Exists));
            }
            None => {
                let n = create_with(&admin, cfg, topic).await?;
                if n != cfg.partitions {
                    mismatched.push(format!("{topic} has {n}"));
                }
                report.topics.push((topic.to_owned(), n, TopicState::Created));
            }
        }
    }
    if !mismatched.is_empty() {
        return Err(BusError::Config(format!(
            "kafka topics are not co-partitioned: kafka.partitions is {} but {}; every touchline topic needs the same partition count (add partitions with kafka-topics --alter, or set kafka.partitions to match)",
            cfg.partitions,
            mismatched.join(", ")
        )));
    }
    Ok(report)
}
