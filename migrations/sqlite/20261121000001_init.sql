-- The embedded store (SQLite, WAL): the same catalog and fact tables as Postgres, plus the raw
-- entity tables. Timestamps are RFC 3339 text (UTC), dates YYYY-MM-DD, money NUMERIC.

CREATE TABLE IF NOT EXISTS accounts (
    id                          TEXT PRIMARY KEY,
    name                        TEXT NOT NULL,
    timezone                    TEXT NOT NULL DEFAULT 'UTC',
    default_attribution_model   TEXT NOT NULL DEFAULT 'last_touch'
        CHECK (default_attribution_model IN ('first_touch', 'last_touch', 'last_non_direct', 'linear', 'time_decay', 'position_based', 'markov', 'shapley')),
    click_lookback_days         INTEGER NOT NULL DEFAULT 30 CHECK (click_lookback_days BETWEEN 1 AND 365),
    view_lookback_days          INTEGER NOT NULL DEFAULT 1 CHECK (view_lookback_days BETWEEN 0 AND 365),
    time_decay_half_life_days   REAL NOT NULL DEFAULT 7 CHECK (time_decay_half_life_days > 0),
    session_timeout_minutes     INTEGER NOT NULL DEFAULT 30 CHECK (session_timeout_minutes BETWEEN 1 AND 1440),
    anonymize_ip                INTEGER NOT NULL DEFAULT 0,
    created_at                  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at                  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at                  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS accounts_name_live ON accounts (name) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS api_keys (
    id          INTEGER PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    kind        TEXT NOT NULL CHECK (kind IN ('write', 'secret')),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at  TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys (account_id);

CREATE TABLE IF NOT EXISTS marketing_campaigns (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    id            TEXT NOT NULL,
    name          TEXT,
    product_id    TEXT,
    start_date    TEXT,
    end_date      TEXT,
    budget        NUMERIC,
    objective_id  TEXT,
    status_id     TEXT,
    timezone      TEXT NOT NULL DEFAULT 'UTC',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at    TEXT,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE IF NOT EXISTS advertisements (
    account_id          TEXT NOT NULL REFERENCES accounts (id),
    id                  TEXT NOT NULL,
    campaign_id         TEXT,
    channel_id          TEXT,
    product_variant_id  TEXT,
    title               TEXT,
    content             TEXT,
    media_url           TEXT,
    start_date          TEXT,
    end_date            TEXT,
    budget              NUMERIC,
    status_id           TEXT,
    variant_id          TEXT,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at          TEXT,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE IF NOT EXISTS links (
    id                INTEGER PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    short_code        TEXT NOT NULL UNIQUE,
    target_url        TEXT NOT NULL,
    utm_source        TEXT,
    utm_medium        TEXT,
    utm_campaign      TEXT,
    utm_term          TEXT,
    utm_content       TEXT,
    campaign_id       TEXT,
    advertisement_id  TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at        TEXT
);
CREATE INDEX IF NOT EXISTS links_account ON links (account_id);

CREATE TABLE IF NOT EXISTS catalog_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT OR IGNORE INTO catalog_version (id, version) VALUES (1, 0);

CREATE TRIGGER IF NOT EXISTS accounts_ins AFTER INSERT ON accounts BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS accounts_upd AFTER UPDATE ON accounts BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS accounts_del AFTER DELETE ON accounts BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS api_keys_ins AFTER INSERT ON api_keys BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS api_keys_upd AFTER UPDATE ON api_keys BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS api_keys_del AFTER DELETE ON api_keys BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS campaigns_ins AFTER INSERT ON marketing_campaigns BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS campaigns_upd AFTER UPDATE ON marketing_campaigns BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS campaigns_del AFTER DELETE ON marketing_campaigns BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ads_ins AFTER INSERT ON advertisements BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ads_upd AFTER UPDATE ON advertisements BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ads_del AFTER DELETE ON advertisements BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS links_ins AFTER INSERT ON links BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS links_upd AFTER UPDATE ON links BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS links_del AFTER DELETE ON links BEGIN UPDATE catalog_version SET version = version + 1 WHERE id = 1; END;

CREATE TABLE IF NOT EXISTS campaign_performance_metrics (
    id                INTEGER PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    campaign_id       TEXT NOT NULL,
    advertisement_id  TEXT NOT NULL DEFAULT '',
    metric_date       TEXT NOT NULL,
    metric_hour       TEXT,
    impressions       INTEGER NOT NULL DEFAULT 0,
    clicks            INTEGER NOT NULL DEFAULT 0,
    reach             INTEGER NOT NULL DEFAULT 0,
    frequency         REAL,
    engagements       INTEGER NOT NULL DEFAULT 0,
    sessions          INTEGER NOT NULL DEFAULT 0,
    conversions       NUMERIC NOT NULL DEFAULT 0,
    revenue           NUMERIC NOT NULL DEFAULT 0,
    cost              NUMERIC NOT NULL DEFAULT 0,
    currency          TEXT,
    ctr               REAL,
    cpc               NUMERIC,
    cpm               NUMERIC,
    cpa               NUMERIC,
    roas              REAL,
    utm_source        TEXT,
    utm_medium        TEXT,
    utm_campaign      TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at        TEXT,
    UNIQUE (account_id, campaign_id, advertisement_id, metric_date)
);
CREATE INDEX IF NOT EXISTS campaign_performance_metrics_date ON campaign_performance_metrics (account_id, metric_date);

CREATE TABLE IF NOT EXISTS campaign_attributions (
    id                    INTEGER PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts (id),
    conversion_id         TEXT NOT NULL,
    touchpoint_id         TEXT NOT NULL,
    attribution_model     TEXT NOT NULL,
    version               INTEGER NOT NULL,
    campaign_id           TEXT,
    advertisement_id      TEXT,
    customer_id           TEXT,
    touchpoint_type       TEXT,
    touchpoint_timestamp  TEXT,
    channel_id            TEXT,
    conversion_time       TEXT NOT NULL,
    conversion_value      NUMERIC,
    currency              TEXT,
    weight                REAL NOT NULL,
    attributed_revenue    NUMERIC NOT NULL DEFAULT 0,
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (account_id, conversion_id, attribution_model, touchpoint_id)
);
CREATE INDEX IF NOT EXISTS campaign_attributions_campaign ON campaign_attributions (account_id, attribution_model, campaign_id);

-- Raw entities, one row per record (the bus envelope's fields; the whole record in `payload`).
-- Inserted with INSERT OR IGNORE on (account_id, record_id): a replay adds nothing twice.
CREATE TABLE IF NOT EXISTS events (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    anonymous_id TEXT, customer_id TEXT, event_name TEXT NOT NULL, session_id TEXT, campaign_id TEXT, advertisement_id TEXT,
    page_url TEXT, referrer TEXT, utm_source TEXT, utm_medium TEXT, utm_campaign TEXT, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
CREATE INDEX IF NOT EXISTS events_time ON events (account_id, timestamp);
CREATE TABLE IF NOT EXISTS sessions (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    anonymous_id TEXT, customer_id TEXT, session_id TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, device_id TEXT,
    utm_source TEXT, utm_medium TEXT, utm_campaign TEXT, referrer TEXT, landing_page TEXT, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
CREATE TABLE IF NOT EXISTS touchpoints (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    anonymous_id TEXT, customer_id TEXT, type TEXT NOT NULL, channel TEXT, campaign_id TEXT, advertisement_id TEXT,
    utm_source TEXT, utm_medium TEXT, utm_campaign TEXT, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
CREATE INDEX IF NOT EXISTS touchpoints_time ON touchpoints (account_id, timestamp);
CREATE TABLE IF NOT EXISTS link_clicks (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    anonymous_id TEXT, customer_id TEXT, link_id TEXT, short_code TEXT, device_id TEXT, campaign_id TEXT, advertisement_id TEXT,
    referer TEXT, user_agent TEXT, ip TEXT, bot INTEGER NOT NULL DEFAULT 0, is_unique INTEGER, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
CREATE TABLE IF NOT EXISTS conversions (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    anonymous_id TEXT, customer_id TEXT, type TEXT NOT NULL, value NUMERIC, currency TEXT, order_id TEXT,
    campaign_id TEXT, advertisement_id TEXT, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
CREATE INDEX IF NOT EXISTS conversions_time ON conversions (account_id, timestamp);
CREATE TABLE IF NOT EXISTS spend (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    date TEXT NOT NULL, campaign_id TEXT NOT NULL, advertisement_id TEXT, cost NUMERIC NOT NULL, currency TEXT NOT NULL,
    impressions INTEGER, clicks INTEGER, source TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
CREATE TABLE IF NOT EXISTS identities (
    account_id TEXT NOT NULL, record_id TEXT NOT NULL, timestamp TEXT NOT NULL, received_at TEXT NOT NULL,
    type TEXT NOT NULL, anonymous_id TEXT, customer_id TEXT, previous_id TEXT, payload TEXT NOT NULL,
    PRIMARY KEY (account_id, record_id)
);
