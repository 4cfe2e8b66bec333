-- Currencies. Each account reports in one currency (`accounts.currency`, ISO 4217, default
-- USD); revenue and cost sent in another are converted by the rate of the record's day from
-- `currency_rates` (docs/attribution.md, "Currencies"). The rates are global, in the shape of
-- the seeds' `currency_conversion`: one row per (from, to, valid_from), valid until
-- `valid_until` (exclusive) or, when that is null, until the next row of the pair. Part of the
-- catalog: a change reaches running caches like any catalog change, and records that waited
-- for a rate are then credited.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT 'USD'
    CHECK (currency ~ '^[A-Z]{3}$');

CREATE TABLE IF NOT EXISTS currency_rates (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    from_currency  text NOT NULL CHECK (from_currency ~ '^[A-Z]{3}$'),
    to_currency    text NOT NULL CHECK (to_currency ~ '^[A-Z]{3}$'),
    rate           numeric(24, 12) NOT NULL CHECK (rate > 0),
    valid_from     timestamptz NOT NULL,
    valid_until    timestamptz CHECK (valid_until IS NULL OR valid_until > valid_from),
    source         text NOT NULL DEFAULT 'manual',
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (from_currency <> to_currency),
    UNIQUE (from_currency, to_currency, valid_from)
);

-- Global reference data: the application role reads it; the owner (touchline migrate, the CLI)
-- writes it.
GRANT SELECT ON currency_rates TO touchline_app;

DROP TRIGGER IF EXISTS currency_rates_catalog_changed ON currency_rates;
CREATE TRIGGER currency_rates_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON currency_rates
    FOR EACH STATEMENT EXECUTE FUNCTION touchline_catalog_changed();
