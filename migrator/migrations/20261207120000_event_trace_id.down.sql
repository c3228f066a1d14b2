-- record_events as migration idempotency_per_user left it, then the column.
CREATE OR REPLACE FUNCTION record_events(p_events TEXT)
RETURNS SETOF UUID
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RETURN QUERY
    INSERT INTO conversation_events (processing_id, conversation_id, user_id, payload, accepted_at)
    SELECT e.processing_id, e.conversation_id, e.user_id, e.payload, clock_timestamp()
    FROM jsonb_to_recordset(p_events::jsonb)
        AS e(processing_id uuid, conversation_id text, user_id text, payload jsonb)
    WHERE NOT EXISTS (
        SELECT 1 FROM pruned_conversations p
        WHERE p.user_id = e.user_id AND p.conversation_id = e.conversation_id OFFSET 0)
    ON CONFLICT (user_id, conversation_id) DO NOTHING
    RETURNING conversation_events.processing_id;
END
$fn$;

ALTER TABLE conversation_events DROP COLUMN trace_id;
