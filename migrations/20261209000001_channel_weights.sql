-- Data-driven channel weights per account and model (markov, shapley): each channel's share of
-- the conversions the model credits over the account's journeys of a window of days. The
-- aggregator refreshes them on a schedule and splits each conversion's credit under that model
-- by them (docs/attribution.md). `weights` is a JSON object, channel → share; the shares sum to
-- 1, or the object is empty when the window held no converting journey. Part of the catalog:
-- a change reaches running caches like any catalog change.
CREATE TABLE IF NOT EXISTS channel_weights (
    account_id    uuid NOT NULL REFERENCES accounts (id),
    model         text NOT NULL CHECK (model IN ('markov', 'shapley')),
    weights       jsonb NOT NULL,
    window_from   date NOT NULL,
    window_to     date NOT NULL,
    journeys      bigint NOT NULL,
    conversions   bigint NOT NULL,
    computed_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, model)
);

ALTER TABLE channel_weights ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS channel_weights_account_isolation ON channel_weights;
CREATE POLICY channel_weights_account_isolation ON channel_weights FOR ALL TO touchline_app
    USING (account_id = touchline_current_account()) WITH CHECK (account_id = touchline_current_account());
GRANT SELECT, INSERT, UPDATE, DELETE ON channel_weights TO touchline_app;

DROP TRIGGER IF EXISTS channel_weights_catalog_changed ON channel_weights;
CREATE TRIGGER channel_weights_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON channel_weights
    FOR EACH STATEMENT EXECUTE FUNCTION touchline_catalog_changed();
