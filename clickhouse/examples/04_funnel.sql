-- A funnel from raw events: people (customer id when known, else anonymous id) who viewed a
-- product, then added it to the cart, then completed an order, each step within 24 hours of
-- the first. FINAL collapses copies of a record inserted twice.
SELECT
    countIf(level >= 1) AS viewed_product,
    countIf(level >= 2) AS added_to_cart,
    countIf(level >= 3) AS ordered
FROM
(
    SELECT
        if(customer_id != '', customer_id, anonymous_id) AS person,
        windowFunnel(86400)(timestamp, event_name = 'product_viewed', event_name = 'product_added', event_name = 'order_completed') AS level
    FROM touchline.events FINAL
    WHERE account_id = toUUID('00000000-0000-0000-0000-0000000000a1')
      AND date BETWEEN toDate('2026-03-01') AND toDate('2026-03-07')
    GROUP BY person
);
