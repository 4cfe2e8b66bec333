//! Typed configuration: every default in this one file, then a TOML file (`--config`), then
//! `TOUCHLINE_*` environment variables (nested keys with `__`, e.g. `TOUCHLINE_LOG__PARTITIONS`).
//! Validated at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use touchline_bus::LogConfig;
use touchline_collector::CollectorConfig;

/// Where results are read from for the reports API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportsSource {
    Sql,
    Clickhouse,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (`TOUCHLINE_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Base URL clients use to reach this server (printed in examples; short links later).
    pub public_url: Option<String>,
    /// Also redirect at `/{code}` (for a dedicated short-link domain), not only `/l/{code}`.
    pub short_domain: bool,
    /// Embedded data: the log and the SQLite store (`TOUCHLINE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Fixes the write key of account `default` (`TOUCHLINE_WRITE_KEY`).
    pub write_key: Option<String>,
    /// Fixes the secret key of account `default` (`TOUCHLINE_SECRET_KEY`).
    pub secret_key: Option<String>,
    /// Kafka bootstrap servers (`TOUCHLINE_KAFKA_BROKERS`): the bus is Kafka when set, the
    /// embedded log otherwise.
    pub kafka_brokers: Option<String>,
    /// Kafka client, topic and spill settings (`TOUCHLINE_KAFKA__PARTITIONS`, …), used when
    /// `kafka_brokers` is set.
    pub kafka: touchline_kafka::KafkaConfig,
    /// ClickHouse HTTP URL (`TOUCHLINE_CLICKHOUSE_URL`): raw entities and results are also
    /// written there when set.
    pub clickhouse_url: Option<String>,
    /// ClickHouse database and sink settings (`TOUCHLINE_CLICKHOUSE__DATABASE`, …), used when
    /// `clickhouse_url` is set.
    pub clickhouse: touchline_clickhouse::ClickHouseConfig,
    /// Where the reports API and link click counts read results: `sql` or `clickhouse`
    /// (`TOUCHLINE_REPORTS_SOURCE`; needs `clickhouse_url`).
    pub reports_source: ReportsSource,
    /// Postgres or `sqlite://…` URL for the catalog and fact tables (`TOUCHLINE_DATABASE_URL`);
    /// SQLite at `{data_dir}/touchline.db` when unset.
    pub database_url: Option<String>,
    /// Log filter for tracing (`TOUCHLINE_LOG_LEVEL`, e.g. `info,touchline=debug`).
    pub log_level: String,
    /// The embedded log (`TOUCHLINE_LOG__PARTITIONS`, `TOUCHLINE_LOG__RETENTION_SECS`, …).
    pub log: LogConfig,
    /// Collector limits and mappings (`TOUCHLINE_COLLECTOR__MAX_BODY_BYTES`, …).
    pub collector: CollectorConfig,
    /// Aggregator flushes, lateness, owned partitions (`TOUCHLINE_AGGREGATOR__FLUSH_INTERVAL_MS`, …).
    pub aggregator: touchline_aggregator::AggregatorConfig,
    /// Short-link limits: links per account, the click queue, the unique-click window.
    pub links: touchline_links::LinksConfig,
    /// Serve `/metrics` (and `/healthz`) on this address instead of the public HTTP address
    /// (`TOUCHLINE_METRICS_ADDR`, e.g. `127.0.0.1:9464`), so counters need not be public.
    /// `touchline aggregator` serves them only when this is set.
    pub metrics_addr: Option<SocketAddr>,
    /// Raw entities as Parquet files (`TOUCHLINE_WAREHOUSE__ENABLED`, `…__DIR`, …).
    pub warehouse: WarehouseConfig,
    /// The data-driven channel weights' schedule and window (`TOUCHLINE_WEIGHTS__REFRESH_SECS`,
    /// `…__WINDOW_DAYS`, `…__MARKOV_ORDER`).
    pub weights: crate::weights::WeightsConfig,
}

