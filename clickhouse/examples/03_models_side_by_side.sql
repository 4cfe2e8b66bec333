-- Attribution models side by side per campaign (credited conversions under each model;
-- markov and shapley split each conversion by the account's channel weights), from the
-- attribution_model_comparison view.
SELECT
    campaign_id,
    round(sum(first_touch_conversions), 4) AS first_touch,
    round(sum(last_touch_conversions), 4) AS last_touch,
    round(sum(last_non_direct_conversions), 4) AS last_non_direct,
    round(sum(linear_conversions), 4) AS linear,
    round(sum(time_decay_conversions), 4) AS time_decay,
    round(sum(position_based_conversions), 4) AS position_based,
    round(sum(markov_conversions), 4) AS markov,
    round(sum(shapley_conversions), 4) AS shapley,
    sum(last_touch_revenue) AS last_touch_revenue,
    sum(linear_revenue) AS linear_revenue
FROM touchline.attribution_model_comparison
WHERE account_id = toUUID('00000000-0000-0000-0000-0000000000a1')
  AND conversion_date BETWEEN toDate('2026-03-01') AND toDate('2026-03-07')
GROUP BY campaign_id
ORDER BY campaign_id;
