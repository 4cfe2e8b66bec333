//! Postgres: the production store. Writes go through the role `touchline_app` with the account
//! set per transaction (`SET LOCAL ROLE`, `set_config(..., true)`), so row-level security holds
//! even though the pool connects as the schema owner.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Transaction};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::rows::*;
use crate::*;
use stats::GrowthAnalyzer;

mod checkpoints;
mod stats;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The role every write and account-scoped read goes through.
pub const APP_ROLE: &str = "touchline_app";

pub struct PgStore {
    pool: PgPool,
    listener: Mutex<Option<PgListener>>,
    attributions_growth: std::sync::Arc<GrowthAnalyzer>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore> {
        // Statements are prepared once per connection, and after five runs Postgres may keep a
        // generic plan made while the result tables were still nearly empty: a replay into a
        // fresh database then deleted replaced attribution rows with a sequential scan per
        // set, up to 80 s a statement. A plan per run sees the tables as they are now.
        let options = PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(10)).connect_with(options).await?;
        Ok(PgStore { pool, listener: Mutex::new(None), attributions_growth: GrowthAnalyzer::new("campaign_attributions") })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction acting as `touchline_app` for one account: row-level security applies.
    pub async fn as_account(&self, account_id: Uuid) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("SET LOCAL ROLE {APP_ROLE}")).execute(&mut *tx).await?;
        sqlx::query("SELECT set_config('app.current_account_id', $1, true)").bind(account_id.to_string()).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// Waits for a catalog NOTIFY (or the timeout). Falls back to sleeping if LISTEN fails.
    pub async fn listen_wait(&self, timeout: Duration) {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut l) => match l.listen("touchline_catalog").await {
                    Ok(()) => *guard = Some(l),
                    Err(e) => tracing::warn!(error = %e, "LISTEN touchline_catalog failed; polling"),
                },
                Err(e) => tracing::warn!(error = %e, "catalog listener connection failed; polling"),
            }
        }
        match guard.as_mut() {
            Some(l) => match tokio::time::timeout(timeout, l.recv()).await {
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "catalog listener lost; reconnecting");
                    *guard = None;
                }
            },
            None => {
                drop(guard);
                tokio::time::sleep(timeout).await;
            }
        }
    }
}

/// Within one statement a key may appear once: keeps the last row of each key, in order.
fn last_per_key<'a, T, K: std::hash::Hash + Eq>(rows: &[&'a T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut seen = std::collections::HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        seen.insert(key(r), i);
    }
    let mut keep: Vec<usize> = seen.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| rows[i]).collect()
}

pub(crate) fn dedup_metrics<'a>(rows: &[&'a DailyMetricRow]) -> Vec<&'a DailyMetricRow> {
    last_per_key(rows, |r| (r.campaign_id.as_str(), r.advertisement_id.as_str(), r.metric_date))
}

pub(crate) fn dedup_attr(rows: Vec<&AttributionRow>) -> Vec<&AttributionRow> {
    last_per_key(&rows, |r| (r.conversion_id.as_str(), r.attribution_model.as_str(), r.touchpoint_id.as_str()))
}

pub(crate) fn dedup_partials<'a>(rows: &[&'a PartialRow]) -> Vec<&'a PartialRow> {
    last_per_key(rows, |r| (r.campaign_id.as_str(), r.advertisement_id.as_str(), r.metric_date, r.partition))
}

pub(crate) fn dedup_link_clicks<'a>(rows: &[&'a LinkClickPartialRow]) -> Vec<&'a LinkClickPartialRow> {
    last_per_key(rows, |r| (r.short_code.as_str(), r.click_date, r.partition))
}

pub(crate) fn dedup_journeys<'a>(rows: &[&'a JourneyPartialRow]) -> Vec<&'a JourneyPartialRow> {
    last_per_key(rows, |r| (r.journey_date, r.channels.as_str(), r.campaigns.as_str(), r.partition))
}

