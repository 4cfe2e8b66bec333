-- Journeys per account, UTC day and path as each aggregator partition counts them; an
-- account's paths are the sums over partitions and days (see the Postgres migration of the
-- same name). Revenue is exact decimal text, as in every money column (see `exact_money`).
CREATE TABLE IF NOT EXISTS journey_partials (
    account_id       TEXT NOT NULL REFERENCES accounts (id),
    journey_date     TEXT NOT NULL,
    channels         TEXT NOT NULL,
    campaigns        TEXT NOT NULL,
    partition        INTEGER NOT NULL,
    conversions      INTEGER NOT NULL DEFAULT 0,
    non_conversions  INTEGER NOT NULL DEFAULT 0,
    revenue          TEXT NOT NULL DEFAULT '0',
    epoch            INTEGER NOT NULL DEFAULT 0,
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (account_id, journey_date, channels, campaigns, partition)
);
