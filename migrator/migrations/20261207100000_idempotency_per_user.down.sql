-- Back to a conversation_id unique across all users. Refused (and nothing
-- changed) while two users share a conversation_id, in the events or in the
-- pruned keys: going down would have to drop one of them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM conversation_events GROUP BY conversation_id HAVING count(*) > 1)
       OR EXISTS (SELECT 1 FROM pruned_conversations GROUP BY conversation_id HAVING count(*) > 1)
    THEN
        RAISE EXCEPTION 'two users share a conversation_id: it cannot be unique across users again';
    END IF;
END
$$;

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
        SELECT 1 FROM pruned_conversations p WHERE p.conversation_id = e.conversation_id OFFSET 0)
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING conversation_events.processing_id;
END
$fn$;

ALTER TABLE pruned_conversations
    DROP CONSTRAINT pruned_conversations_pkey;
ALTER TABLE pruned_conversations
    ADD CONSTRAINT pruned_conversations_pkey PRIMARY KEY (conversation_id);

ALTER TABLE conversation_events
    ADD CONSTRAINT conversation_events_conversation_id_key UNIQUE (conversation_id);
ALTER TABLE conversation_events
    DROP CONSTRAINT conversation_events_user_conversation_key;
