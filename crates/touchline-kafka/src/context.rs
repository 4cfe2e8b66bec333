//! The client context shared by touchline's librdkafka clients: librdkafka's log and error
//! callbacks go to `tracing` (errors rate-limited, since a down broker reports every retry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::KafkaConfig;

pub(crate) struct Ctx {
    role: &'static str,
    last_warn: Mutex<Option<Instant>>,
    /// Set when librdkafka reports every broker down; cleared by a successful request.
    pub(crate) all_down: AtomicBool,
}

impl Ctx {
    pub(crate) fn new(role: &'static str) -> Ctx {
        Ctx { role, last_warn: Mutex::new(None), all_down: AtomicBool::new(false) }
    }
}

const WARN_EVERY: Duration = Duration::from_secs(10);

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::debug!(role = self.role, facility = fac, "librdkafka: {log_message}")
            }
            _ => tracing::trace!(role = self.role, facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.all_down.store(true, Ordering::Relaxed);
        }
        let mut last = self.last_warn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(role = self.role, error = %error, "kafka client: {reason}");
        } else {
            tracing::debug!(role = self.role, error = %error, "kafka client: {reason}");
        }
    }
}

impl ConsumerContext for Ctx {}

/// Settings every client gets: brokers, client id, fast reconnects, no broker-side topic
/// auto-creation (topics are created with the configured partition count by touchline).
pub(crate) fn client_config(cfg: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("{}-{role}", cfg.client_id))
        .set("allow.auto.create.topics", "false")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "30000");
    c
}

/// Applies the user's extra properties last, so they win.
pub(crate) fn with_properties(mut c: ClientConfig, cfg: &KafkaConfig) -> ClientConfig {
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}
