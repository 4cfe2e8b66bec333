-- The currency of each partial's revenue and cost: the account's reporting currency when the
-- aggregator wrote it (docs/attribution.md, "Currencies"). ClickHouse holds no catalog, so
-- the partial carries it, as the SQL stores' campaign_performance_metrics.currency does.
-- Readers take it like every other column: argMax(currency, version), or FINAL. '' in rows
-- written before this column.
ALTER TABLE touchline.campaign_daily_metrics ADD COLUMN currency String DEFAULT '';
