DROP INDEX subscriptions_by_customer;
