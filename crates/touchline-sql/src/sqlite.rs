//! SQLite: the embedded default. WAL mode, so a BI tool or `sqlite3` can read while touchline
//! writes. SQLite has no row-level security: the embedded store serves one installation, and
//! every read here is still filtered by account.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use crate::pg::{
    dedup_attr, dedup_journeys, dedup_link_clicks, dedup_metrics, dedup_partials, set_excluded, ATTR_UPDATE, METRIC_UPDATE, PARTIAL_COLS,
    PARTIAL_UPDATE, PUBLISHED_UPDATE,
};
use crate::rows::*;
use crate::*;

mod checkpoints;
mod group;
mod wal;

use group::{ResultWrite, WriteQueue};

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's writers take turns here, first come first served. SQLite admits one
    /// writer at a time, and a connection refused the lock sleeps in the busy handler with
    /// growing pauses (up to 100 ms) before it asks again, so writers that queued at SQLite
    /// left the lock idle between transactions and the unlucky ones timed out. Other
    /// processes (a CLI beside the server) still meet the busy timeout.
    write_turn: tokio::sync::Mutex<()>,
    /// Result writes waiting for the next transaction (see [`group`]).
    queue: WriteQueue,
    /// Copies the WAL into the database beside the writer (see [`wal`]).
    _checkpointer: wal::Checkpointer,
}

/// A write transaction and the turn that admits it; the turn is released when both drop.
type WriteTx<'a> = (tokio::sync::MutexGuard<'a, ()>, sqlx::Transaction<'static, Sqlite>);

