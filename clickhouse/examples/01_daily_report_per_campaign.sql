-- Daily report per campaign: one account, one date range, ads summed per campaign.
-- Ratios are NULL when their denominator is 0. Reach is summed over the campaign's ads
-- (a person reached by two ads of a campaign counts twice; per-ad rows are exact).
SELECT
    metric_date,
    campaign_id,
    impressions,
    clicks,
    reach,
    round(impressions / nullIf(reach, 0), 4) AS frequency,
    conversions,
    revenue,
    cost,
    round(clicks / nullIf(impressions, 0), 4) AS ctr,
    round(toFloat64(cost) / nullIf(clicks, 0), 4) AS cpc,
    round(toFloat64(cost) * 1000 / nullIf(impressions, 0), 4) AS cpm,
    round(toFloat64(cost) / nullIf(toFloat64(conversions), 0), 4) AS cpa,
    round(toFloat64(revenue) / nullIf(toFloat64(cost), 0), 4) AS roas
FROM
(
    SELECT
        metric_date,
        campaign_id,
        sum(r.impressions) AS impressions,
        sum(r.clicks) AS clicks,
        sum(r.reach) AS reach,
        sum(r.conversions) AS conversions,
        sum(r.revenue) AS revenue,
        sum(r.cost) AS cost
    FROM touchline.campaign_daily_report AS r
    WHERE account_id = toUUID('00000000-0000-0000-0000-0000000000a1')
      AND metric_date BETWEEN toDate('2026-03-01') AND toDate('2026-03-07')
    GROUP BY metric_date, campaign_id
)
ORDER BY metric_date, campaign_id;