/// The Parquet warehouse of raw entities (see `touchline-warehouse`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseConfig {
    /// Write raw entities as Parquet files. Default: on with the embedded log, which one
    /// process owns, as it owns the warehouse; not available with Kafka, where instances move
    /// partitions between them (raw entities go to ClickHouse there).
    pub enabled: Option<bool>,
    /// Default `{data_dir}/warehouse`.
    pub dir: Option<PathBuf>,
    /// Also keep raw entities as rows of the SQLite store's raw tables, as before the
    /// warehouse existed (slower: every record is a row in the one SQLite writer's path).
    pub sqlite_raw_tables: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            short_domain: false,
            data_dir: PathBuf::from("./data"),
            write_key: None,
            secret_key: None,
            kafka_brokers: None,
            kafka: touchline_kafka::KafkaConfig::default(),
            clickhouse_url: None,
            clickhouse: touchline_clickhouse::ClickHouseConfig::default(),
            reports_source: ReportsSource::Sql,
            database_url: None,
            log_level: "info".to_owned(),
            log: LogConfig::default(),
            collector: CollectorConfig::default(),
            aggregator: touchline_aggregator::AggregatorConfig::default(),
            links: touchline_links::LinksConfig::default(),
            metrics_addr: None,
            warehouse: WarehouseConfig::default(),
            weights: crate::weights::WeightsConfig::default(),
        }
    }
}

/// Top-level keys that may come from the environment; other `TOUCHLINE_*` variables are not ours.
pub const ENV_KEYS: [&str; 20] = [
    "short_domain",
    "weights",
    "warehouse",
    "links",
    "metrics_addr",
    "aggregator",
    "http_addr",
    "public_url",
    "data_dir",
    "write_key",
    "secret_key",
    "kafka_brokers",
    "kafka",
    "clickhouse_url",
    "clickhouse",
    "reports_source",
    "database_url",
    "log_level",
    "log",
    "collector",
];

impl Config {
    /// Loads defaults, then the TOML file if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        // `split` has turned `__` into `.` by the time the filter sees a key.
        let env = Env::prefixed("TOUCHLINE_").split("__").filter(|k| {
            let key = k.as_str().to_ascii_lowercase();
            ENV_KEYS.iter().any(|e| key == *e || key.starts_with(&format!("{e}.")))
        });
        fig = fig.merge(env);
        let cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.log.partitions == 0 || self.log.partitions > 1024 {
            bail!("log.partitions must be between 1 and 1024, not {}", self.log.partitions);
        }
        if self.collector.max_record_bytes == 0 || self.collector.max_record_bytes > self.collector.max_body_bytes {
            bail!("collector.max_record_bytes must be between 1 and collector.max_body_bytes");
        }
        if self.collector.max_batch_records == 0 {
            bail!("collector.max_batch_records must be at least 1");
        }
        self.collector.validate().map_err(anyhow::Error::msg)?;
        for (name, key) in [("write_key", &self.write_key), ("secret_key", &self.secret_key)] {
            if let Some(k) = key {
                if k.len() < 16 || k.len() > 256 || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    bail!("{name} must be 16 to 256 characters without spaces");
                }
            }
        }
        if let Some(k) = self.kafka() {
            k.validate().map_err(anyhow::Error::msg)?;
        }
        if self.reports_source == ReportsSource::Clickhouse && self.clickhouse_url.is_none() {
            bail!("reports_source = clickhouse needs clickhouse_url (TOUCHLINE_CLICKHOUSE_URL)");
        }
        if self.warehouse.enabled == Some(true) && self.kafka_brokers.is_some() {
            bail!("warehouse.enabled needs the embedded log: with kafka_brokers set, partitions move between instances (send raw entities to ClickHouse instead)");
        }
        if let (Some(w), Some(s)) = (&self.write_key, &self.secret_key) {
            if w == s {
                bail!("write_key and secret_key must differ");
            }
        }
        Ok(())
    }

    /// The SQL store: `database_url`, else SQLite at `{data_dir}/touchline.db`.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("touchline.db").display()))
    }

    /// The Kafka settings when the bus is Kafka (`kafka_brokers` set); the spill directory
    /// defaults to `{data_dir}/spill`.
    pub fn kafka(&self) -> Option<touchline_kafka::KafkaConfig> {
        let brokers = self.kafka_brokers.as_ref()?;
        let mut k = self.kafka.clone();
        k.brokers = brokers.clone();
        if k.spill.dir.is_none() {
            k.spill.dir = Some(self.data_dir.join("spill"));
        }
        Some(k)
    }

    /// The ClickHouse settings when `clickhouse_url` is set.
    pub fn clickhouse(&self) -> Option<touchline_clickhouse::ClickHouseConfig> {
        let url = self.clickhouse_url.as_ref()?;
        Some(touchline_clickhouse::ClickHouseConfig { url: url.clone(), ..self.clickhouse.clone() })
    }

    pub fn aggregator_state_dir(&self) -> PathBuf {
        self.aggregator.state_dir.clone().unwrap_or_else(|| self.data_dir.join("aggregator"))
    }

    /// The warehouse directory when raw entities go to Parquet files.
    pub fn warehouse_dir(&self) -> Option<PathBuf> {
        let enabled = self.warehouse.enabled.unwrap_or(self.kafka_brokers.is_none());
        enabled.then(|| self.warehouse.dir.clone().unwrap_or_else(|| self.data_dir.join("warehouse")))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// The URL printed in examples.
    pub fn base_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.http_addr))
    }
}

