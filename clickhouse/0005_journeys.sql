-- Journeys per account, UTC day and path as one aggregator partition counts them: absolute
-- values, versioned like campaign_daily_metrics (`epoch << 32 | n`). A converting journey
-- counts on its conversion's day, one that ended without converting on the day of its last
-- touch; `channels` and `campaigns` are the names of its last 16 touches (each cut to 48
-- bytes) joined by ' > '. An account's paths over a range are the sums over partitions and
-- days of each partition's highest-version row; an identity lives on one partition, so the
-- sum counts each journey once. What the data-driven models (Markov, Shapley) read.
CREATE TABLE IF NOT EXISTS touchline.journey_partials
(
    account_id       UUID,
    journey_date     Date,
    channels         String,
    campaigns        String,
    partition        UInt32,
    version          Int64,
    conversions      UInt64,
    non_conversions  UInt64,
    revenue          Decimal(38, 6),
    written_at       DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(journey_date)
ORDER BY (account_id, journey_date, channels, campaigns, partition);
