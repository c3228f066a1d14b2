-- The W3C trace id of the request that posted an event (its `traceparent`),
-- so that the scorer's log lines of the event carry it. Null for events
-- posted without one and for events that arrived over Redis.
ALTER TABLE conversation_events
    ADD COLUMN trace_id TEXT
    CONSTRAINT conversation_events_trace_id_format CHECK (trace_id ~ '^[0-9a-f]{32}$');

-- record_events (migrations planned_once, idempotency_per_user), with each
-- event's optional trace_id.
CREATE OR REPLACE FUNCTION record_events(p_events TEXT)
RETURNS SETOF UUID
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RETURN QUERY
    INSERT INTO conversation_events (processing_id, conversation_id, user_id, payload, trace_id, accepted_at)
    SELECT e.processing_id, e.conversation_id, e.user_id, e.payload, e.trace_id, clock_timestamp()
    FROM jsonb_to_recordset(p_events::jsonb)
        AS e(processing_id uuid, conversation_id text, user_id text, payload jsonb, trace_id text)
    WHERE NOT EXISTS (
        SELECT 1 FROM pruned_conversations p
        WHERE p.user_id = e.user_id AND p.conversation_id = e.conversation_id OFFSET 0)
    ON CONFLICT (user_id, conversation_id) DO NOTHING
    RETURNING conversation_events.processing_id;
END
$fn$;
