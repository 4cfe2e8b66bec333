-- Views for BI tools. They pick the highest version explicitly, so they are exact before
-- and after background merges.

-- The daily campaign report: per account, campaign, advertisement ('' = campaign level) and
-- day, the sum over aggregator partitions of each partition's latest partial, with the
-- derived ratios. A ratio is NULL when its denominator is 0:
--   frequency = impressions / reach      ctr  = clicks / impressions
--   cpc = cost / clicks                  cpm  = cost * 1000 / impressions
--   cpa = cost / conversions             roas = revenue / cost
-- cpc, cpm and cpa are rounded to 6 decimals (as the Postgres fact table stores them).
CREATE VIEW IF NOT EXISTS touchline.campaign_daily_report AS
SELECT
    account_id,
    campaign_id,
    advertisement_id,
    metric_date,
    imp AS impressions,
    clk AS clicks,
    rch AS reach,
    imp / nullIf(rch, 0) AS frequency,
    eng AS engagements,
    ses AS sessions,
    conv AS conversions,
    rev AS revenue,
    cst AS cost,
    clk / nullIf(imp, 0) AS ctr,
    round(toFloat64(cst) / nullIf(clk, 0), 6) AS cpc,
    round(toFloat64(cst) * 1000 / nullIf(imp, 0), 6) AS cpm,
    round(toFloat64(cst) / nullIf(toFloat64(conv), 0), 6) AS cpa,
    toFloat64(rev) / nullIf(toFloat64(cst), 0) AS roas,
    rep_imp AS reported_impressions,
    rep_clk AS reported_clicks
FROM
(
    SELECT
        account_id, campaign_id, advertisement_id, metric_date,
        sum(p_imp) AS imp, sum(p_clk) AS clk, sum(p_rch) AS rch, sum(p_eng) AS eng, sum(p_ses) AS ses,
        sum(p_conv) AS conv, sum(p_rev) AS rev, sum(p_cst) AS cst, sum(p_rep_imp) AS rep_imp, sum(p_rep_clk) AS rep_clk
    FROM
    (
        SELECT
            account_id, campaign_id, advertisement_id, metric_date, partition,
            argMax(impressions, version) AS p_imp,
            argMax(clicks, version) AS p_clk,
            argMax(reach, version) AS p_rch,
            argMax(engagements, version) AS p_eng,
            argMax(sessions, version) AS p_ses,
            argMax(conversions, version) AS p_conv,
            argMax(revenue, version) AS p_rev,
            argMax(cost, version) AS p_cst,
            argMax(reported_impressions, version) AS p_rep_imp,
            argMax(reported_clicks, version) AS p_rep_clk
        FROM touchline.campaign_daily_metrics
        GROUP BY account_id, campaign_id, advertisement_id, metric_date, partition
    )
    GROUP BY account_id, campaign_id, advertisement_id, metric_date
);

-- The current attribution rows: for each (account, conversion, model), the rows of the
-- highest version written (older versions may credit touchpoints the newer one does not).
-- FINAL collapses copies of the same row written by a repeated flush.
CREATE VIEW IF NOT EXISTS touchline.attributions_current AS
SELECT *
FROM touchline.attributions FINAL
WHERE (account_id, conversion_id, attribution_model, version) IN
(
    SELECT account_id, conversion_id, attribution_model, max(version)
    FROM touchline.attributions
    GROUP BY account_id, conversion_id, attribution_model
);

-- Attribution models side by side per campaign: credited conversions (sum of weights) and
-- attributed revenue under each model, by the day of the conversion. Touches without a
-- campaign (direct, UTM-only without a campaign) are grouped under campaign_id ''.
CREATE VIEW IF NOT EXISTS touchline.attribution_model_comparison AS
SELECT
    account_id,
    ifNull(campaign_id, '') AS campaign_id,
    conversion_date,
    sumIf(weight, attribution_model = 'first_touch') AS first_touch_conversions,
    sumIf(attributed_revenue, attribution_model = 'first_touch') AS first_touch_revenue,
    sumIf(weight, attribution_model = 'last_touch') AS last_touch_conversions,
    sumIf(attributed_revenue, attribution_model = 'last_touch') AS last_touch_revenue,
    sumIf(weight, attribution_model = 'last_non_direct') AS last_non_direct_conversions,
    sumIf(attributed_revenue, attribution_model = 'last_non_direct') AS last_non_direct_revenue,
    sumIf(weight, attribution_model = 'linear') AS linear_conversions,
    sumIf(attributed_revenue, attribution_model = 'linear') AS linear_revenue,
    sumIf(weight, attribution_model = 'time_decay') AS time_decay_conversions,
    sumIf(attributed_revenue, attribution_model = 'time_decay') AS time_decay_revenue,
    sumIf(weight, attribution_model = 'position_based') AS position_based_conversions,
    sumIf(attributed_revenue, attribution_model = 'position_based') AS position_based_revenue,
    sumIf(weight, attribution_model = 'markov') AS markov_conversions,
    sumIf(attributed_revenue, attribution_model = 'markov') AS markov_revenue,
    sumIf(weight, attribution_model = 'shapley') AS shapley_conversions,
    sumIf(attributed_revenue, attribution_model = 'shapley') AS shapley_revenue
FROM touchline.attributions_current
GROUP BY account_id, campaign_id, conversion_date;
