-- The reach sketch of each partial: the people its `reach` counts, in the byte form of
-- touchline_model::reach (exact hash list up to 2,048 people, HyperLogLog above), so reach
-- unions over partitions and over any range of days instead of being summed. Written with the
-- other partial columns, under the same epoch rule. Empty for partials written before sketches:
-- those add their `reach` as it is until the aggregator rewrites them (a replay does).
ALTER TABLE campaign_metric_partials ADD COLUMN IF NOT EXISTS reach_sketch bytea NOT NULL DEFAULT ''::bytea;