/// Pages each connection keeps in memory (in KiB, SQLite's negative `cache_size`). The
/// default 2 MiB let the unique indexes of a growing results table fall out of the cache, so
/// every upsert read its index pages back from the file.
const PAGE_CACHE_KIB: i64 = 64 * 1024;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The current time as the column defaults write it (`NOW`).
fn sqlite_now() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Money as the exact decimal text SQLite keeps in its TEXT money columns (see the migration
/// `exact_money`), normalised so that equal amounts compare equal.
fn money_text(d: Decimal) -> String {
    d.normalize().to_string()
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (created when missing) in WAL mode.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"))
            .pragma("wal_autocheckpoint", wal::WRITER_CHECKPOINT_PAGES.to_string());
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        let checkpointer = wal::Checkpointer::start(pool.clone());
        Ok(SqliteStore { pool, write_turn: tokio::sync::Mutex::new(()), queue: WriteQueue::default(), _checkpointer: checkpointer })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction, begun once this process's earlier writers are done. It takes
    /// SQLite's write lock at BEGIN, so a writer in another process waits (busy timeout)
    /// instead of failing when a transaction that read first cannot upgrade its lock.
    async fn write_tx(&self) -> Result<WriteTx<'_>> {
        let turn = self.write_turn.lock().await;
        Ok((turn, self.pool.begin_with("BEGIN IMMEDIATE").await?))
    }
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Deletes the rows a newer attribution set no longer has. Run after the set's rows are
/// upserted, so every touch the set keeps already carries its version and only the dropped
/// touches are older. One statement per chunk: the sets drive the join (`CROSS JOIN` keeps
/// them the outer loop), each an index seek on the unique key's prefix, so the cost grows
/// with the rows replaced, not with the table.
async fn delete_dropped_touches(tx: &mut sqlx::Transaction<'static, Sqlite>, account: &str, sets: &[(&str, &str, i64)]) -> Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("WITH newer (conversion_id, attribution_model, version) AS (");
    q.push_values(sets, |mut b, (conversion, model, version)| {
        b.push_bind(*conversion).push_bind(*model).push_bind(*version);
    });
    q.push(
        ") DELETE FROM campaign_attributions WHERE id IN (SELECT a.id FROM newer n CROSS JOIN campaign_attributions a \
         ON a.account_id = ",
    );
    q.push_bind(account);
    q.push(" AND a.conversion_id = n.conversion_id AND a.attribution_model = n.attribution_model AND a.version < n.version)");
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// Upserts attribution sets: sets older than what is stored are dropped, newer ones replace
/// the stored set (see [`delete_dropped_touches`]).
async fn write_attributions(tx: &mut sqlx::Transaction<'static, Sqlite>, rows: &[AttributionRow]) -> Result<u64> {
    let mut n = 0;
    // Bound once rather than computed by SQLite for each row: the column defaults' strftime
    // took about a tenth of SQLite's time per row.
    let now = sqlite_now();
    for (account, rows) in by_account(rows, |r| r.account_id) {
        let rows = dedup_attr(newest_versions(&rows));
        let acct = account.to_string();
        for chunk in rows.chunks(CHUNK) {
            // Stored versions of these conversions in one query: sets older than what is
            // stored are dropped, newer ones overwrite it touch by touch.
            let mut conv: Vec<&str> = chunk.iter().map(|r| r.conversion_id.as_str()).collect();
            conv.sort_unstable();
            conv.dedup();
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT conversion_id, attribution_model, max(version) FROM campaign_attributions WHERE account_id = ");
            q.push_bind(acct.as_str());
            q.push(" AND conversion_id IN (");
            let mut sep = q.separated(", ");
            for c in &conv {
                sep.push_bind(*c);
            }
            q.push(") GROUP BY conversion_id, attribution_model");
            let fetched: Vec<(String, String, i64)> = q.build_query_as().fetch_all(&mut **tx).await?;
            let stored: std::collections::HashMap<(&str, &str), i64> =
                fetched.iter().map(|(c, m, v)| ((c.as_str(), m.as_str()), *v)).collect();
            let mut fresh: Vec<&AttributionRow> = Vec::with_capacity(chunk.len());
            let mut superseded: Vec<(&str, &str, i64)> = Vec::new();
            for r in chunk {
                let v = stored.get(&(r.conversion_id.as_str(), r.attribution_model.as_str())).copied();
                if v.is_none_or(|v| v <= r.version) {
                    if v.is_some_and(|v| v < r.version) {
                        superseded.push((r.conversion_id.as_str(), r.attribution_model.as_str(), r.version));
                    }
                    fresh.push(r);
                }
            }
            superseded.sort_unstable();
            superseded.dedup();
            if fresh.is_empty() {
                continue;
            }
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("INSERT INTO campaign_attributions ({ATTR_COLS}, created_at, updated_at) "));
            qb.push_values(&fresh, |mut b, r| {
                b.push_bind(acct.as_str())
                    .push_bind(r.conversion_id.as_str())
                    .push_bind(r.touchpoint_id.as_str())
                    .push_bind(r.attribution_model.as_str())
                    .push_bind(r.version)
                    .push_bind(r.campaign_id.as_deref())
                    .push_bind(r.advertisement_id.as_deref())
                    .push_bind(r.customer_id.as_deref())
                    .push_bind(r.touchpoint_type.as_deref())
                    .push_bind(r.touchpoint_timestamp.map(ts))
                    .push_bind(r.channel_id.as_deref())
                    .push_bind(ts(r.conversion_time))
                    .push_bind(r.conversion_value.map(money_text))
                    .push_bind(r.currency.as_deref())
                    .push_bind(r.weight)
                    .push_bind(money_text(r.attributed_revenue))
                    .push_bind(now.as_str())
                    .push_bind(now.as_str());
            });
            let unchanged =
                ATTR_UPDATE.iter().map(|c| format!("campaign_attributions.{c} IS excluded.{c}")).collect::<Vec<_>>().join(" AND ");
            qb.push(format!(
                " ON CONFLICT (account_id, conversion_id, attribution_model, touchpoint_id) DO UPDATE SET {}, updated_at = excluded.updated_at \
                 WHERE campaign_attributions.version <= excluded.version AND NOT ({unchanged})",
                set_excluded(&ATTR_UPDATE).replace("EXCLUDED.", "excluded."),
            ));
            qb.build().execute(&mut **tx).await?;
            delete_dropped_touches(tx, &acct, &superseded).await?;
            n += fresh.len() as u64;
        }
    }
    Ok(n)
}

/// Upserts partial metrics and publishes the sums of the cells they touch.
async fn write_partials(tx: &mut sqlx::Transaction<'static, Sqlite>, rows: &[PartialRow]) -> Result<u64> {
    let mut n = 0;
    // SQLite has one writer at a time and this transaction writes first, so concurrent
    // publishers wait for each other (at the write turn, or the busy timeout across
    // processes) and every sum is computed from the latest partials.
    for (account, rows) in by_account(rows, |r| r.account_id) {
        let rows = dedup_partials(&rows);
        for chunk in rows.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO campaign_metric_partials ({PARTIAL_COLS}) "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.account_id.to_string())
                    .push_bind(r.campaign_id.clone())
                    .push_bind(r.advertisement_id.clone())
                    .push_bind(r.metric_date.to_string())
                    .push_bind(r.partition)
                    .push_bind(r.impressions)
                    .push_bind(r.clicks)
                    .push_bind(r.reach)
                    .push_bind(r.engagements)
                    .push_bind(r.sessions)
                    .push_bind(money_text(r.conversions))
                    .push_bind(money_text(r.revenue))
                    .push_bind(money_text(r.cost))
                    .push_bind(r.reported_impressions)
                    .push_bind(r.reported_clicks)
                    .push_bind(i64::from(r.epoch))
                    .push_bind(r.reach_sketch.clone());
            });
            // A write of an earlier epoch (a previous owner of the partition) is ignored.
            qb.push(format!(
                " ON CONFLICT (account_id, campaign_id, advertisement_id, metric_date, partition) DO UPDATE SET {}, updated_at = {NOW} \
                 WHERE campaign_metric_partials.epoch <= excluded.epoch",
                set_excluded(&PARTIAL_UPDATE).replace("EXCLUDED.", "excluded.")
            ));
            qb.build().execute(&mut **tx).await?;
            let mut cells: Vec<(String, String, String)> =
                chunk.iter().map(|r| (r.campaign_id.clone(), r.advertisement_id.clone(), r.metric_date.to_string())).collect();
            cells.sort_unstable();
            cells.dedup();
            let partials = partials_of_cells(tx, account, &cells).await?;
            let mut published = publish_cells(&partials).map_err(|e| StoreError::Refused(e.to_string()))?;
            let currency: Option<String> = sqlx::query_scalar("SELECT currency FROM accounts WHERE id = ?")
                .bind(account.to_string())
                .fetch_optional(&mut **tx)
                .await?;
            for r in &mut published {
                r.currency.clone_from(&currency);
            }
            upsert_metric_rows(tx, &published.iter().collect::<Vec<_>>(), &PUBLISHED_UPDATE).await?;
            n += chunk.len() as u64;
        }
    }
    Ok(n)
}

