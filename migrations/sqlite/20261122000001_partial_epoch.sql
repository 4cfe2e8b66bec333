-- The epoch of the partition owner that wrote each partial (see the Postgres migration of the
-- same name): writes of an earlier epoch are ignored.
ALTER TABLE campaign_metric_partials ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