/// Columns updated from EXCLUDED on conflict (absolute values, never increments).
pub(crate) const METRIC_UPDATE: [&str; 18] = [
    "impressions",
    "clicks",
    "reach",
    "frequency",
    "engagements",
    "sessions",
    "conversions",
    "revenue",
    "cost",
    "currency",
    "ctr",
    "cpc",
    "cpm",
    "cpa",
    "roas",
    "utm_source",
    "utm_medium",
    "utm_campaign",
];

pub(crate) const PARTIAL_COLS: &str = "account_id, campaign_id, advertisement_id, metric_date, partition, impressions, clicks, reach, \
     engagements, sessions, conversions, revenue, cost, reported_impressions, reported_clicks, epoch, reach_sketch";
pub(crate) const PARTIAL_UPDATE: [&str; 12] = [
    "impressions",
    "clicks",
    "reach",
    "engagements",
    "sessions",
    "conversions",
    "revenue",
    "cost",
    "reported_impressions",
    "reported_clicks",
    "epoch",
    "reach_sketch",
];
/// Columns a publish sets: the sums, their ratios and the account's reporting currency they
/// are in, never a campaign's UTMs.
pub(crate) const PUBLISHED_UPDATE: [&str; 15] = [
    "impressions",
    "clicks",
    "reach",
    "frequency",
    "engagements",
    "sessions",
    "conversions",
    "revenue",
    "cost",
    "currency",
    "ctr",
    "cpc",
    "cpm",
    "cpa",
    "roas",
];

pub(crate) const ATTR_UPDATE: [&str; 12] = [
    "version",
    "campaign_id",
    "advertisement_id",
    "customer_id",
    "touchpoint_type",
    "touchpoint_timestamp",
    "channel_id",
    "conversion_time",
    "conversion_value",
    "currency",
    "weight",
    "attributed_revenue",
];

pub(crate) fn set_excluded(cols: &[&str]) -> String {
    cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ")
}

/// `(t.a, t.b) IS DISTINCT FROM (EXCLUDED.a, EXCLUDED.b)`: skip updates that change nothing.
fn changed(table: &str, cols: &[&str]) -> String {
    let left = cols.iter().map(|c| format!("{table}.{c}")).collect::<Vec<_>>().join(", ");
    let right = cols.iter().map(|c| format!("EXCLUDED.{c}")).collect::<Vec<_>>().join(", ");
    format!("({left}) IS DISTINCT FROM ({right})")
}

/// Every partition's stored partial row of `cells` (campaign, ad, day) of `account`.
async fn partials_of_cells(
    tx: &mut Transaction<'static, Postgres>,
    account: Uuid,
    cells: &[(&str, &str, NaiveDate)],
) -> Result<Vec<PartialRow>> {
    let mut qb: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {PARTIAL_COLS} FROM campaign_metric_partials WHERE account_id = "));
    qb.push_bind(account);
    qb.push(" AND (campaign_id, advertisement_id, metric_date) IN (");
    qb.push_values(cells, |mut b, (c, a, d)| {
        b.push_bind(*c).push_bind(*a).push_bind(*d);
    });
    qb.push(")");
    qb.build().fetch_all(&mut **tx).await?.iter().map(partial_from_row).collect()
}

/// Upserts daily metric rows of one account (absolute values), setting `update` on a
/// conflict and leaving rows that would not change untouched (no new row version, `updated_at`
/// kept). Publishing updates only the sums and ratios; a direct write updates every column.
async fn upsert_metric_rows(tx: &mut Transaction<'static, Postgres>, rows: &[&DailyMetricRow], update: &[&str]) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO campaign_performance_metrics ({METRIC_COLS}) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.account_id)
                .push_bind(&r.campaign_id)
                .push_bind(&r.advertisement_id)
                .push_bind(r.metric_date)
                .push_bind(r.impressions)
                .push_bind(r.clicks)
                .push_bind(r.reach)
                .push_bind(r.frequency)
                .push_bind(r.engagements)
                .push_bind(r.sessions)
                .push_bind(r.conversions)
                .push_bind(r.revenue)
                .push_bind(r.cost)
                .push_bind(&r.currency)
                .push_bind(r.ctr)
                .push_bind(r.cpc)
                .push_bind(r.cpm)
                .push_bind(r.cpa)
                .push_bind(r.roas)
                .push_bind(&r.utm_source)
                .push_bind(&r.utm_medium)
                .push_bind(&r.utm_campaign);
        });
        qb.push(format!(
            " ON CONFLICT (account_id, campaign_id, advertisement_id, metric_date) DO UPDATE SET {}, updated_at = now() WHERE {}",
            set_excluded(update),
            changed("campaign_performance_metrics", update)
        ));
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn upsert_daily_metrics(&self, rows: &[DailyMetricRow]) -> Result<u64> {
        let mut n = 0;
        for (account, rows) in by_account(rows, |r| r.account_id) {
            let rows = dedup_metrics(&rows);
            let mut tx = self.as_account(account).await?;
            upsert_metric_rows(&mut tx, &rows, &METRIC_UPDATE).await?;
            tx.commit().await?;
            n += rows.len() as u64;
        }
        Ok(n)
    }
}

