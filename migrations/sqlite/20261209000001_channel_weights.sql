-- Data-driven channel weights per account and model (see the Postgres migration of the same
-- name). `weights` is a JSON object, channel → share.
CREATE TABLE IF NOT EXISTS channel_weights (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    model         TEXT NOT NULL CHECK (model IN ('markov', 'shapley')),
    weights       TEXT NOT NULL,
    window_from   TEXT NOT NULL,
    window_to     TEXT NOT NULL,
    journeys      INTEGER NOT NULL,
    conversions   INTEGER NOT NULL,
    computed_at   TEXT NOT NULL,
    PRIMARY KEY (account_id, model)
);

CREATE TRIGGER IF NOT EXISTS channel_weights_ins AFTER INSERT ON channel_weights BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS channel_weights_upd AFTER UPDATE ON channel_weights BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS channel_weights_del AFTER DELETE ON channel_weights BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
