-- Journeys per account, UTC day and path as each aggregator partition counts them (absolute
-- values), the input of the data-driven models (Markov, Shapley) over any range of days. A
-- converting journey counts on its conversion's day, a journey that ended without converting
-- on the day of its last touch. `channels` (and `campaigns`) are the names of the journey's
-- last 16 touches, each cut to 48 bytes, joined by ' > '. An account's paths are the sums
-- over partitions and days; an identity lives on one partition, so each journey counts once.
-- Writes of an earlier epoch than the stored row's are ignored, as for
-- campaign_metric_partials.
CREATE TABLE IF NOT EXISTS journey_partials (
    account_id       uuid NOT NULL REFERENCES accounts (id),
    journey_date     date NOT NULL,
    channels         text NOT NULL,
    campaigns        text NOT NULL,
    partition        integer NOT NULL,
    conversions      bigint NOT NULL DEFAULT 0,
    non_conversions  bigint NOT NULL DEFAULT 0,
    revenue          numeric(20, 6) NOT NULL DEFAULT 0,
    epoch            bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, journey_date, channels, campaigns, partition)
);

ALTER TABLE journey_partials ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS journey_partials_account_isolation ON journey_partials;
CREATE POLICY journey_partials_account_isolation ON journey_partials FOR ALL TO touchline_app
    USING (account_id = touchline_current_account()) WITH CHECK (account_id = touchline_current_account());
GRANT SELECT, INSERT, UPDATE, DELETE ON journey_partials TO touchline_app;
