DROP FUNCTION erase_user(TEXT, INT);

-- record_events as migration event_trace_id left it.
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

DROP FUNCTION user_lock_namespace();
DROP TABLE erased_conversations;
DROP FUNCTION conversation_key(TEXT, TEXT);
DROP INDEX conversation_events_user_processing_idx;
DROP INDEX friendship_level_transitions_user_id_idx;
DROP INDEX friendship_score_history_user_id_idx;
