-- The fixed dataset the BI examples are tested on (crates/touchline-clickhouse/tests/bi.rs on
-- the real server, scripts/chdb_check.py on current ClickHouse). Account a1 is the one the
-- examples query; account b2 is noise they must not see. Copies of rows (a repeated flush)
-- and superseded versions are included on purpose: the examples must not count them.

-- Daily partials: one cell on two partitions, a superseded version, a zero cell.
INSERT INTO touchline.campaign_daily_metrics
    (account_id, campaign_id, advertisement_id, metric_date, partition, version, impressions, clicks, reach, engagements, sessions, conversions, revenue, cost, reported_impressions, reported_clicks, written_at)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'spring', 'ad1', '2026-03-01', 0, 4294967297, 100, 10, 40, 5, 8, 2, 50, 20, 0, 0, '2026-03-01 12:00:00'),
    ('00000000-0000-0000-0000-0000000000a1', 'spring', 'ad1', '2026-03-01', 1, 4294967297, 80, 8, 30, 4, 6, 1, 30, 10, 0, 0, '2026-03-01 12:00:00'),
    ('00000000-0000-0000-0000-0000000000a1', 'spring', 'ad2', '2026-03-01', 0, 4294967297, 50, 0, 25, 0, 0, 0, 0, 5, 0, 0, '2026-03-01 12:00:00'),
    ('00000000-0000-0000-0000-0000000000a1', 'spring', 'ad1', '2026-03-02', 0, 4294967298, 200, 20, 100, 0, 12, 4, 100, 40, 210, 19, '2026-03-02 12:00:00'),
    ('00000000-0000-0000-0000-0000000000a1', 'summer', '', '2026-03-02', 1, 4294967298, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2026-03-02 12:00:00'),
    ('00000000-0000-0000-0000-0000000000b2', 'spring', 'ad1', '2026-03-01', 0, 4294967297, 999, 99, 99, 0, 0, 9, 999, 99, 0, 0, '2026-03-01 12:00:00');
-- A later flush of partition 0 (supersedes the first row above), and the same flush again.
INSERT INTO touchline.campaign_daily_metrics
    (account_id, campaign_id, advertisement_id, metric_date, partition, version, impressions, clicks, reach, engagements, sessions, conversions, revenue, cost, reported_impressions, reported_clicks, written_at)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'spring', 'ad1', '2026-03-01', 0, 4294967299, 120, 12, 50, 6, 9, 3, 90, 30, 0, 0, '2026-03-01 13:00:00');
INSERT INTO touchline.campaign_daily_metrics
    (account_id, campaign_id, advertisement_id, metric_date, partition, version, impressions, clicks, reach, engagements, sessions, conversions, revenue, cost, reported_impressions, reported_clicks, written_at)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'spring', 'ad1', '2026-03-01', 0, 4294967299, 120, 12, 50, 6, 9, 3, 90, 30, 0, 0, '2026-03-01 13:00:00');

-- Attribution rows. c1: last_touch moved from t1 (spring) to t2 (summer) in a newer version.
-- markov by channel weights paid_social 1, email 3: t1 gets 1/4 of c1, t2 3/4; o2's one
-- touch all of it.
INSERT INTO touchline.attributions
    (account_id, conversion_id, touchpoint_id, attribution_model, version, conversion_date, conversion_time, conversion_time_us, campaign_id, advertisement_id, customer_id, touchpoint_type, touchpoint_timestamp, touchpoint_timestamp_us, channel_id, conversion_value, currency, weight, attributed_revenue)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't1', 'last_touch', 4294967297, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'spring', 'ad1', 'cu1', 'click', '2026-03-01 09:00:00', 1772355600000000, 'paid_social', 100, 'EUR', 1, 100),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't1', 'first_touch', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'spring', 'ad1', 'cu1', 'click', '2026-03-01 09:00:00', 1772355600000000, 'paid_social', 100, 'EUR', 1, 100),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't1', 'linear', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'spring', 'ad1', 'cu1', 'click', '2026-03-01 09:00:00', 1772355600000000, 'paid_social', 100, 'EUR', 0.5, 50),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't2', 'linear', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'summer', NULL, 'cu1', 'click', '2026-03-01 14:00:00', 1772373600000000, 'email', 100, 'EUR', 0.5, 50),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't2', 'last_touch', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'summer', NULL, 'cu1', 'click', '2026-03-01 14:00:00', 1772373600000000, 'email', 100, 'EUR', 1, 100),
    ('00000000-0000-0000-0000-0000000000a1', 'order:purchase:o2', 't3', 'first_touch', 8589934593, '2026-03-02', '2026-03-02 10:00:00', 1772445600000000, 'spring', 'ad1', 'a9', 'impression', '2026-03-02 09:00:00', 1772442000000000, 'display', 60, 'EUR', 1, 60),
    ('00000000-0000-0000-0000-0000000000a1', 'order:purchase:o2', 't3', 'last_touch', 8589934593, '2026-03-02', '2026-03-02 10:00:00', 1772445600000000, 'spring', 'ad1', 'a9', 'impression', '2026-03-02 09:00:00', 1772442000000000, 'display', 60, 'EUR', 1, 60),
    ('00000000-0000-0000-0000-0000000000a1', 'order:purchase:o2', 't3', 'linear', 8589934593, '2026-03-02', '2026-03-02 10:00:00', 1772445600000000, 'spring', 'ad1', 'a9', 'impression', '2026-03-02 09:00:00', 1772442000000000, 'display', 60, 'EUR', 1, 60),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't1', 'markov', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'spring', 'ad1', 'cu1', 'click', '2026-03-01 09:00:00', 1772355600000000, 'paid_social', 100, 'EUR', 0.25, 25),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't2', 'markov', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'summer', NULL, 'cu1', 'click', '2026-03-01 14:00:00', 1772373600000000, 'email', 100, 'EUR', 0.75, 75),
    ('00000000-0000-0000-0000-0000000000a1', 'order:purchase:o2', 't3', 'markov', 8589934593, '2026-03-02', '2026-03-02 10:00:00', 1772445600000000, 'spring', 'ad1', 'a9', 'impression', '2026-03-02 09:00:00', 1772442000000000, 'display', 60, 'EUR', 1, 60),
    ('00000000-0000-0000-0000-0000000000a1', 'record:c3', '(direct)', 'last_touch', 8589934593, '2026-03-02', '2026-03-02 11:00:00', 1772449200000000, NULL, NULL, 'a7', 'direct', NULL, NULL, 'direct', 0, NULL, 1, 0),
    ('00000000-0000-0000-0000-0000000000b2', 'record:x1', 'tx', 'last_touch', 4294967297, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'spring', 'ad1', 'zz', 'click', '2026-03-01 09:00:00', 1772355600000000, 'paid_social', 500, 'EUR', 1, 500);
