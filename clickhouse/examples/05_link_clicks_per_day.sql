-- Short-link clicks per day and code: all clicks, human clicks (bots and link previews
-- excluded), unique human clicks (not a repeat of the same device within the hour) and
-- distinct devices.
SELECT
    date,
    short_code,
    count() AS clicks,
    countIf(bot = 0) AS human_clicks,
    countIf(bot = 0 AND ifNull(is_unique, 1) = 1) AS unique_clicks,
    uniqExactIf(device_id, bot = 0 AND device_id != '') AS devices
FROM touchline.link_clicks FINAL
WHERE account_id = toUUID('00000000-0000-0000-0000-0000000000a1')
  AND date BETWEEN toDate('2026-03-01') AND toDate('2026-03-07')
GROUP BY date, short_code
ORDER BY date, short_code;
