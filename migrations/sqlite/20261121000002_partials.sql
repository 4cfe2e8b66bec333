-- Per-partition partial daily metrics; campaign_performance_metrics holds their sum
-- (see the Postgres migration of the same name).
CREATE TABLE IF NOT EXISTS campaign_metric_partials (
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
    conversions           NUMERIC NOT NULL DEFAULT 0,
    revenue               NUMERIC NOT NULL DEFAULT 0,
    cost                  NUMERIC NOT NULL DEFAULT 0,
    reported_impressions  INTEGER NOT NULL DEFAULT 0,
    reported_clicks       INTEGER NOT NULL DEFAULT 0,
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (account_id, campaign_id, advertisement_id, metric_date, partition)
);