-- The first_touch row of c1 again (a repeated flush).
INSERT INTO touchline.attributions
    (account_id, conversion_id, touchpoint_id, attribution_model, version, conversion_date, conversion_time, conversion_time_us, campaign_id, advertisement_id, customer_id, touchpoint_type, touchpoint_timestamp, touchpoint_timestamp_us, channel_id, conversion_value, currency, weight, attributed_revenue)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'record:c1', 't1', 'first_touch', 4294967298, '2026-03-01', '2026-03-01 15:00:00', 1772377200000000, 'spring', 'ad1', 'cu1', 'click', '2026-03-01 09:00:00', 1772355600000000, 'paid_social', 100, 'EUR', 1, 100);

-- Raw events for the funnel: p1 views, adds and orders; p2 views and adds; cu3 views and
-- orders without adding; p4 only adds; p5 adds 25 hours after viewing (outside the window).
INSERT INTO touchline.events (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id, event_name, payload)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'e1', '2026-03-01', '2026-03-01 10:00:00', '2026-03-01 10:00:01', 'p1', '', 'product_viewed', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e2', '2026-03-01', '2026-03-01 10:05:00', '2026-03-01 10:05:01', 'p1', '', 'product_added', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e3', '2026-03-01', '2026-03-01 10:10:00', '2026-03-01 10:10:01', 'p1', '', 'order_completed', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e4', '2026-03-01', '2026-03-01 11:00:00', '2026-03-01 11:00:01', 'p2', '', 'product_viewed', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e5', '2026-03-01', '2026-03-01 11:01:00', '2026-03-01 11:01:01', 'p2', '', 'product_added', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e6', '2026-03-01', '2026-03-01 12:00:00', '2026-03-01 12:00:01', 'a3', 'cu3', 'product_viewed', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e7', '2026-03-01', '2026-03-01 12:30:00', '2026-03-01 12:30:01', 'a3', 'cu3', 'order_completed', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e8', '2026-03-01', '2026-03-01 13:00:00', '2026-03-01 13:00:01', 'p4', '', 'product_added', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e9', '2026-03-01', '2026-03-01 08:00:00', '2026-03-01 08:00:01', 'p5', '', 'product_viewed', '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'e10', '2026-03-02', '2026-03-02 09:00:00', '2026-03-02 09:00:01', 'p5', '', 'product_added', '{}'),
    ('00000000-0000-0000-0000-0000000000b2', 'e11', '2026-03-01', '2026-03-01 10:00:00', '2026-03-01 10:00:01', 'p1', '', 'product_viewed', '{}');
INSERT INTO touchline.events (account_id, record_id, date, timestamp, received_at, anonymous_id, customer_id, event_name, payload)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'e1', '2026-03-01', '2026-03-01 10:00:00', '2026-03-01 10:00:01', 'p1', '', 'product_viewed', '{}');

-- Short-link clicks: a bot, a repeated click of the same device, a copy of k1.
INSERT INTO touchline.link_clicks (account_id, record_id, date, timestamp, received_at, short_code, device_id, bot, is_unique, payload)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'k1', '2026-03-01', '2026-03-01 09:00:00', '2026-03-01 09:00:00', 'spring1', 'd1', 0, NULL, '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'k2', '2026-03-01', '2026-03-01 09:10:00', '2026-03-01 09:10:00', 'spring1', 'd2', 0, NULL, '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'k3', '2026-03-01', '2026-03-01 09:20:00', '2026-03-01 09:20:00', 'spring1', '', 1, NULL, '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'k4', '2026-03-01', '2026-03-01 09:30:00', '2026-03-01 09:30:00', 'summer1', 'd1', 0, 1, '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'k5', '2026-03-02', '2026-03-02 09:00:00', '2026-03-02 09:00:00', 'spring1', 'd1', 0, 1, '{}'),
    ('00000000-0000-0000-0000-0000000000a1', 'k6', '2026-03-02', '2026-03-02 09:05:00', '2026-03-02 09:05:00', 'spring1', 'd1', 0, 0, '{}'),
    ('00000000-0000-0000-0000-0000000000b2', 'k7', '2026-03-01', '2026-03-01 09:00:00', '2026-03-01 09:00:00', 'spring1', 'd9', 0, 1, '{}');
INSERT INTO touchline.link_clicks (account_id, record_id, date, timestamp, received_at, short_code, device_id, bot, is_unique, payload)
VALUES
    ('00000000-0000-0000-0000-0000000000a1', 'k1', '2026-03-01', '2026-03-01 09:00:00', '2026-03-01 09:00:00', 'spring1', 'd1', 0, NULL, '{}');
