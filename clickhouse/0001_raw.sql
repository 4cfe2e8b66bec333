-- Raw entities, one row per accepted record, written by the aggregator's ClickHouse sink.
--
-- Conventions (every raw table):
--   * `touchline.` names the database; `touchline migrate` substitutes the configured one.
--   * `date` is the UTC day of `timestamp` (spend: the day the source reported), the monthly
--     partition key and the second sorting column after `account_id`, so the common filter
--     "one account, a date range" reads few granules.
--   * Optional identifiers and texts are '' when absent (the ClickHouse idiom: no Nullable
--     cost, `WHERE campaign_id != ''`); optional numbers are Nullable.
--   * Times are DateTime('UTC') (whole seconds; this schema also runs on servers without
--     DateTime64); `payload` keeps the whole record as JSON, exact timestamps included, so
--     nothing is lost (`visitParamExtractString(payload, 'field')` reads any field).
--
-- Deduplication: the sink repeats an insert after a crash or a failed write, so every table
-- is a ReplacingMergeTree whose sorting key ends with `record_id`. A record is immutable on
-- the bus, so its copies agree on every column and collapse into one row when parts merge.
-- Until then a copy may be visible: queries that count rows use FINAL (or uniqExact(record_id)),
-- as the examples in clickhouse/examples/ do. Servers from 22.2 on also drop the repeated
-- block at insert time (`insert_deduplication_token`, see extras/0003_insert_dedup_window.sql).

CREATE TABLE IF NOT EXISTS touchline.events
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    anonymous_id      String,
    customer_id       String,
    event_name        String,
    session_id        String,
    campaign_id       String,
    advertisement_id  String,
    page_url          String,
    page_path         String,
    referrer          String,
    user_agent        String,
    ip                String,
    utm_source        String,
    utm_medium        String,
    utm_campaign      String,
    utm_term          String,
    utm_content       String,
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, event_name, record_id);

CREATE TABLE IF NOT EXISTS touchline.sessions
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    anonymous_id      String,
    customer_id       String,
    session_id        String,
    started_at        DateTime('UTC'),
    ended_at          Nullable(DateTime('UTC')),
    device_id         String,
    campaign_id       String,
    advertisement_id  String,
    utm_source        String,
    utm_medium        String,
    utm_campaign      String,
    utm_term          String,
    utm_content       String,
    referrer          String,
    landing_page      String,
    user_agent        String,
    ip                String,
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, session_id, record_id);

-- `type`: impression, view, click, cta, email_open, … (the seed's column name).
CREATE TABLE IF NOT EXISTS touchline.touchpoints
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    anonymous_id      String,
    customer_id       String,
    type              String,
    channel           String,
    campaign_id       String,
    advertisement_id  String,
    session_id        String,
    utm_source        String,
    utm_medium        String,
    utm_campaign      String,
    utm_term          String,
    utm_content       String,
    referrer          String,
    page_url          String,
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, campaign_id, record_id);

-- `bot` = 1 for bots, link-preview fetchers and HEAD requests (excluded from click metrics);
-- `is_unique` = 0 when the same device clicked the same link within the hour.
CREATE TABLE IF NOT EXISTS touchline.link_clicks
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    anonymous_id      String,
    customer_id       String,
    link_id           String,
    short_code        String,
    target_url        String,
    referer           String,
    user_agent        String,
    ip                String,
    device_id         String,
    campaign_id       String,
    advertisement_id  String,
    bot               UInt8,
    is_unique         Nullable(UInt8),
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, short_code, record_id);

-- `type`: signup, purchase, lead, … Money is Decimal(38, 6): exact, and wide enough for any
-- value the collector accepts.
CREATE TABLE IF NOT EXISTS touchline.conversions
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    anonymous_id      String,
    customer_id       String,
    type              String,
    value             Nullable(Decimal(38, 6)),
    currency          String,
    order_id          String,
    campaign_id       String,
    advertisement_id  String,
    session_id        String,
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, type, record_id);

-- Spend reports. A source may report a (date, campaign, ad) again with new figures; every
-- report is kept (deduplicated by record id only). The current figure of a source is the
-- report with the latest `received_at`:
--   argMax(cost, received_at) GROUP BY account_id, date, campaign_id, advertisement_id, source
-- which is what the daily metrics (campaign_daily_metrics.cost) already contain.
CREATE TABLE IF NOT EXISTS touchline.spend
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    campaign_id       String,
    advertisement_id  String,
    cost              Decimal(38, 6),
    currency          String,
    impressions       Nullable(UInt64),
    clicks            Nullable(UInt64),
    source            String,
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, campaign_id, advertisement_id, source, record_id);

-- identify / alias records: which anonymous id (or previous id) became which customer.
CREATE TABLE IF NOT EXISTS touchline.identities
(
    account_id        UUID,
    record_id         String,
    date              Date,
    timestamp         DateTime('UTC'),
    received_at       DateTime('UTC'),
    type              String,
    anonymous_id      String,
    customer_id       String,
    previous_id       String,
    payload           String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, date, record_id);