#[async_trait]
impl CatalogStore for PgStore {
    async fn load_catalog(&self) -> Result<Catalog> {
        let mut tx = self.pool.begin().await?;
        // One consistent snapshot of all catalog tables.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let version: i64 = sqlx::query_scalar(CATALOG_VERSION_SQL).fetch_one(&mut *tx).await?;
        let accounts = sqlx::query(ACCOUNTS_SQL).fetch_all(&mut *tx).await?.iter().map(account_from_row).collect::<Result<_>>()?;
        let keys = sqlx::query(KEYS_SQL).fetch_all(&mut *tx).await?.iter().map(key_from_row).collect::<Result<_>>()?;
        let campaigns = sqlx::query(CAMPAIGNS_SQL).fetch_all(&mut *tx).await?.iter().map(campaign_from_row).collect::<Result<_>>()?;
        let advertisements =
            sqlx::query(ADVERTISEMENTS_SQL).fetch_all(&mut *tx).await?.iter().map(advertisement_from_row).collect::<Result<_>>()?;
        let links = sqlx::query(LINKS_SQL).fetch_all(&mut *tx).await?.iter().map(link_from_row).collect::<Result<_>>()?;
        let channel_weights = sqlx::query(&channel_weights_sql("weights::text"))
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
            sqlx::query("SELECT account_id, kind, key_hash, prefix, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE key_hash = $1")
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn upsert_account(&self, a: &Account) -> Result<()> {
        sqlx::query(
            "INSERT INTO accounts (id, name, timezone, default_attribution_model, click_lookback_days, view_lookback_days, \
             time_decay_half_life_days, session_timeout_minutes, anonymize_ip, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, \
             default_attribution_model = EXCLUDED.default_attribution_model, click_lookback_days = EXCLUDED.click_lookback_days, \
             view_lookback_days = EXCLUDED.view_lookback_days, time_decay_half_life_days = EXCLUDED.time_decay_half_life_days, \
             session_timeout_minutes = EXCLUDED.session_timeout_minutes, anonymize_ip = EXCLUDED.anonymize_ip, currency = EXCLUDED.currency, \
             updated_at = now()",
        )
        .bind(a.id)
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
        sqlx::query(
            "INSERT INTO api_keys (account_id, kind, key_hash, prefix, revoked_at) VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(k.account_id)
        .bind(k.kind.as_str())
        .bind(&k.key_hash)
        .bind(&k.prefix)
        .bind(k.revoked)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn revoke_keys(&self, account_id: Uuid, kind: KeyKind, keep_hash: Option<&str>) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE account_id = $1 AND kind = $2 AND revoked_at IS NULL \
             AND ($3::text IS NULL OR key_hash <> $3)",
        )
        .bind(account_id)
        .bind(kind.as_str())
        .bind(keep_hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn upsert_campaign(&self, c: &Campaign) -> Result<()> {
        let mut tx = self.as_account(c.account_id).await?;
        sqlx::query(
            "INSERT INTO marketing_campaigns (account_id, id, name, timezone, start_date, end_date) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, \
             start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date, updated_at = now(), deleted_at = NULL",
        )
        .bind(c.account_id)
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.timezone)
        .bind(c.start_date)
        .bind(c.end_date)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_advertisement(&self, ad: &Advertisement) -> Result<()> {
        let mut tx = self.as_account(ad.account_id).await?;
        sqlx::query(
            "INSERT INTO advertisements (account_id, id, campaign_id, channel_id, title) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account_id, id) DO UPDATE SET campaign_id = EXCLUDED.campaign_id, channel_id = EXCLUDED.channel_id, \
             title = EXCLUDED.title, updated_at = now(), deleted_at = NULL",
        )
        .bind(ad.account_id)
        .bind(&ad.id)
        .bind(&ad.campaign_id)
        .bind(&ad.channel_id)
        .bind(&ad.title)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_channel_weights(&self, w: &ChannelWeights) -> Result<()> {
        let mut tx = self.as_account(w.account_id).await?;
        sqlx::query(
            "INSERT INTO channel_weights (account_id, model, weights, window_from, window_to, journeys, conversions, computed_at) \
             VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8) ON CONFLICT (account_id, model) DO UPDATE SET weights = EXCLUDED.weights, \
             window_from = EXCLUDED.window_from, window_to = EXCLUDED.window_to, journeys = EXCLUDED.journeys, \
             conversions = EXCLUDED.conversions, computed_at = EXCLUDED.computed_at",
        )
        .bind(w.account_id)
        .bind(&w.model)
        .bind(channel_weights_json(w)?)
        .bind(w.window_from)
        .bind(w.window_to)
        .bind(w.journeys)
        .bind(w.conversions)
        .bind(w.computed_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_currency_rate(&self, x: &CurrencyRate) -> Result<()> {
        check_currency_rate(x)?;
        // Global reference data: written by the owner, not as an account.
        sqlx::query(
            "INSERT INTO currency_rates (from_currency, to_currency, rate, valid_from, valid_until, source) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (from_currency, to_currency, valid_from) DO UPDATE SET \
             rate = EXCLUDED.rate, valid_until = EXCLUDED.valid_until, source = EXCLUDED.source",
        )
        .bind(&x.from_currency)
        .bind(&x.to_currency)
        .bind(x.rate)
        .bind(x.valid_from)
        .bind(x.valid_until)
        .bind(&x.source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upsert_link(&self, l: &Link) -> Result<()> {
        let mut tx = self.as_account(l.account_id).await?;
        sqlx::query(
            "INSERT INTO links (account_id, short_code, target_url, utm_source, utm_medium, utm_campaign, utm_term, utm_content, \
             campaign_id, advertisement_id, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $11 THEN now() END) \
             ON CONFLICT (short_code) DO UPDATE SET target_url = EXCLUDED.target_url, utm_source = EXCLUDED.utm_source, \
             utm_medium = EXCLUDED.utm_medium, utm_campaign = EXCLUDED.utm_campaign, utm_term = EXCLUDED.utm_term, \
             utm_content = EXCLUDED.utm_content, campaign_id = EXCLUDED.campaign_id, advertisement_id = EXCLUDED.advertisement_id, \
             deleted_at = EXCLUDED.deleted_at, updated_at = now() WHERE links.account_id = EXCLUDED.account_id",
        )
        .bind(l.account_id)
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn wait_for_change(&self, timeout: Duration) {
        self.listen_wait(timeout).await
    }
}

#[async_trait]
impl ResultSink for PgStore {
    async fn upsert_attributions(&self, rows: &[AttributionRow]) -> Result<u64> {
        let mut n = 0;
        for (account, rows) in by_account(rows, |r| r.account_id) {
            let rows = dedup_attr(newest_versions(&rows));
            let mut tx = self.as_account(account).await?;
            for chunk in rows.chunks(ARRAY_CHUNK) {
                // Stored versions of these conversions: stale incoming rows are dropped.
                // Each conversion once: a chunk holds every touch of every model of a conversion.
                let mut conv: Vec<&str> = chunk.iter().map(|r| r.conversion_id.as_str()).collect();
                conv.sort_unstable();
                conv.dedup();
                let stored_rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT conversion_id, attribution_model, max(version) FROM campaign_attributions \
                     WHERE account_id = $1 AND conversion_id = ANY($2) GROUP BY conversion_id, attribution_model",
                )
                .bind(account)
                .bind(&conv)
                .fetch_all(&mut *tx)
                .await?;
                let stored: std::collections::HashMap<(&str, &str), i64> =
                    stored_rows.iter().map(|(c, m, v)| ((c.as_str(), m.as_str()), *v)).collect();
                let stored_version = |r: &AttributionRow| stored.get(&(r.conversion_id.as_str(), r.attribution_model.as_str())).copied();
                let fresh: Vec<&AttributionRow> =
                    chunk.iter().copied().filter(|r| stored_version(r).is_none_or(|v| v <= r.version)).collect();
                if fresh.is_empty() {
                    continue;
                }
                // Only a set that replaces a stored version can leave rows behind; a first
                // version (most sets of a fresh run) needs no DELETE at all.
                let replacing: Vec<&AttributionRow> =
                    fresh.iter().copied().filter(|r| stored_version(r).is_some_and(|v| v < r.version)).collect();
                if !replacing.is_empty() {
                    delete_older_attributions(&mut tx, account, &replacing).await?;
                }
                insert_attributions(&mut tx, &fresh).await?;
                n += fresh.len() as u64;
            }
            tx.commit().await?;
        }
        self.attributions_growth.wrote(&self.pool, n);
        Ok(n)
    }

    async fn publish_partials(&self, rows: &[PartialRow]) -> Result<u64> {
        let mut n = 0;
        for (account, rows) in by_account(rows, |r| r.account_id) {
            let mut tx = self.as_account(account).await?;
            // Publishers of one account take turns, so a sum is never computed from partials
            // older than the ones another publisher already summed.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('touchline_publish:' || $1))")
                .bind(account.to_string())
                .execute(&mut *tx)
                .await?;
            let rows = dedup_partials(&rows);
            for chunk in rows.chunks(CHUNK) {
                let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO campaign_metric_partials ({PARTIAL_COLS}) "));
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.account_id)
                        .push_bind(&r.campaign_id)
                        .push_bind(&r.advertisement_id)
                        .push_bind(r.metric_date)
                        .push_bind(r.partition)
                        .push_bind(r.impressions)
                        .push_bind(r.clicks)
                        .push_bind(r.reach)
                        .push_bind(r.engagements)
                        .push_bind(r.sessions)
                        .push_bind(r.conversions)
                        .push_bind(r.revenue)
                        .push_bind(r.cost)
                        .push_bind(r.reported_impressions)
                        .push_bind(r.reported_clicks)
                        .push_bind(i64::from(r.epoch))
                        .push_bind(&r.reach_sketch);
                });
                // A write of an earlier epoch (a previous owner of the partition) is ignored.
                qb.push(format!(
                    " ON CONFLICT (account_id, campaign_id, advertisement_id, metric_date, partition) DO UPDATE SET {}, updated_at = now() \
                     WHERE campaign_metric_partials.epoch <= EXCLUDED.epoch",
                    set_excluded(&PARTIAL_UPDATE)
                ));
                qb.build().execute(&mut *tx).await?;
                let mut cells: Vec<(&str, &str, NaiveDate)> =
                    chunk.iter().map(|r| (r.campaign_id.as_str(), r.advertisement_id.as_str(), r.metric_date)).collect();
                cells.sort_unstable();
                cells.dedup();
                let partials = partials_of_cells(&mut tx, account, &cells).await?;
                let mut published = publish_cells(&partials).map_err(|e| StoreError::Refused(e.to_string()))?;
                let currency: Option<String> =
                    sqlx::query_scalar("SELECT currency FROM accounts WHERE id = $1").bind(account).fetch_optional(&mut *tx).await?;
                for r in &mut published {
                    r.currency.clone_from(&currency);
                }
                upsert_metric_rows(&mut tx, &published.iter().collect::<Vec<_>>(), &PUBLISHED_UPDATE).await?;
                n += chunk.len() as u64;
            }
            tx.commit().await?;
        }
        Ok(n)
    }

    async fn publish_link_clicks(&self, rows: &[LinkClickPartialRow]) -> Result<u64> {
        let mut n = 0;
        for (account, rows) in by_account(rows, |r| r.account_id) {
            let mut tx = self.as_account(account).await?;
            for chunk in dedup_link_clicks(&rows).chunks(CHUNK) {
                let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO link_click_partials ({LINK_CLICK_COLS}) "));
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.account_id)
                        .push_bind(&r.short_code)
                        .push_bind(r.click_date)
                        .push_bind(r.partition)
                        .push_bind(r.human_clicks)
                        .push_bind(r.bot_clicks)
                        .push_bind(i64::from(r.epoch));
                });
                // A write of an earlier epoch (a previous owner of the partition) is ignored.
                qb.push(
                    " ON CONFLICT (account_id, short_code, click_date, partition) DO UPDATE SET human_clicks = EXCLUDED.human_clicks, \
                     bot_clicks = EXCLUDED.bot_clicks, epoch = EXCLUDED.epoch, updated_at = now() \
                     WHERE link_click_partials.epoch <= EXCLUDED.epoch",
                );
                qb.build().execute(&mut *tx).await?;
                n += chunk.len() as u64;
            }
            tx.commit().await?;
        }
        Ok(n)
    }

    async fn publish_journeys(&self, rows: &[JourneyPartialRow]) -> Result<u64> {
        let mut n = 0;
        for (account, rows) in by_account(rows, |r| r.account_id) {
            let mut tx = self.as_account(account).await?;
            for chunk in dedup_journeys(&rows).chunks(CHUNK) {
                let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO journey_partials ({JOURNEY_COLS}) "));
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(r.account_id)
                        .push_bind(r.journey_date)
                        .push_bind(&r.channels)
                        .push_bind(&r.campaigns)
                        .push_bind(r.partition)
                        .push_bind(r.conversions)
                        .push_bind(r.non_conversions)
                        .push_bind(r.revenue)
                        .push_bind(i64::from(r.epoch));
                });
                qb.push(journey_upsert_sql("EXCLUDED", "now()"));
                qb.build().execute(&mut *tx).await?;
                n += chunk.len() as u64;
            }
            tx.commit().await?;
        }
        Ok(n)
    }

