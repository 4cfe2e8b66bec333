-- The reach sketch of each partial (see the Postgres migration of the same name): the people
-- its `reach` counts, so reach unions over partitions and days. Empty for older partials.
ALTER TABLE campaign_metric_partials ADD COLUMN reach_sketch BLOB NOT NULL DEFAULT x'';
