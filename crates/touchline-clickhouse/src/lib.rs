//! ClickHouse for touchline: the schema BI tools query, the sink the aggregator writes raw
//! entities and results through, and the report reads the API serves.
//!
//! * [`connect`] opens a [`ClickHouse`] handle and detects the server version;
//! * [`migrate`] applies the numbered DDL under `clickhouse/` (and the version-gated files
//!   under `clickhouse/extras/` the server supports), recording them in `schema_migrations`;
//! * [`ClickHouseSink`] implements the aggregator's [`Sink`](touchline_store::sink::Sink);
//! * [`ClickHouseStore`] reads daily metrics and attribution rows back as the SQL store's types.
//!
//! Two dialects, one schema: the DDL runs on ClickHouse 18.16 (Debian's package) and on current
//! servers. Features of newer servers are used only when `SELECT version()` allows:
//! row validation of the `clickhouse` crate, `insert_deduplication_token`, and the extras.

pub mod migrate;
pub mod rows;
pub mod sink;
pub mod store;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use migrate::{migrate, migrations, plan, Migration, PlanStep};
pub use sink::ClickHouseSink;
pub use store::ClickHouseStore;

/// Errors of this crate. Messages name the server, the statement or the file involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ClickHouse at {url} is unreachable: {message} (is the server running? `scripts/clickhouse.sh` installs and starts one on 127.0.0.1:8123)")]
    Unreachable { url: String, message: String },
    #[error("ClickHouse {what} failed: {source}")]
    Query {
        what: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse {what} timed out after {secs}s")]
    Timeout { what: String, secs: u64 },
    #[error("migration {file}: {message}")]
    Migration { file: String, message: String },
    #[error(
        "migration {file} changed after it was applied (checksum {applied} recorded in schema_migrations, {current} now); \
         applied migrations are immutable: add a new numbered file instead"
    )]
    ChangedMigration { file: String, applied: String, current: String },
    #[error("invalid ClickHouse configuration: {0}")]
    Config(String),
    #[error("unexpected value from ClickHouse: {0}")]
    Decode(String),
}

impl Error {
    /// True when the server refused the data itself (it cannot parse or hold a value): the same
    /// rows will be refused again, so retrying is pointless. Network errors, timeouts and
    /// server-side resource errors are not refusals.
    pub fn is_refusal(&self) -> bool {
        let Error::Query { source: clickhouse::error::Error::BadResponse(text), .. } = self else { return false };
        server_code(text).is_some_and(|c| REFUSAL_CODES.contains(&c))
    }
}

/// ClickHouse error codes that mean "this data cannot be stored": CANNOT_PARSE_TEXT (6),
/// CANNOT_PARSE_QUOTED_STRING (26), CANNOT_PARSE_INPUT_ASSERTION_FAILED (27),
/// CANNOT_READ_ALL_DATA (33), CANNOT_PARSE_DATE (38), CANNOT_PARSE_DATETIME (41),
/// TYPE_MISMATCH (53), ARGUMENT_OUT_OF_BOUND (69), CANNOT_CONVERT_TYPE (70),
/// CANNOT_PARSE_NUMBER (72), INCORRECT_DATA (117), TOO_LARGE_STRING_SIZE (131),
/// FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (395: a table's own `throwIf` check refused the row),
/// DECIMAL_OVERFLOW (407).
const REFUSAL_CODES: [u32; 14] = [6, 26, 27, 33, 38, 41, 53, 69, 70, 72, 117, 131, 395, 407];

