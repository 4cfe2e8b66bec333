-- Clicks per short link and UTC day as one aggregator partition counts them: absolute
-- values, human and bot apart, versioned like campaign_daily_metrics (`epoch << 32 | n`).
-- A link's clicks are the sum over partitions and days of each partition's highest-version
-- row; a click record lives on one partition, so the sum counts it once. The raw
-- `link_clicks` table keeps every click; this one is what the link listing reads.
CREATE TABLE IF NOT EXISTS touchline.link_click_partials
(
    account_id    UUID,
    short_code    String,
    click_date    Date,
    partition     UInt32,
    version       Int64,
    human_clicks  UInt64,
    bot_clicks    UInt64,
    written_at    DateTime('UTC')
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(click_date)
ORDER BY (account_id, short_code, click_date, partition);
