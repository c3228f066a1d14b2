-- The user's own data: the score history read newest first with a cursor,
-- the export walked in pages, and erasure in bounded batches that keeps
-- only what idempotency needs, with nothing that names the user.

-- The history and the export walk a user's lines by id.
CREATE INDEX friendship_score_history_user_id_idx ON friendship_score_history (user_id, id);
CREATE INDEX friendship_level_transitions_user_id_idx ON friendship_level_transitions (user_id, id);
-- The export and the erasure walk a user's events by processing_id.
CREATE INDEX conversation_events_user_processing_idx ON conversation_events (user_id, processing_id);

-- The idempotency key of an erased user's conversation: SHA-256 of the user
-- id, a zero byte and the conversation id. It names neither, and a resend of
-- the same conversation by the same user finds it.
CREATE FUNCTION conversation_key(p_user_id TEXT, p_conversation_id TEXT)
RETURNS BYTEA
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT sha256(convert_to(p_user_id, 'UTF8') || '\x00'::bytea
                  || convert_to(p_conversation_id, 'UTF8'))
$fn$;

-- What idempotency keeps of an erased user's conversations (their events and
-- their pruned keys): a resend is answered as the repeat it is (its
-- processing_id; the same payload, by digest, or a conflict) and never
-- recorded, scored or counted again.
CREATE TABLE erased_conversations (
    conversation_key BYTEA PRIMARY KEY CHECK (octet_length(conversation_key) = 32),
    processing_id UUID NOT NULL,
    payload_digest BYTEA NOT NULL CHECK (octet_length(payload_digest) = 32)
);

-- Erasure and the record of a user's events exclude each other per user
-- (an advisory lock on the user id's hash in this namespace: exclusive for a
-- batch of the erasure, shared for a record), so a resend that races an
-- erasure either is recorded before the batch that erases it, or finds its
-- key after: it never slips between the delete and the key.
CREATE FUNCTION user_lock_namespace() RETURNS INT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$ SELECT 1701999173 $fn$;

-- record_events (migration event_trace_id) with the erased keys and
-- the shared lock of each distinct user, taken in byte order (so two
-- records never wait on each other in a cycle) before the insert's snapshot.
CREATE OR REPLACE FUNCTION record_events(p_events TEXT)
RETURNS SETOF UUID
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(user_lock_namespace(), hashtext(u.user_id))
    FROM (SELECT DISTINCT e.user_id
          FROM jsonb_to_recordset(p_events::jsonb) AS e(user_id text)) AS u
    ORDER BY u.user_id COLLATE "C";
    RETURN QUERY
    INSERT INTO conversation_events (processing_id, conversation_id, user_id, payload, trace_id, accepted_at)
    SELECT e.processing_id, e.conversation_id, e.user_id, e.payload, e.trace_id, clock_timestamp()
    FROM jsonb_to_recordset(p_events::jsonb)
        AS e(processing_id uuid, conversation_id text, user_id text, payload jsonb, trace_id text)
    WHERE NOT EXISTS (
        SELECT 1 FROM pruned_conversations p
        WHERE p.user_id = e.user_id AND p.conversation_id = e.conversation_id OFFSET 0)
      AND NOT EXISTS (
        SELECT 1 FROM erased_conversations x
        WHERE x.conversation_key = conversation_key(e.user_id, e.conversation_id) OFFSET 0)
    ON CONFLICT (user_id, conversation_id) DO NOTHING
    RETURNING conversation_events.processing_id;
END
$fn$;

-- One batch of a user's erasure, in one transaction: at most p_batch rows in
-- all, in this order: events (their keys kept in erased_conversations),
-- pruned keys (moved there too), history lines, level transitions (the
-- outbox, relayed or not), rejected messages whose payload holds the user
-- id as a JSON string, then, once nothing else is left, the status row.
-- Answers whether nothing of the user is left. Each batch holds the user's
-- lock and the rows it deletes only for itself, so an erasure of any size
-- never holds a long lock; a scorer applying one of the user's events
-- finishes first (its rows are locked), and what it wrote is erased by a
-- later batch. Running it again after the end changes nothing.
CREATE FUNCTION erase_user(p_user_id TEXT, p_batch INT)
RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    budget INT := p_batch;
    n INT;
BEGIN
    PERFORM pg_advisory_xact_lock(user_lock_namespace(), hashtext(p_user_id));

    WITH gone AS (
        DELETE FROM conversation_events AS e
        WHERE e.processing_id IN (
            SELECT processing_id FROM conversation_events
            WHERE user_id = p_user_id
            ORDER BY processing_id
            LIMIT budget)
        RETURNING e.conversation_id, e.processing_id, e.payload
    ), kept AS (
        INSERT INTO erased_conversations (conversation_key, processing_id, payload_digest)
        SELECT conversation_key(p_user_id, conversation_id), processing_id,
               sha256(convert_to(payload::text, 'UTF8'))
        FROM gone
        ON CONFLICT (conversation_key) DO NOTHING
    )
    SELECT count(*) INTO n FROM gone;
    budget := budget - n;
    IF budget <= 0 THEN RETURN false; END IF;

    WITH gone AS (
        DELETE FROM pruned_conversations AS p
        WHERE (p.user_id, p.conversation_id) IN (
            SELECT user_id, conversation_id FROM pruned_conversations
            WHERE user_id = p_user_id
            LIMIT budget)
        RETURNING p.conversation_id, p.processing_id, p.payload_digest
    ), kept AS (
        -- A pruned key wins over an event's: the pruned key is the original.
        INSERT INTO erased_conversations (conversation_key, processing_id, payload_digest)
        SELECT conversation_key(p_user_id, conversation_id), processing_id, payload_digest
        FROM gone
        ON CONFLICT (conversation_key) DO UPDATE
            SET processing_id = EXCLUDED.processing_id, payload_digest = EXCLUDED.payload_digest
    )
    SELECT count(*) INTO n FROM gone;
    budget := budget - n;
    IF budget <= 0 THEN RETURN false; END IF;

    DELETE FROM friendship_score_history
    WHERE id IN (SELECT id FROM friendship_score_history
                 WHERE user_id = p_user_id ORDER BY id LIMIT budget);
    GET DIAGNOSTICS n = ROW_COUNT;
    budget := budget - n;
    IF budget <= 0 THEN RETURN false; END IF;

    DELETE FROM friendship_level_transitions
    WHERE id IN (SELECT id FROM friendship_level_transitions
                 WHERE user_id = p_user_id ORDER BY id LIMIT budget);
    GET DIAGNOSTICS n = ROW_COUNT;
    budget := budget - n;
    IF budget <= 0 THEN RETURN false; END IF;

    DELETE FROM rejected_messages
    WHERE id IN (SELECT id FROM rejected_messages
                 WHERE strpos(payload_head, to_jsonb(p_user_id)::text) > 0
                 ORDER BY id LIMIT budget);
    GET DIAGNOSTICS n = ROW_COUNT;
    budget := budget - n;
    IF budget <= 0 THEN RETURN false; END IF;

    DELETE FROM friendship_status WHERE user_id = p_user_id;
    RETURN true;
END
$fn$;
