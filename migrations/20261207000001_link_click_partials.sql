-- Clicks per short link and UTC day as each aggregator partition counts them (absolute
-- values, human and bot apart). A link's clicks are the sum over partitions and days; a click
-- record lives on one partition, so the sum counts it once. Writes of an earlier epoch than
-- the stored row's are ignored, as for campaign_metric_partials. Counts start when this table
-- does: `touchline replay` recounts the history the log still holds.
CREATE TABLE IF NOT EXISTS link_click_partials (
    account_id    uuid NOT NULL REFERENCES accounts (id),
    short_code    text NOT NULL,
    click_date    date NOT NULL,
    partition     integer NOT NULL,
    human_clicks  bigint NOT NULL DEFAULT 0,
    bot_clicks    bigint NOT NULL DEFAULT 0,
    epoch         bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, short_code, click_date, partition)
);

ALTER TABLE link_click_partials ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS link_click_partials_account_isolation ON link_click_partials;
CREATE POLICY link_click_partials_account_isolation ON link_click_partials FOR ALL TO touchline_app
    USING (account_id = touchline_current_account()) WITH CHECK (account_id = touchline_current_account());
GRANT SELECT, INSERT, UPDATE, DELETE ON link_click_partials TO touchline_app;
