-- Currencies (see the Postgres migration of the same name). `rate` is exact decimal text, like
-- money; times are RFC 3339 text in UTC.
ALTER TABLE accounts ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD'
    CHECK (length(currency) = 3 AND currency = upper(currency) AND currency NOT GLOB '*[^A-Z]*');

CREATE TABLE IF NOT EXISTS currency_rates (
    id             TEXT PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    from_currency  TEXT NOT NULL,
    to_currency    TEXT NOT NULL,
    rate           TEXT NOT NULL,
    valid_from     TEXT NOT NULL,
    valid_until    TEXT,
    source         TEXT NOT NULL DEFAULT 'manual',
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (from_currency <> to_currency),
    UNIQUE (from_currency, to_currency, valid_from)
);

CREATE TRIGGER IF NOT EXISTS currency_rates_ins AFTER INSERT ON currency_rates BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS currency_rates_upd AFTER UPDATE ON currency_rates BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS currency_rates_del AFTER DELETE ON currency_rates BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
