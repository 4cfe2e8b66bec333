-- Results of the aggregator: attribution rows and per-partition daily metric partials.
--
-- Why ReplacingMergeTree(version) and not SummingMergeTree or AggregatingMergeTree:
-- the aggregator writes *absolute* values (the full attribution of a conversion, the full
-- daily figures of a cell as one bus partition sees them), and it repeats a flush after a
-- crash or a failed write. A summing engine would add the repeat to the first write; an
-- AggregatingMergeTree over idempotent states (argMaxState, uniqState of identities) would
-- work but costs a state per column and -Merge combinators in every query, for no gain when
-- the writer already knows the absolute value. With ReplacingMergeTree(version) a repeated
-- flush writes rows with the same key and a version that is equal (same flush) or higher
-- (later flush), so the row with the highest version wins and nothing is ever added twice.
--
-- Versions: `epoch << 32 | n`, where the epoch is bumped (and fsynced) at every start of an
-- aggregator partition. Rows written after a restart therefore supersede rows written before
-- it, and a late write of an older epoch (a zombie instance) loses against the newer one.
--
-- Merges are asynchronous, so readers never rely on them: they pick the highest version
-- explicitly (argMax / max(version), or FINAL), as the views in 0003_reports.sql do.

-- One row per (conversion, touchpoint, model): the touch's share of the conversion.
-- The replacement unit is the set of rows of one (conversion, model): a newer version may
-- credit other touchpoints, so the current rows are those whose version is the highest of
-- their (account_id, conversion_id, attribution_model) — see attributions_current.
-- `conversion_id` is the conversion's dedup key (`order:{kind}:{order_id}` or
-- `record:{record_id}`); `touchpoint_id` is the touch's record id or `(direct)`.
-- `*_us` columns hold the exact times in microseconds since the epoch (DateTime is seconds).
CREATE TABLE IF NOT EXISTS touchline.attributions
(
    account_id               UUID,
    conversion_id            String,
    touchpoint_id            String,
    attribution_model        String,
    version                  Int64,
    conversion_date          Date,
    conversion_time          DateTime('UTC'),
    conversion_time_us       Int64,
    campaign_id              Nullable(String),
    advertisement_id         Nullable(String),
    customer_id              Nullable(String),
    touchpoint_type          Nullable(String),
    touchpoint_timestamp     Nullable(DateTime('UTC')),
    touchpoint_timestamp_us  Nullable(Int64),
    channel_id               Nullable(String),
    conversion_value         Nullable(Decimal(38, 6)),
    currency                 Nullable(String),
    weight                   Float64,
    attributed_revenue       Decimal(38, 6)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(conversion_date)
ORDER BY (account_id, attribution_model, conversion_date, conversion_id, touchpoint_id);

-- Daily metrics per (account, campaign, advertisement, day in the campaign's time zone) as
-- one aggregator partition sees them. Every column is additive across partitions — reach
-- too, because the bus key is the identity, so an identity lives on exactly one partition —
-- so the report (campaign_daily_report) is the sum over partitions of each partition's
-- highest-version row. `advertisement_id` is '' for campaign-level rows. Conversions and
-- revenue are credited under the account's default attribution model.
CREATE TABLE IF NOT EXISTS touchline.campaign_daily_metrics
(
    account_id            UUID,
    campaign_id           String,
    advertisement_id      String,
    metric_date           Date,
    partition             UInt32,
    version               Int64,
    impressions           UInt64,
    clicks                UInt64,
    reach                 UInt64,
    engagements           UInt64,
    sessions              UInt64,
    conversions           Decimal(38, 6),
    revenue               Decimal(38, 6),
    cost                  Decimal(38, 6),
    reported_impressions  UInt64,
    reported_clicks       UInt64,
    written_at            DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(metric_date)
ORDER BY (account_id, metric_date, campaign_id, advertisement_id, partition);