    async fn clear_results(&self) -> Result<u64> {
        // As the connecting (owner) role: a replay rebuilds every account.
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        for t in RESULT_TABLES {
            n += sqlx::query(&format!("DELETE FROM {t}")).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn insert_raw(&self, _records: &[touchline_model::Record]) -> Result<u64> {
        Ok(0)
    }
}

#[async_trait]
impl ResultReader for PgStore {
    async fn daily_metrics(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<DailyMetricRow>> {
        let mut tx = self.as_account(account_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {METRIC_COLS} FROM campaign_performance_metrics WHERE metric_date BETWEEN $1 AND $2 AND deleted_at IS NULL \
             ORDER BY metric_date, campaign_id, advertisement_id"
        ))
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(metric_from_row).collect()
    }

    async fn range_partials(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<PartialRow>> {
        let mut tx = self.as_account(account_id).await?;
        let rows = sqlx::query(&range_partials_sql(["$1", "$2", "$3"])).bind(account_id).bind(from).bind(to).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(partial_from_row).collect()
    }

    async fn attributions(&self, account_id: Uuid, model: Option<&str>) -> Result<Vec<AttributionRow>> {
        let mut tx = self.as_account(account_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {ATTR_COLS} FROM campaign_attributions WHERE ($1::text IS NULL OR attribution_model = $1) \
             ORDER BY conversion_id, attribution_model, touchpoint_id"
        ))
        .bind(model)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(attribution_from_row).collect()
    }

    async fn link_click_counts(&self, account_id: Uuid) -> Result<HashMap<String, (i64, i64)>> {
        let mut tx = self.as_account(account_id).await?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&link_click_sums_sql("$1")).bind(account_id).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(code, human, bot)| (code, (human, bot))).collect())
    }

    async fn journey_paths(&self, account_id: Uuid, from: NaiveDate, to: NaiveDate) -> Result<Vec<JourneyPathRow>> {
        let mut tx = self.as_account(account_id).await?;
        let rows = sqlx::query(
            "SELECT channels, campaigns, CAST(sum(conversions) AS BIGINT) AS conversions, \
             CAST(sum(non_conversions) AS BIGINT) AS non_conversions, sum(revenue) AS revenue FROM journey_partials \
             WHERE account_id = $1 AND journey_date BETWEEN $2 AND $3 GROUP BY channels, campaigns \
             HAVING sum(conversions) <> 0 OR sum(non_conversions) <> 0 OR sum(revenue) <> 0",
        )
        .bind(account_id)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // Sorted in Rust: byte order, whatever the database's collation.
        Ok(sum_journey_paths(rows.iter().map(journey_path_from_row).collect::<Result<Vec<_>>>()?))
    }
}

