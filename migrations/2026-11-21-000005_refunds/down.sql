DROP TABLE refunds;
DROP FUNCTION refunds_within_capture();
