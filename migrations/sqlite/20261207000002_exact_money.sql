-- Money as exact decimal text. A column declared NUMERIC turns '0.1' into the double
-- 0.1000000000000000055…, so sums and ratios drifted from Postgres's numeric(20, 6). A TEXT
-- column keeps the decimal the writer bound (normalised: '12.3', '200', '0'); touchline sums
-- it in Rust. SQLite cannot change a column's type in place, so each table with money is
-- rebuilt, and existing values are rounded to the six places the columns always meant.
-- money(x): printf('%.6f', x) without trailing zeros; NULL stays NULL.

CREATE TABLE campaign_performance_metrics_exact (
    id                INTEGER PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    campaign_id       TEXT NOT NULL,
    advertisement_id  TEXT NOT NULL DEFAULT '',
    metric_date       TEXT NOT NULL,
    metric_hour       TEXT,
    impressions       INTEGER NOT NULL DEFAULT 0,
    clicks            INTEGER NOT NULL DEFAULT 0,
    reach             INTEGER NOT NULL DEFAULT 0,
    frequency         REAL,
    engagements       INTEGER NOT NULL DEFAULT 0,
    sessions          INTEGER NOT NULL DEFAULT 0,
    conversions       TEXT NOT NULL DEFAULT '0',
    revenue           TEXT NOT NULL DEFAULT '0',
    cost              TEXT NOT NULL DEFAULT '0',
    currency          TEXT,
    ctr               REAL,
    cpc               TEXT,
    cpm               TEXT,
    cpa               TEXT,
    roas              REAL,
    utm_source        TEXT,
    utm_medium        TEXT,
    utm_campaign      TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at        TEXT,
    UNIQUE (account_id, campaign_id, advertisement_id, metric_date)
);
INSERT INTO campaign_performance_metrics_exact
SELECT id, account_id, campaign_id, advertisement_id, metric_date, metric_hour, impressions, clicks, reach, frequency,
    engagements, sessions,
    rtrim(rtrim(printf('%.6f', conversions), '0'), '.'),
    rtrim(rtrim(printf('%.6f', revenue), '0'), '.'),
    rtrim(rtrim(printf('%.6f', cost), '0'), '.'),
    currency, ctr,
    CASE WHEN cpc IS NOT NULL THEN rtrim(rtrim(printf('%.6f', cpc), '0'), '.') END,
    CASE WHEN cpm IS NOT NULL THEN rtrim(rtrim(printf('%.6f', cpm), '0'), '.') END,
    CASE WHEN cpa IS NOT NULL THEN rtrim(rtrim(printf('%.6f', cpa), '0'), '.') END,
    roas, utm_source, utm_medium, utm_campaign, created_at, updated_at, deleted_at
FROM campaign_performance_metrics;
DROP TABLE campaign_performance_metrics;
ALTER TABLE campaign_performance_metrics_exact RENAME TO campaign_performance_metrics;
CREATE INDEX IF NOT EXISTS campaign_performance_metrics_date ON campaign_performance_metrics (account_id, metric_date);

CREATE TABLE campaign_attributions_exact (
    id                    INTEGER PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts (id),
    conversion_id         TEXT NOT NULL,
    touchpoint_id         TEXT NOT NULL,
    attribution_model     TEXT NOT NULL,
    version               INTEGER NOT NULL,
    campaign_id           TEXT,
    advertisement_id      TEXT,
    customer_id           TEXT,
    touchpoint_type       TEXT,
    touchpoint_timestamp  TEXT,
    channel_id            TEXT,
    conversion_time       TEXT NOT NULL,
    conversion_value      TEXT,
    currency              TEXT,
    weight                REAL NOT NULL,
    attributed_revenue    TEXT NOT NULL DEFAULT '0',
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (account_id, conversion_id, attribution_model, touchpoint_id)
);
INSERT INTO campaign_attributions_exact
SELECT id, account_id, conversion_id, touchpoint_id, attribution_model, version, campaign_id, advertisement_id, customer_id,
    touchpoint_type, touchpoint_timestamp, channel_id, conversion_time,
    CASE WHEN conversion_value IS NOT NULL THEN rtrim(rtrim(printf('%.6f', conversion_value), '0'), '.') END,
    currency, weight,
    rtrim(rtrim(printf('%.6f', attributed_revenue), '0'), '.'),
    created_at, updated_at
FROM campaign_attributions;
DROP TABLE campaign_attributions;
ALTER TABLE campaign_attributions_exact RENAME TO campaign_attributions;

CREATE TABLE campaign_metric_partials_exact (
    account_id            TEXT NOT NULL REFERENCES accounts (id),
    campaign_id           TEXT NOT NULL,
    advertisement_id      TEXT NOT NULL DEFAULT '',
    metric_date           TEXT NOT NULL,
    partition             INTEGER NOT NULL,
    impressions           INTEGER NOT NULL DEFAULT 0,
    clicks                INTEGER NOT NULL DEFAULT 0,
    reach                 INTEGER NOT NULL DEFAULT 0,
    engagements           INTEGER NOT NULL DEFAULT 0,
    sessions              INTEGER NOT NULL DEFAULT 0,
    conversions           TEXT NOT NULL DEFAULT '0',
    revenue               TEXT NOT NULL DEFAULT '0',
    cost                  TEXT NOT NULL DEFAULT '0',
    reported_impressions  INTEGER NOT NULL DEFAULT 0,
    reported_clicks       INTEGER NOT NULL DEFAULT 0,
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    epoch                 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, campaign_id, advertisement_id, metric_date, partition)
);
INSERT INTO campaign_metric_partials_exact
SELECT account_id, campaign_id, advertisement_id, metric_date, partition, impressions, clicks, reach, engagements, sessions,
    rtrim(rtrim(printf('%.6f', conversions), '0'), '.'),
    rtrim(rtrim(printf('%.6f', revenue), '0'), '.'),
    rtrim(rtrim(printf('%.6f', cost), '0'), '.'),
    reported_impressions, reported_clicks, updated_at, epoch
FROM campaign_metric_partials;
DROP TABLE campaign_metric_partials;
ALTER TABLE campaign_metric_partials_exact RENAME TO campaign_metric_partials;

CREATE TABLE conversions_exact (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    anonymous_id TEXT, customer_id TEXT, type TEXT NOT NULL, value TEXT, currency TEXT, order_id TEXT,
    campaign_id TEXT, advertisement_id TEXT, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
INSERT INTO conversions_exact
SELECT account_id, record_id, timestamp, received_at, anonymous_id, customer_id, type,
    CASE WHEN value IS NOT NULL THEN rtrim(rtrim(printf('%.6f', value), '0'), '.') END,
    currency, order_id, campaign_id, advertisement_id, payload
FROM conversions;
DROP TABLE conversions;
ALTER TABLE conversions_exact RENAME TO conversions;
CREATE INDEX IF NOT EXISTS conversions_time ON conversions (account_id, timestamp);

CREATE TABLE spend_exact (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    date TEXT NOT NULL, campaign_id TEXT NOT NULL, advertisement_id TEXT, cost TEXT NOT NULL, currency TEXT NOT NULL,
    impressions INTEGER, clicks INTEGER, source TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
INSERT INTO spend_exact
SELECT account_id, record_id, timestamp, received_at, date, campaign_id, advertisement_id,
    rtrim(rtrim(printf('%.6f', cost), '0'), '.'),
    currency, impressions, clicks, source, payload
FROM spend;
DROP TABLE spend;
ALTER TABLE spend_exact RENAME TO spend;