/// Rows per statement when columns travel as arrays: a handful of binds whatever the count,
/// so Postgres parses and plans one small statement instead of one with thousands of
/// parameters.
const ARRAY_CHUNK: usize = 5_000;

/// Removes the stored rows of older versions of the (conversion, model) sets in `fresh`: a
/// newer version may credit other touches.
async fn delete_older_attributions(tx: &mut sqlx::PgConnection, account: Uuid, fresh: &[&AttributionRow]) -> Result<()> {
    let mut keys: Vec<(&str, &str, i64)> =
        fresh.iter().map(|r| (r.conversion_id.as_str(), r.attribution_model.as_str(), r.version)).collect();
    keys.sort_unstable();
    keys.dedup();
    let conversions: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let models: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let versions: Vec<i64> = keys.iter().map(|k| k.2).collect();
    sqlx::query(
        "DELETE FROM campaign_attributions c USING UNNEST($2::text[], $3::text[], $4::int8[]) AS i (conversion_id, attribution_model, version) \
         WHERE c.account_id = $1 AND c.conversion_id = i.conversion_id AND c.attribution_model = i.attribution_model AND c.version < i.version",
    )
    .bind(account)
    .bind(conversions)
    .bind(models)
    .bind(versions)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts `fresh` (one row per key), replacing stored rows of the same key and an older or
/// equal version when anything differs.
async fn insert_attributions(tx: &mut sqlx::PgConnection, fresh: &[&AttributionRow]) -> Result<()> {
    fn column<'r, T>(rows: &[&'r AttributionRow], f: impl Fn(&'r AttributionRow) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    let sql = format!(
        "INSERT INTO campaign_attributions ({ATTR_COLS}) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
         $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::timestamptz[], \
         $13::numeric[], $14::text[], $15::float8[], $16::numeric[]) \
         ON CONFLICT (account_id, conversion_id, attribution_model, touchpoint_id) DO UPDATE SET {}, updated_at = now() \
         WHERE campaign_attributions.version <= EXCLUDED.version AND {}",
        set_excluded(&ATTR_UPDATE),
        changed("campaign_attributions", &ATTR_UPDATE)
    );
    sqlx::query(&sql)
        .bind(column(fresh, |r| r.account_id))
        .bind(column(fresh, |r| r.conversion_id.as_str()))
        .bind(column(fresh, |r| r.touchpoint_id.as_str()))
        .bind(column(fresh, |r| r.attribution_model.as_str()))
        .bind(column(fresh, |r| r.version))
        .bind(column(fresh, |r| r.campaign_id.as_deref()))
        .bind(column(fresh, |r| r.advertisement_id.as_deref()))
        .bind(column(fresh, |r| r.customer_id.as_deref()))
        .bind(column(fresh, |r| r.touchpoint_type.as_deref()))
        .bind(column(fresh, |r| r.touchpoint_timestamp))
        .bind(column(fresh, |r| r.channel_id.as_deref()))
        .bind(column(fresh, |r| r.conversion_time))
        .bind(column(fresh, |r| r.conversion_value))
        .bind(column(fresh, |r| r.currency.as_deref()))
        .bind(column(fresh, |r| r.weight))
        .bind(column(fresh, |r| r.attributed_revenue))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
