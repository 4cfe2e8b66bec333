-- Reach over any range of days. A partial's `reach` (campaign_daily_metrics) counts the people
-- of one partition on one day; people are not additive across days, nor across partitions
-- once a visitor stitched to a customer is counted on the visitor's partition as that
-- customer. So each partial's people are also kept in two mergeable forms, per (account,
-- campaign, advertisement, day, partition) and version like the partial itself:
--   reach_state   uniqCombined state of the people's identity hashes (sipHash64 of the
--                 identity), for BI: uniqCombinedMerge(reach_state) over any rows is the
--                 distinct count of their union.
--   reach_sketch  touchline's own sketch (exact hash list up to 2,048 people, HyperLogLog of
--                 2^14 registers above; crates/touchline-model/src/reach.rs), which the
--                 reports API unions, so its figures are the same on every store.
--
-- The aggregator inserts the sorted distinct hashes into campaign_reach_input (engine Null:
-- nothing is stored there) and the materialized view builds the state with arrayReduce on
-- the server, which works on 18.16 and current ClickHouse alike (no input() function, no
-- client-side state encoding).
--
-- Readers take the highest version per (cell, partition), as everywhere: FINAL, or
-- argMax(reach_sketch, version). Example, reach of every campaign over a flight:
--   SELECT campaign_id, uniqCombinedMerge(reach_state) AS reach
--   FROM touchline.campaign_reach_partials FINAL
--   WHERE account_id = toUUID('…') AND metric_date BETWEEN toDate('2026-03-01') AND toDate('2026-03-31')
--   GROUP BY campaign_id
CREATE TABLE IF NOT EXISTS touchline.campaign_reach_input
(
    account_id        UUID,
    campaign_id       String,
    advertisement_id  String,
    metric_date       Date,
    partition         UInt32,
    version           Int64,
    reach_hashes      Array(UInt64),
    reach_sketch      String
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS touchline.campaign_reach_partials
(
    account_id        UUID,
    campaign_id       String,
    advertisement_id  String,
    metric_date       Date,
    partition         UInt32,
    version           Int64,
    reach_sketch      String,
    reach_state       AggregateFunction(uniqCombined, UInt64)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(metric_date)
ORDER BY (account_id, metric_date, campaign_id, advertisement_id, partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS touchline.campaign_reach_partials_mv TO touchline.campaign_reach_partials AS
SELECT
    account_id,
    campaign_id,
    advertisement_id,
    metric_date,
    partition,
    version,
    reach_sketch,
    arrayReduce('uniqCombinedState', reach_hashes) AS reach_state
FROM touchline.campaign_reach_input;
