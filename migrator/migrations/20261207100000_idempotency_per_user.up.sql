-- Idempotency scoped to the user: a conversation_id is unique per user, not
-- across all users. Another user's conversation of the same id is another
-- conversation: it can no longer squat an id a user will use (or used: the
-- pruned keys count too). Within one user nothing changes: a resend with the
-- same payload is a repeat, another payload a conflict.
--
-- No key is lost: every existing key is unique by conversation_id alone, so
-- it is unique by (user_id, conversation_id) as well; both tables keep every
-- row and only their unique keys widen. Building the new unique index locks
-- conversation_events against writes while it runs (seconds per million
-- events); the constraints swap in one transaction, so no insert ever sees
-- the table without one.

ALTER TABLE conversation_events
    ADD CONSTRAINT conversation_events_user_conversation_key UNIQUE (user_id, conversation_id);
ALTER TABLE conversation_events
    DROP CONSTRAINT conversation_events_conversation_id_key;

ALTER TABLE pruned_conversations
    DROP CONSTRAINT pruned_conversations_pkey;
ALTER TABLE pruned_conversations
    ADD CONSTRAINT pruned_conversations_pkey PRIMARY KEY (user_id, conversation_id);

-- record_events (migration planned_once), keyed by the user's conversation.
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
