-- Fact tables written back by the aggregator with idempotent upserts of absolute values.

-- Daily metrics per account, campaign, advertisement and day in the campaign's time zone.
-- advertisement_id is '' for campaign-level rows (not tied to one ad), so the unique key has
-- no NULLs and ON CONFLICT works the same on every backend.
CREATE TABLE IF NOT EXISTS campaign_performance_metrics (
    id                bigserial PRIMARY KEY,
    account_id        uuid NOT NULL REFERENCES accounts (id),
    campaign_id       text NOT NULL,
    advertisement_id  text NOT NULL DEFAULT '',
    metric_date       date NOT NULL,
    metric_hour       timestamptz,
    impressions       bigint NOT NULL DEFAULT 0,
    clicks            bigint NOT NULL DEFAULT 0,
    reach             bigint NOT NULL DEFAULT 0,
    frequency         double precision,
    engagements       bigint NOT NULL DEFAULT 0,
    sessions          bigint NOT NULL DEFAULT 0,
    conversions       numeric(20, 6) NOT NULL DEFAULT 0,   -- sum of credited weights
    revenue           numeric(20, 6) NOT NULL DEFAULT 0,
    cost              numeric(20, 6) NOT NULL DEFAULT 0,
    currency          text,
    ctr               double precision,                    -- NULL when impressions = 0
    cpc               numeric(20, 6),                      -- NULL when clicks = 0
    cpm               numeric(20, 6),
    cpa               numeric(20, 6),
    roas              double precision,
    utm_source        text,
    utm_medium        text,
    utm_campaign      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CONSTRAINT campaign_performance_metrics_key UNIQUE (account_id, campaign_id, advertisement_id, metric_date)
);
CREATE INDEX IF NOT EXISTS campaign_performance_metrics_date ON campaign_performance_metrics (account_id, metric_date);

-- One row per (conversion, touchpoint, model). A conversion re-attributed later (a late touch)
-- gets a higher version; its older rows are deleted and stale versions never overwrite newer.
CREATE TABLE IF NOT EXISTS campaign_attributions (
    id                    bigserial PRIMARY KEY,
    account_id            uuid NOT NULL REFERENCES accounts (id),
    conversion_id         text NOT NULL,
    touchpoint_id         text NOT NULL,        -- '(direct)' when no touch was in the window
    attribution_model     text NOT NULL,
    version               bigint NOT NULL,
    campaign_id           text,
    advertisement_id      text,
    customer_id           text,
    touchpoint_type       text,
    touchpoint_timestamp  timestamptz,
    channel_id            text,
    conversion_time       timestamptz NOT NULL,
    conversion_value      numeric(20, 6),
    currency              text,
    weight                double precision NOT NULL,
    attributed_revenue    numeric(20, 6) NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaign_attributions_key UNIQUE (account_id, conversion_id, attribution_model, touchpoint_id)
);
CREATE INDEX IF NOT EXISTS campaign_attributions_campaign ON campaign_attributions (account_id, attribution_model, campaign_id);
CREATE INDEX IF NOT EXISTS campaign_attributions_time ON campaign_attributions (account_id, conversion_time);