/// Upserts link click partials; a row of an earlier epoch than the stored one is ignored.
async fn write_link_clicks(tx: &mut sqlx::Transaction<'static, Sqlite>, rows: &[LinkClickPartialRow]) -> Result<u64> {
    let mut n = 0;
    for (_, rows) in by_account(rows, |r| r.account_id) {
        for chunk in dedup_link_clicks(&rows).chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO link_click_partials ({LINK_CLICK_COLS}) "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.account_id.to_string())
                    .push_bind(r.short_code.clone())
                    .push_bind(r.click_date.to_string())
                    .push_bind(r.partition)
                    .push_bind(r.human_clicks)
                    .push_bind(r.bot_clicks)
                    .push_bind(i64::from(r.epoch));
            });
            qb.push(format!(
                " ON CONFLICT (account_id, short_code, click_date, partition) DO UPDATE SET human_clicks = excluded.human_clicks, \
                 bot_clicks = excluded.bot_clicks, epoch = excluded.epoch, updated_at = {NOW} \
                 WHERE link_click_partials.epoch <= excluded.epoch"
            ));
            qb.build().execute(&mut **tx).await?;
            n += chunk.len() as u64;
        }
    }
    Ok(n)
}

/// Upserts journey partials; a row of an earlier epoch than the stored one is ignored.
async fn write_journeys(tx: &mut sqlx::Transaction<'static, Sqlite>, rows: &[JourneyPartialRow]) -> Result<u64> {
    let mut n = 0;
    for (_, rows) in by_account(rows, |r| r.account_id) {
        for chunk in dedup_journeys(&rows).chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO journey_partials ({JOURNEY_COLS}) "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.account_id.to_string())
                    .push_bind(r.journey_date.to_string())
                    .push_bind(r.channels.clone())
                    .push_bind(r.campaigns.clone())
                    .push_bind(r.partition)
                    .push_bind(r.conversions)
                    .push_bind(r.non_conversions)
                    // At the six places Postgres and ClickHouse keep, so every store sums the same.
                    .push_bind(money_text(r.revenue.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero)))
                    .push_bind(i64::from(r.epoch));
            });
            qb.push(journey_upsert_sql("excluded", NOW));
            qb.build().execute(&mut **tx).await?;
            n += chunk.len() as u64;
        }
    }
    Ok(n)
}

