-- Attribution by model: credited conversions (the sum of weights) and attributed revenue per
-- model and campaign, for conversions in a date range. attributions_current holds only the
-- latest version of each conversion's attribution, so repeated flushes do not count twice.
SELECT
    attribution_model,
    ifNull(campaign_id, '(none)') AS campaign,
    round(sum(weight), 4) AS conversions,
    sum(attributed_revenue) AS revenue
FROM touchline.attributions_current
WHERE account_id = toUUID('00000000-0000-0000-0000-0000000000a1')
  AND conversion_date BETWEEN toDate('2026-03-01') AND toDate('2026-03-07')
GROUP BY attribution_model, campaign
ORDER BY attribution_model, campaign;