#[cfg(test)]
// figment's `Jail` closures return its `Error`, which is large; that is figment's signature.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_env_layer_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "http_addr = \"127.0.0.1:9000\"\n[log]\npartitions = 4\n")?;
            jail.set_env("TOUCHLINE_HTTP_ADDR", "127.0.0.1:9100");
            jail.set_env("TOUCHLINE_COLLECTOR__MAX_BATCH_RECORDS", "10");
            jail.set_env("TOUCHLINE_SOMETHING_ELSE", "ignored");
            let c = Config::load(Some(Path::new("t.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.http_addr.port(), 9100, "env wins over file");
            assert_eq!(c.log.partitions, 4, "file wins over default");
            assert_eq!(c.collector.max_batch_records, 10);
            assert_eq!(c.data_dir, PathBuf::from("./data"));
            Ok(())
        });
    }

    #[test]
    fn link_limits_and_the_metrics_address_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOUCHLINE_METRICS_ADDR", "127.0.0.1:9464");
            jail.set_env("TOUCHLINE_LINKS__MAX_PER_ACCOUNT", "7");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.metrics_addr, Some(SocketAddr::from(([127, 0, 0, 1], 9464))));
            assert_eq!(c.links.max_per_account, 7);
            assert_eq!(c.links.click_queue_bytes, 16 * 1024 * 1024, "the default");
            Ok(())
        });
    }

    #[test]
    fn collector_edge_settings_load_and_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[collector]\ntrusted_proxies = [\"10.1.0.0/16\", \"192.0.2.7\"]\nmax_connections = 50\n")?;
            let c = Config::load(Some(Path::new("t.toml"))).map_err(|e| e.to_string())?;
            let proxies: Vec<String> = c.collector.trusted_proxies.iter().map(|p| p.to_string()).collect();
            assert_eq!(proxies, ["10.1.0.0/16", "192.0.2.7/32"]);
            assert_eq!(c.collector.max_connections, 50);
            assert_eq!(c.collector.header_read_timeout_ms, 10_000, "the default");
            jail.set_env("TOUCHLINE_COLLECTOR__IDLE_TIMEOUT_MS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("collector.idle_timeout_ms"), "{e}");
            jail.set_env("TOUCHLINE_COLLECTOR__IDLE_TIMEOUT_MS", "1000");
            jail.create_file("bad.toml", "[collector]\ntrusted_proxies = [\"proxy.local\"]\n")?;
            let e = format!("{:#}", Config::load(Some(Path::new("bad.toml"))).unwrap_err());
            assert!(e.contains("proxy.local"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOUCHLINE_LOG__PARTITIONS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("log.partitions"), "{e}");
            jail.set_env("TOUCHLINE_LOG__PARTITIONS", "8");
            jail.set_env("TOUCHLINE_HTTP_ADDR", "not an address");
            let e = format!("{:#}", Config::load(None).unwrap_err());
            assert!(e.to_lowercase().contains("http_addr"), "{e}");
            jail.set_env("TOUCHLINE_HTTP_ADDR", "127.0.0.1:1");
            jail.set_env("TOUCHLINE_WRITE_KEY", "short");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("write_key"), "{e}");
            Ok(())
        });
    }
}