/// Every partition's stored partial row of `cells` (campaign, ad, day) of `account`.
async fn partials_of_cells(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    account: Uuid,
    cells: &[(String, String, String)],
) -> Result<Vec<PartialRow>> {
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new(format!("SELECT {PARTIAL_COLS} FROM campaign_metric_partials WHERE account_id = "));
    qb.push_bind(account.to_string());
    qb.push(" AND (campaign_id, advertisement_id, metric_date) IN (");
    qb.push_values(cells, |mut b, (c, a, d)| {
        b.push_bind(c.as_str()).push_bind(a.as_str()).push_bind(d.as_str());
    });
    qb.push(")");
    qb.build().fetch_all(&mut **tx).await?.iter().map(partial_from_row).collect()
}

/// Upserts daily metric rows (absolute values), setting `update` on a conflict and leaving
/// rows that would not change untouched (`updated_at` kept). Publishing updates only the sums
/// and ratios; a direct write updates every column.
async fn upsert_metric_rows(tx: &mut sqlx::Transaction<'static, Sqlite>, rows: &[&DailyMetricRow], update: &[&str]) -> Result<()> {
    let unchanged = update.iter().map(|c| format!("campaign_performance_metrics.{c} IS excluded.{c}")).collect::<Vec<_>>().join(" AND ");
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO campaign_performance_metrics ({METRIC_COLS}) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.account_id.to_string())
                .push_bind(r.campaign_id.as_str())
                .push_bind(r.advertisement_id.as_str())
                .push_bind(r.metric_date.to_string())
                .push_bind(r.impressions)
                .push_bind(r.clicks)
                .push_bind(r.reach)
                .push_bind(r.frequency)
                .push_bind(r.engagements)
                .push_bind(r.sessions)
                .push_bind(money_text(r.conversions))
                .push_bind(money_text(r.revenue))
                .push_bind(money_text(r.cost))
                .push_bind(r.currency.as_deref())
                .push_bind(r.ctr)
                .push_bind(r.cpc.map(money_text))
                .push_bind(r.cpm.map(money_text))
                .push_bind(r.cpa.map(money_text))
                .push_bind(r.roas)
                .push_bind(r.utm_source.as_deref())
                .push_bind(r.utm_medium.as_deref())
                .push_bind(r.utm_campaign.as_deref());
        });
        qb.push(format!(
            " ON CONFLICT (account_id, campaign_id, advertisement_id, metric_date) DO UPDATE SET {}, updated_at = {NOW} WHERE NOT ({unchanged})",
            set_excluded(update).replace("EXCLUDED.", "excluded.")
        ));
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn upsert_daily_metrics(&self, rows: &[DailyMetricRow]) -> Result<u64> {
        let mut n = 0;
        let (_turn, mut tx) = self.write_tx().await?;
        for (_, rows) in by_account(rows, |r| r.account_id) {
            // The last row for a key wins within a batch, as in Postgres.
            let rows = dedup_metrics(&rows);
            upsert_metric_rows(&mut tx, &rows, &METRIC_UPDATE).await?;
            n += rows.len() as u64;
        }
        tx.commit().await?;
        Ok(n)
    }
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn load_catalog(&self) -> Result<Catalog> {
        let mut tx = self.pool.begin().await?;
        // A read transaction: one consistent snapshot of all catalog tables.
        let version: i64 = sqlx::query_scalar(CATALOG_VERSION_SQL).fetch_one(&mut *tx).await?;
        let accounts = sqlx::query(ACCOUNTS_SQL).fetch_all(&mut *tx).await?.iter().map(account_from_row).collect::<Result<_>>()?;
        let keys = sqlx::query(KEYS_SQL).fetch_all(&mut *tx).await?.iter().map(key_from_row).collect::<Result<_>>()?;
        let campaigns = sqlx::query(CAMPAIGNS_SQL).fetch_all(&mut *tx).await?.iter().map(campaign_from_row).collect::<Result<_>>()?;
        let advertisements =
            sqlx::query(ADVERTISEMENTS_SQL).fetch_all(&mut *tx).await?.iter().map(advertisement_from_row).collect::<Result<_>>()?;
        let links = sqlx::query(LINKS_SQL).fetch_all(&mut *tx).await?.iter().map(link_from_row).collect::<Result<_>>()?;
        let channel_weights = sqlx::query(&channel_weights_sql("weights"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(channel_weights_from_row)
            .collect::<Result<_>>()?;
        let currency_rates = sqlx::query(&currency_rates_sql("rate"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(currency_rate_from_row)
            .collect::<Result<_>>()?;
        tx.commit().await?;
        Ok(Catalog { version, accounts, keys, campaigns, advertisements, links, channel_weights, currency_rates })
    }

    async fn catalog_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1").fetch_one(&self.pool).await?)
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row =
            sqlx::query("SELECT account_id, kind, key_hash, prefix, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE key_hash = ?")
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn upsert_account(&self, a: &Account) -> Result<()> {
        // Every write of this process takes its turn, or the aggregator's queued writers could
        // keep the lock past this one's busy timeout.
        let _turn = self.write_turn.lock().await;
        sqlx::query(&format!(
            "INSERT INTO accounts (id, name, timezone, default_attribution_model, click_lookback_days, view_lookback_days, \
             time_decay_half_life_days, session_timeout_minutes, anonymize_ip, currency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone, \
             default_attribution_model = excluded.default_attribution_model, click_lookback_days = excluded.click_lookback_days, \
             view_lookback_days = excluded.view_lookback_days, time_decay_half_life_days = excluded.time_decay_half_life_days, \
             session_timeout_minutes = excluded.session_timeout_minutes, anonymize_ip = excluded.anonymize_ip, currency = excluded.currency, \
             updated_at = {NOW}"
        ))
        .bind(a.id.to_string())
        .bind(&a.name)
        .bind(&a.timezone)
        .bind(&a.default_attribution_model)
        .bind(a.click_lookback_days)
        .bind(a.view_lookback_days)
        .bind(a.time_decay_half_life_days)
        .bind(a.session_timeout_minutes)
        .bind(a.anonymize_ip)
        .bind(&a.currency)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_key(&self, k: &ApiKey) -> Result<()> {
        let _turn = self.write_turn.lock().await;
        sqlx::query(&format!(
            "INSERT INTO api_keys (account_id, kind, key_hash, prefix, revoked_at) VALUES (?, ?, ?, ?, CASE WHEN ? THEN {NOW} END) \
             ON CONFLICT (key_hash) DO NOTHING"
        ))
        .bind(k.account_id.to_string())
        .bind(k.kind.as_str())
        .bind(&k.key_hash)
        .bind(&k.prefix)
        .bind(k.revoked)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn revoke_keys(&self, account_id: Uuid, kind: KeyKind, keep_hash: Option<&str>) -> Result<u64> {
        let _turn = self.write_turn.lock().await;
        let r = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = {NOW} WHERE account_id = ? AND kind = ? AND revoked_at IS NULL AND (? IS NULL OR key_hash <> ?)"
        ))
        .bind(account_id.to_string())
        .bind(kind.as_str())
        .bind(keep_hash)
        .bind(keep_hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn upsert_campaign(&self, c: &Campaign) -> Result<()> {
        let _turn = self.write_turn.lock().await;
        sqlx::query(&format!(
            "INSERT INTO marketing_campaigns (account_id, id, name, timezone, start_date, end_date) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone, \
             start_date = excluded.start_date, end_date = excluded.end_date, updated_at = {NOW}, deleted_at = NULL"
        ))
        .bind(c.account_id.to_string())
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.timezone)
        .bind(c.start_date.map(|d| d.to_string()))
        .bind(c.end_date.map(|d| d.to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upsert_advertisement(&self, ad: &Advertisement) -> Result<()> {
        let _turn = self.write_turn.lock().await;
        sqlx::query(&format!(
            "INSERT INTO advertisements (account_id, id, campaign_id, channel_id, title) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, id) DO UPDATE SET campaign_id = excluded.campaign_id, channel_id = excluded.channel_id, \
             title = excluded.title, updated_at = {NOW}, deleted_at = NULL"
        ))
        .bind(ad.account_id.to_string())
        .bind(&ad.id)
        .bind(&ad.campaign_id)
        .bind(&ad.channel_id)
        .bind(&ad.title)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_channel_weights(&self, w: &ChannelWeights) -> Result<()> {
        let _turn = self.write_turn.lock().await;
        sqlx::query(
            "INSERT INTO channel_weights (account_id, model, weights, window_from, window_to, journeys, conversions, computed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, model) DO UPDATE SET weights = excluded.weights, \
             window_from = excluded.window_from, window_to = excluded.window_to, journeys = excluded.journeys, \
             conversions = excluded.conversions, computed_at = excluded.computed_at",
        )
        .bind(w.account_id.to_string())
        .bind(&w.model)
        .bind(channel_weights_json(w)?)
        .bind(w.window_from.to_string())
        .bind(w.window_to.to_string())
        .bind(w.journeys)
        .bind(w.conversions)
        .bind(ts(w.computed_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_currency_rate(&self, x: &CurrencyRate) -> Result<()> {
        check_currency_rate(x)?;
        let _turn = self.write_turn.lock().await;
        sqlx::query(
            "INSERT INTO currency_rates (from_currency, to_currency, rate, valid_from, valid_until, source) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (from_currency, to_currency, valid_from) DO UPDATE SET \
             rate = excluded.rate, valid_until = excluded.valid_until, source = excluded.source",
        )
        .bind(&x.from_currency)
        .bind(&x.to_currency)
        .bind(money_text(x.rate))
        .bind(ts(x.valid_from))
        .bind(x.valid_until.map(ts))
        .bind(&x.source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upsert_link(&self, l: &Link) -> Result<()> {
        let _turn = self.write_turn.lock().await;
        sqlx::query(&format!(
            "INSERT INTO links (account_id, short_code, target_url, utm_source, utm_medium, utm_campaign, utm_term, utm_content, \
             campaign_id, advertisement_id, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CASE WHEN ? THEN {NOW} END) \
             ON CONFLICT (short_code) DO UPDATE SET target_url = excluded.target_url, utm_source = excluded.utm_source, \
             utm_medium = excluded.utm_medium, utm_campaign = excluded.utm_campaign, utm_term = excluded.utm_term, \
             utm_content = excluded.utm_content, campaign_id = excluded.campaign_id, advertisement_id = excluded.advertisement_id, \
             deleted_at = excluded.deleted_at, updated_at = {NOW} WHERE links.account_id = excluded.account_id"
        ))
        .bind(l.account_id.to_string())
        .bind(&l.short_code)
        .bind(&l.target_url)
        .bind(&l.utm_source)
        .bind(&l.utm_medium)
        .bind(&l.utm_campaign)
        .bind(&l.utm_term)
        .bind(&l.utm_content)
        .bind(&l.campaign_id)
        .bind(&l.advertisement_id)
        .bind(l.deleted)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl ResultSink for SqliteStore {
    async fn upsert_attributions(&self, rows: &[AttributionRow]) -> Result<u64> {
        self.write_grouped(ResultWrite::Attributions(rows.to_vec())).await
    }

    async fn publish_partials(&self, rows: &[PartialRow]) -> Result<u64> {
        self.write_grouped(ResultWrite::Partials(rows.to_vec())).await
    }

    async fn publish_link_clicks(&self, rows: &[LinkClickPartialRow]) -> Result<u64> {
        self.write_grouped(ResultWrite::LinkClicks(rows.to_vec())).await
    }

    async fn publish_journeys(&self, rows: &[JourneyPartialRow]) -> Result<u64> {
        self.write_grouped(ResultWrite::Journeys(rows.to_vec())).await
    }

    async fn clear_results(&self) -> Result<u64> {
        // As the connecting (owner) role: a replay rebuilds every account.
        let (_turn, mut tx) = self.write_tx().await?;
        let mut n = 0;
        for t in RESULT_TABLES {
            n += sqlx::query(&format!("DELETE FROM {t}")).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn insert_raw(&self, records: &[touchline_model::Record]) -> Result<u64> {
        use touchline_model::{Body, Record};
        // Multi-row INSERT OR IGNORE per table: a replay inserts nothing twice.
        const ROWS: usize = 200;
        let s = |o: &Option<touchline_model::Id>| o.as_ref().map(|i| i.to_string());
        let common = |r: &Record| {
            let m = &r.meta;
            (m.account_id.to_string(), m.record_id.to_string(), ts(m.timestamp), ts(m.received_at), s(&m.anonymous_id), s(&m.customer_id))
        };
        let payload = |r: &Record| String::from_utf8(r.to_json()).unwrap_or_default();
        let of = |f: fn(&Body) -> bool| records.iter().filter(move |r| f(&r.body)).collect::<Vec<&Record>>();
        let mut n = 0;
        let (_turn, mut tx) = self.write_tx().await?;
        for chunk in of(|b| matches!(b, Body::Event(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO events (account_id, record_id, timestamp, received_at, anonymous_id, customer_id, event_name, \
                 session_id, campaign_id, advertisement_id, page_url, referrer, utm_source, utm_medium, utm_campaign, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, anon, cust) = common(r);
                if let Body::Event(e) = &r.body {
                    b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv).push_bind(anon).push_bind(cust);
                    b.push_bind(e.event_name.clone())
                        .push_bind(s(&e.session_id))
                        .push_bind(s(&e.campaign_id))
                        .push_bind(s(&e.advertisement_id));
                    b.push_bind(e.context.page_url.clone()).push_bind(e.context.referrer.clone()).push_bind(e.context.utm_source.clone());
                    b.push_bind(e.context.utm_medium.clone()).push_bind(e.context.utm_campaign.clone()).push_bind(payload(r));
                }
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in of(|b| matches!(b, Body::Session(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO sessions (account_id, record_id, timestamp, received_at, anonymous_id, customer_id, session_id, \
                 started_at, ended_at, device_id, utm_source, utm_medium, utm_campaign, referrer, landing_page, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, anon, cust) = common(r);
                if let Body::Session(x) = &r.body {
                    b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv).push_bind(anon).push_bind(cust);
                    b.push_bind(x.session_id.to_string())
                        .push_bind(ts(x.started_at))
                        .push_bind(x.ended_at.map(ts))
                        .push_bind(s(&x.device_id));
                    b.push_bind(x.utm_source.clone()).push_bind(x.utm_medium.clone()).push_bind(x.utm_campaign.clone());
                    b.push_bind(x.referrer.clone()).push_bind(x.landing_page.clone()).push_bind(payload(r));
                }
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in of(|b| matches!(b, Body::Touchpoint(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO touchpoints (account_id, record_id, timestamp, received_at, anonymous_id, customer_id, type, \
                 channel, campaign_id, advertisement_id, utm_source, utm_medium, utm_campaign, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, anon, cust) = common(r);
                if let Body::Touchpoint(x) = &r.body {
                    b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv).push_bind(anon).push_bind(cust);
                    b.push_bind(x.kind.to_string())
                        .push_bind(x.channel.clone())
                        .push_bind(s(&x.campaign_id))
                        .push_bind(s(&x.advertisement_id));
                    b.push_bind(x.utm_source.clone())
                        .push_bind(x.utm_medium.clone())
                        .push_bind(x.utm_campaign.clone())
                        .push_bind(payload(r));
                }
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in of(|b| matches!(b, Body::LinkClick(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO link_clicks (account_id, record_id, timestamp, received_at, anonymous_id, customer_id, link_id, \
                 short_code, device_id, campaign_id, advertisement_id, referer, user_agent, ip, bot, is_unique, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, anon, cust) = common(r);
                if let Body::LinkClick(c) = &r.body {
                    b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv).push_bind(anon).push_bind(cust);
                    b.push_bind(s(&c.link_id)).push_bind(s(&c.short_code)).push_bind(s(&c.device_id)).push_bind(s(&c.campaign_id));
                    b.push_bind(s(&c.advertisement_id))
                        .push_bind(c.referer.clone())
                        .push_bind(c.user_agent.clone())
                        .push_bind(c.ip.clone());
                    b.push_bind(c.bot).push_bind(c.unique).push_bind(payload(r));
                }
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in of(|b| matches!(b, Body::Conversion(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO conversions (account_id, record_id, timestamp, received_at, anonymous_id, customer_id, type, \
                 value, currency, order_id, campaign_id, advertisement_id, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, anon, cust) = common(r);
                if let Body::Conversion(c) = &r.body {
                    b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv).push_bind(anon).push_bind(cust);
                    b.push_bind(c.kind.to_string()).push_bind(c.value.map(money_text)).push_bind(c.currency.map(|c| c.to_string()));
                    b.push_bind(s(&c.order_id)).push_bind(s(&c.campaign_id)).push_bind(s(&c.advertisement_id)).push_bind(payload(r));
                }
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in of(|b| matches!(b, Body::Spend(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO spend (account_id, record_id, timestamp, received_at, date, campaign_id, advertisement_id, cost, \
                 currency, impressions, clicks, source, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, _, _) = common(r);
                if let Body::Spend(x) = &r.body {
                    b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv);
                    b.push_bind(x.date.to_string())
                        .push_bind(x.campaign_id.to_string())
                        .push_bind(s(&x.advertisement_id))
                        .push_bind(money_text(x.cost));
                    b.push_bind(x.currency.to_string()).push_bind(x.impressions.map(|v| v as i64)).push_bind(x.clicks.map(|v| v as i64));
                    b.push_bind(x.source.clone()).push_bind(payload(r));
                }
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in of(|b| matches!(b, Body::Identify(_) | Body::Alias(_))).chunks(ROWS) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO identities (account_id, record_id, timestamp, received_at, type, anonymous_id, customer_id, \
                 previous_id, payload) ",
            );
            q.push_values(chunk, |mut b, r| {
                let (acct, id, t, recv, anon, cust) = common(r);
                let previous = match &r.body {
                    Body::Alias(a) => Some(a.previous_id.to_string()),
                    _ => None,
                };
                b.push_bind(acct).push_bind(id).push_bind(t).push_bind(recv).push_bind(r.kind().as_str());
                b.push_bind(anon).push_bind(cust).push_bind(previous).push_bind(payload(r));
            });
            n += q.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }
}

#[async_trait]
impl ResultReader for SqliteStore {
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyMetricRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {METRIC_COLS} FROM campaign_performance_metrics WHERE account_id = ? AND metric_date BETWEEN ? AND ? \
             AND deleted_at IS NULL ORDER BY metric_date, campaign_id, advertisement_id"
        ))
        .bind(account_id.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(metric_from_row).collect()
    }

    async fn range_partials(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<PartialRow>> {
        let rows = sqlx::query(&range_partials_sql(["?", "?", "?"]))
            .bind(account_id.to_string())
            .bind(from.to_string())
            .bind(to.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(partial_from_row).collect()
    }

    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> Result<Vec<AttributionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ATTR_COLS} FROM campaign_attributions WHERE account_id = ? AND (? IS NULL OR attribution_model = ?) \
             ORDER BY conversion_id, attribution_model, touchpoint_id"
        ))
        .bind(account_id.to_string())
        .bind(model)
        .bind(model)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attribution_from_row).collect()
    }

    async fn link_click_counts(&self, account_id: Uuid) -> Result<std::collections::HashMap<String, (i64, i64)>> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as(&link_click_sums_sql("?")).bind(account_id.to_string()).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(code, human, bot)| (code, (human, bot))).collect())
    }

    async fn journey_paths(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<JourneyPathRow>> {
        // Every partition's row of every day, summed in Rust: revenue is decimal text, which
        // SQLite's sum() would add as doubles.
        let rows = sqlx::query(
            "SELECT channels, campaigns, conversions, non_conversions, revenue FROM journey_partials \
             WHERE account_id = ? AND journey_date BETWEEN ? AND ?",
        )
        .bind(account_id.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(sum_journey_paths(rows.iter().map(journey_path_from_row).collect::<Result<Vec<_>>>()?))
    }
}
