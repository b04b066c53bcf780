-- The entitlement read and the purchase path look a customer's subscriptions up by
-- customer: the partial unique indexes cover only some statuses, so without this a
-- lookup over "not ended" statuses scanned the whole table.
CREATE INDEX subscriptions_by_customer ON subscriptions (customer_id);
