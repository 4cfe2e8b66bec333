-- Catalog: accounts, keys, campaigns, advertisements, short links.
-- Identifiers of the platforms we serve are text (integers, UUIDs and external ids alike);
-- accounts are UUIDs.

CREATE TABLE IF NOT EXISTS accounts (
    id                          uuid PRIMARY KEY,
    name                        text NOT NULL,
    timezone                    text NOT NULL DEFAULT 'UTC',
    default_attribution_model   text NOT NULL DEFAULT 'last_touch'
        CHECK (default_attribution_model IN ('first_touch', 'last_touch', 'last_non_direct', 'linear', 'time_decay', 'position_based', 'markov', 'shapley')),
    click_lookback_days         integer NOT NULL DEFAULT 30 CHECK (click_lookback_days BETWEEN 1 AND 365),
    view_lookback_days          integer NOT NULL DEFAULT 1 CHECK (view_lookback_days BETWEEN 0 AND 365),
    time_decay_half_life_days   double precision NOT NULL DEFAULT 7 CHECK (time_decay_half_life_days > 0),
    session_timeout_minutes     integer NOT NULL DEFAULT 30 CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    anonymize_ip                boolean NOT NULL DEFAULT false,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS accounts_name_live ON accounts (name) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS api_keys (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id),
    kind        text NOT NULL CHECK (kind IN ('write', 'secret')),
    key_hash    text NOT NULL UNIQUE,          -- SHA-256 of the key, hex; the key itself is never stored
    prefix      text NOT NULL,                 -- first characters, to recognise a key
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account_id);

CREATE TABLE IF NOT EXISTS marketing_campaigns (
    account_id    uuid NOT NULL REFERENCES accounts (id),
    id            text NOT NULL,
    name          text,
    product_id    text,
    start_date    date,
    end_date      date,
    budget        numeric(20, 6),
    objective_id  text,
    status_id     text,
    timezone      text NOT NULL DEFAULT 'UTC',  -- reporting day boundaries of this campaign
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX IF NOT EXISTS marketing_campaigns_dates ON marketing_campaigns (account_id, start_date, end_date);

CREATE TABLE IF NOT EXISTS advertisements (
    account_id          uuid NOT NULL REFERENCES accounts (id),
    id                  text NOT NULL,
    campaign_id         text,
    channel_id          text,
    product_variant_id  text,
    title               text,
    content             text,
    media_url           text,
    start_date          date,
    end_date            date,
    budget              numeric(20, 6),
    status_id           text,
    variant_id          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX IF NOT EXISTS advertisements_campaign ON advertisements (account_id, campaign_id);

CREATE TABLE IF NOT EXISTS links (
    id                bigserial PRIMARY KEY,
    account_id        uuid NOT NULL REFERENCES accounts (id),
    short_code        text NOT NULL UNIQUE,
    target_url        text NOT NULL,
    utm_source        text,
    utm_medium        text,
    utm_campaign      text,
    utm_term          text,
    utm_content       text,
    campaign_id       text,
    advertisement_id  text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz                  -- soft delete: the redirect answers 410
);
CREATE INDEX IF NOT EXISTS links_account ON links (account_id);

-- Catalog changes: a version counter and a NOTIFY, so running caches reload.
CREATE TABLE IF NOT EXISTS catalog_version (
    id       integer PRIMARY KEY CHECK (id = 1),
    version  bigint NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION touchline_catalog_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    UPDATE catalog_version SET version = version + 1 WHERE id = 1;
    PERFORM pg_notify('touchline_catalog', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'api_keys', 'marketing_campaigns', 'advertisements', 'links'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_catalog_changed', t);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION touchline_catalog_changed()', t || '_catalog_changed', t);
    END LOOP;
END;
$$;