/// The `Code: N` a ClickHouse error text starts with.
fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connection and sink settings. Every default is here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`. User, password and `?database=` in the
    /// URL are honoured when the fields below are not set.
    pub url: String,
    /// Database holding every table (created by [`migrate`]).
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Largest number of rows in one INSERT; bigger flushes are split.
    pub max_insert_rows: usize,
    /// Upper bound on one INSERT (sending and the server's answer), in seconds.
    pub insert_timeout_secs: u64,
    /// Upper bound on one query or DDL statement, in seconds.
    pub query_timeout_secs: u64,
    /// LZ4-compress request and response bodies.
    pub compression: bool,
    /// Type-check rows against the table schema on insert (`RowBinaryWithNamesAndTypes`).
    /// `None`: on for servers from 24.1, off before (18.16 does not know the format and the
    /// setting it needs).
    pub validation: Option<bool>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "touchline".into(),
            user: None,
            password: None,
            max_insert_rows: 100_000,
            insert_timeout_secs: 60,
            query_timeout_secs: 30,
            compression: true,
            validation: None,
        }
    }
}

impl ClickHouseConfig {
    /// The defaults with `url` (for `TOUCHLINE_CLICKHOUSE_URL`).
    pub fn from_url(url: impl Into<String>) -> ClickHouseConfig {
        ClickHouseConfig { url: url.into(), ..ClickHouseConfig::default() }
    }

    /// The same configuration for another database (tests use one database each).
    pub fn with_database(mut self, database: impl Into<String>) -> ClickHouseConfig {
        self.database = database.into();
        self
    }

    /// Checks the settings and splits credentials and `?database=` out of the URL.
    /// Returns (base URL, database, user, password).
    fn resolve(&self) -> Result<(String, String, Option<String>, Option<String>)> {
        let mut u = url::Url::parse(&self.url).map_err(|e| Error::Config(format!("url {:?}: {e}", self.url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(Error::Config(format!("url {:?}: the HTTP interface is needed (http://host:8123)", self.url)));
        }
        if u.scheme() == "https" {
            return Err(Error::Config(format!(
                "url {:?}: https is not enabled in this build; use http:// (e.g. behind a TLS proxy)",
                self.url
            )));
        }
        let dec =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
        let url_user = (!u.username().is_empty()).then(|| dec(u.username()));
        let url_password = u.password().map(dec);
        let url_db = u.query_pairs().find(|(k, _)| k == "database").map(|(_, v)| v.into_owned());
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        let base = u.as_str().trim_end_matches('/').to_owned();
        let database = match url_db {
            Some(d) if self.database == ClickHouseConfig::default().database => d,
            _ => self.database.clone(),
        };
        check_identifier(&database)?;
        if self.max_insert_rows == 0 {
            return Err(Error::Config("max_insert_rows must be at least 1".into()));
        }
        if self.insert_timeout_secs == 0 || self.query_timeout_secs == 0 {
            return Err(Error::Config("insert_timeout_secs and query_timeout_secs must be at least 1".into()));
        }
        Ok((base, database, self.user.clone().or(url_user), self.password.clone().or(url_password)))
    }
}

/// Database names are substituted into DDL and queries, so only plain identifiers are allowed.
pub fn check_identifier(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "database name {name:?} must be a plain identifier: letters, digits and _, not starting with a digit, at most 64 characters"
        )))
    }
}

/// A server version as `SELECT version()` reports it (`18.16.1`, `25.8.2.29`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> ServerVersion {
        ServerVersion { major, minor, patch }
    }

    /// Parses `MAJOR.MINOR[.PATCH[.BUILD]]`, ignoring anything after the numbers.
    pub fn parse(s: &str) -> Option<ServerVersion> {
        let mut parts = s.trim().split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(ServerVersion { major, minor, patch })
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// `insert_deduplication_token` (22.2).
    pub fn has_dedup_token(&self) -> bool {
        self.at_least(22, 2)
    }

    /// Whether the `clickhouse` crate's row validation is used by default.
    pub fn validation_by_default(&self) -> bool {
        self.at_least(24, 1)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A connected server: the client, the database name and the server version.
#[derive(Clone)]
pub struct ClickHouse {
    client: clickhouse::Client,
    url: String,
    database: String,
    version: ServerVersion,
    config: ClickHouseConfig,
}

impl fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouse").field("url", &self.url).field("database", &self.database).field("version", &self.version).finish()
    }
}

/// Connects to the server and reads its version. The database need not exist yet.
pub async fn connect(cfg: &ClickHouseConfig) -> Result<ClickHouse> {
    ClickHouse::connect(cfg).await
}

impl ClickHouse {
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<ClickHouse> {
        let (url, database, user, password) = cfg.resolve()?;
        let mut client = clickhouse::Client::default().with_url(url.clone());
        if let Some(u) = user {
            client = client.with_user(u);
        }
        if let Some(p) = password {
            client = client.with_password(p);
        }
        client = client.with_compression(if cfg.compression { clickhouse::Compression::Lz4 } else { clickhouse::Compression::None });
        let probe = client.clone().with_validation(false);
        let timeout = Duration::from_secs(cfg.query_timeout_secs);
        let text: String = match tokio::time::timeout(timeout, probe.query("SELECT version()").fetch_one::<String>()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(Error::Unreachable { url, message: e.to_string() }),
            Err(_) => {
                return Err(Error::Unreachable {
                    url,
                    message: format!("no answer to SELECT version() within {}s", cfg.query_timeout_secs),
                })
            }
        };
        let version = ServerVersion::parse(&text).ok_or_else(|| Error::Decode(format!("server version {text:?} is not MAJOR.MINOR…")))?;
        let validation = cfg.validation.unwrap_or_else(|| version.validation_by_default());
        let client = client.with_validation(validation);
        tracing::info!(%url, %database, %version, validation, "connected to ClickHouse");
        Ok(ClickHouse { client, url, database, version, config: cfg.clone() })
    }

    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    /// The underlying client (no default database: statements name `database.table`).
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// `database.table`.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", self.database, name)
    }

    fn query_timeout(&self) -> Duration {
        Duration::from_secs(self.config.query_timeout_secs)
    }

    /// Runs one statement (DDL or a mutation) with the query timeout.
    pub async fn execute(&self, sql: &str, what: &str) -> Result<()> {
        self.bounded(what, self.client.query_raw(sql).execute()).await
    }

    /// A future bounded by the query timeout, with errors naming `what`.
    pub(crate) async fn bounded<T>(&self, what: &str, fut: impl std::future::Future<Output = clickhouse::error::Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.query_timeout(), fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.query_error(what, e)),
            Err(_) => Err(Error::Timeout { what: what.to_owned(), secs: self.config.query_timeout_secs }),
        }
    }

    pub(crate) fn query_error(&self, what: &str, e: clickhouse::error::Error) -> Error {
        match e {
            clickhouse::error::Error::Network(n) => Error::Unreachable { url: self.url.clone(), message: n.to_string() },
            other => Error::Query { what: what.to_owned(), source: other },
        }
    }

    /// The same connection, acting as if the server were `version` (tests of version gating:
    /// what an old server answers when a newer feature is forced on it).
    #[doc(hidden)]
    pub fn with_assumed_version(mut self, version: ServerVersion) -> ClickHouse {
        self.version = version;
        self
    }

    /// `SELECT 1` (for readiness checks).
    pub async fn ping(&self) -> Result<()> {
        let one: u8 = self.bounded("ping", self.client.query_raw("SELECT 1").fetch_one::<u8>()).await?;
        if one == 1 {
            Ok(())
        } else {
            Err(Error::Decode(format!("SELECT 1 returned {one}")))
        }
    }

    /// Drops the database and everything in it (tests; `touchline` never calls this).
    pub async fn drop_database(&self) -> Result<()> {
        self.execute(&format!("DROP DATABASE IF EXISTS {}", self.database), "DROP DATABASE").await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(ServerVersion::parse("18.16.1"), Some(ServerVersion::new(18, 16, 1)));
        assert_eq!(ServerVersion::parse("25.8.2.29"), Some(ServerVersion::new(25, 8, 2)));
        assert_eq!(ServerVersion::parse("24.3"), Some(ServerVersion::new(24, 3, 0)));
        assert_eq!(ServerVersion::parse("x"), None);
        assert!(!ServerVersion::new(18, 16, 1).has_dedup_token());
        assert!(ServerVersion::new(22, 2, 0).has_dedup_token());
        assert!(ServerVersion::new(22, 10, 0).at_least(22, 2));
        assert!(!ServerVersion::new(18, 16, 1).validation_by_default());
    }

    #[test]
    fn config_resolves_credentials_and_database_from_the_url() {
        let c = ClickHouseConfig::from_url("http://bob:s%40cret@ch.local:8123/?database=bi");
        let (url, db, user, pw) = c.resolve().unwrap();
        assert_eq!(
            (url.as_str(), db.as_str(), user.as_deref(), pw.as_deref()),
            ("http://ch.local:8123", "bi", Some("bob"), Some("s@cret"))
        );
        let c = ClickHouseConfig::from_url("http://127.0.0.1:8123").with_database("t_1");
        assert_eq!(c.resolve().unwrap().1, "t_1");
        assert!(ClickHouseConfig::from_url("http://x").with_database("bad-name").resolve().is_err());
        assert!(ClickHouseConfig::from_url("tcp://x:9000").resolve().is_err());
        assert!(ClickHouseConfig::from_url("not a url").resolve().is_err());
        assert!(ClickHouseConfig { max_insert_rows: 0, ..ClickHouseConfig::default() }.resolve().is_err());
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("touchline").is_ok());
        assert!(check_identifier("touchline_t_0a1b").is_ok());
        for bad in ["", "1abc", "a.b", "a b", "a;drop", "x`"] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }
}
