-- Per-partition partial daily metrics. Each aggregator instance owns some bus partitions and
-- writes the absolute values of its partitions here; campaign_performance_metrics holds their
-- sum, recomputed in the same transaction under a per-account advisory lock, so concurrent
-- publishers never overwrite a newer sum with an older one. Every column is additive across
-- partitions (reach too: the bus key is the identity, so an identity lives on one partition).
CREATE TABLE IF NOT EXISTS campaign_metric_partials (
    account_id            uuid NOT NULL REFERENCES accounts (id),
    campaign_id           text NOT NULL,
    advertisement_id      text NOT NULL DEFAULT '',
    metric_date           date NOT NULL,
    partition             integer NOT NULL,
    impressions           bigint NOT NULL DEFAULT 0,
    clicks                bigint NOT NULL DEFAULT 0,
    reach                 bigint NOT NULL DEFAULT 0,
    engagements           bigint NOT NULL DEFAULT 0,
    sessions              bigint NOT NULL DEFAULT 0,
    conversions           numeric(20, 6) NOT NULL DEFAULT 0,
    revenue               numeric(20, 6) NOT NULL DEFAULT 0,
    cost                  numeric(20, 6) NOT NULL DEFAULT 0,
    reported_impressions  bigint NOT NULL DEFAULT 0,
    reported_clicks       bigint NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, campaign_id, advertisement_id, metric_date, partition)
);

ALTER TABLE campaign_metric_partials ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS campaign_metric_partials_account_isolation ON campaign_metric_partials;
CREATE POLICY campaign_metric_partials_account_isolation ON campaign_metric_partials FOR ALL TO touchline_app
    USING (account_id = touchline_current_account()) WITH CHECK (account_id = touchline_current_account());
GRANT SELECT, INSERT, UPDATE, DELETE ON campaign_metric_partials TO touchline_app;
