-- Clicks per short link and UTC day as each aggregator partition counts them; a link's
-- clicks are the sum over partitions and days (see the Postgres migration of the same name).
CREATE TABLE IF NOT EXISTS link_click_partials (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    short_code    TEXT NOT NULL,
    click_date    TEXT NOT NULL,
    partition     INTEGER NOT NULL,
    human_clicks  INTEGER NOT NULL DEFAULT 0,
    bot_clicks    INTEGER NOT NULL DEFAULT 0,
    epoch         INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (account_id, short_code, click_date, partition)
);
