-- requires: 20.3
--
-- Dictionary-encoded strings for low-cardinality columns (kinds, channels, UTM values,
-- currencies, models): smaller and faster to filter and group by. Key columns keep their
-- type. RowBinary encodes LowCardinality(String) as String, so the sink is unchanged.
-- Skipped on older servers, where LowCardinality is experimental.

ALTER TABLE touchline.events
    MODIFY COLUMN utm_source LowCardinality(String),
    MODIFY COLUMN utm_medium LowCardinality(String),
    MODIFY COLUMN utm_campaign LowCardinality(String);
ALTER TABLE touchline.sessions
    MODIFY COLUMN utm_source LowCardinality(String),
    MODIFY COLUMN utm_medium LowCardinality(String),
    MODIFY COLUMN utm_campaign LowCardinality(String);
ALTER TABLE touchline.touchpoints
    MODIFY COLUMN type LowCardinality(String),
    MODIFY COLUMN channel LowCardinality(String),
    MODIFY COLUMN utm_source LowCardinality(String),
    MODIFY COLUMN utm_medium LowCardinality(String),
    MODIFY COLUMN utm_campaign LowCardinality(String);
ALTER TABLE touchline.conversions
    MODIFY COLUMN currency LowCardinality(String);
ALTER TABLE touchline.spend
    MODIFY COLUMN currency LowCardinality(String);
ALTER TABLE touchline.attributions
    MODIFY COLUMN touchpoint_type LowCardinality(Nullable(String)),
    MODIFY COLUMN channel_id LowCardinality(Nullable(String)),
    MODIFY COLUMN currency LowCardinality(Nullable(String));
