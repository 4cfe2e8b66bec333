-- requires: 20.3
--
-- Retention for raw entities (servers with table TTL): parts whose rows are all older than
-- 25 months are dropped by background merges. Results (attributions, daily metrics) are
-- kept. To keep raw data longer, add a later numbered extra with another MODIFY TTL; do not
-- edit this file once applied (`touchline migrate` refuses a changed applied file).
-- Skipped on older servers (no TTL there); applied by the next `touchline migrate` after an
-- upgrade.

ALTER TABLE touchline.events MODIFY TTL date + toIntervalMonth(25);
ALTER TABLE touchline.sessions MODIFY TTL date + toIntervalMonth(25);
ALTER TABLE touchline.touchpoints MODIFY TTL date + toIntervalMonth(25);
ALTER TABLE touchline.link_clicks MODIFY TTL date + toIntervalMonth(25);
ALTER TABLE touchline.conversions MODIFY TTL date + toIntervalMonth(25);
ALTER TABLE touchline.spend MODIFY TTL date + toIntervalMonth(25);
ALTER TABLE touchline.identities MODIFY TTL date + toIntervalMonth(25);
