-- The W3C traceparent of the span that wrote each outbox message (issue 16,
-- tracing): the relay puts it into the AMQP message's headers, so the job or
-- webhook delivery continues the trace that caused it. NULL: written outside
-- any span.
ALTER TABLE outbox_events ADD COLUMN trace_context text;
