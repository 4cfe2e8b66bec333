-- requires: 22.2
--
-- Insert-time deduplication for the raw tables. The sink sends each raw insert with an
-- `insert_deduplication_token` derived from the record ids it carries (servers from 22.2),
-- and a non-replicated MergeTree only remembers tokens when it has a deduplication window:
-- a block repeated after a crash is then dropped at insert instead of waiting for a merge.
-- (ReplacingMergeTree still collapses anything that gets through, as on older servers.)

ALTER TABLE touchline.events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE touchline.sessions MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE touchline.touchpoints MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE touchline.link_clicks MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE touchline.conversions MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE touchline.spend MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE touchline.identities MODIFY SETTING non_replicated_deduplication_window = 1000;
