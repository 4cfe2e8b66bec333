-- The epoch of the partition owner that wrote each partial. Writes of an earlier epoch are
-- ignored (ON CONFLICT ... WHERE campaign_metric_partials.epoch <= EXCLUDED.epoch): a previous
-- owner that still writes after its partition moved cannot overwrite its successor's values.
ALTER TABLE campaign_metric_partials ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0;
