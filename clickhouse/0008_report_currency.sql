-- The daily campaign report (0003_reports.sql) with the currency its revenue and cost are in:
-- the account's reporting currency, as each partition's latest partial carries it
-- (0007_metric_currency.sql; '' for rows written before it). Every partition of a cell
-- carries the same currency, so the largest is that one ('' loses to any code).
DROP TABLE IF EXISTS touchline.campaign_daily_report;

CREATE VIEW touchline.campaign_daily_report AS
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
    rep_clk AS reported_clicks,
    cur AS currency
FROM
(
    SELECT
        account_id, campaign_id, advertisement_id, metric_date,
        sum(p_imp) AS imp, sum(p_clk) AS clk, sum(p_rch) AS rch, sum(p_eng) AS eng, sum(p_ses) AS ses,
        sum(p_conv) AS conv, sum(p_rev) AS rev, sum(p_cst) AS cst, sum(p_rep_imp) AS rep_imp, sum(p_rep_clk) AS rep_clk,
        max(p_cur) AS cur
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
            argMax(reported_clicks, version) AS p_rep_clk,
            argMax(currency, version) AS p_cur
        FROM touchline.campaign_daily_metrics
        GROUP BY account_id, campaign_id, advertisement_id, metric_date, partition
    )
    GROUP BY account_id, campaign_id, advertisement_id, metric_date
);
