-- Retention: processed events older than `event_retention_days` are deleted,
-- in bounded batches, by scorer wake-ups that found nothing to score. What
-- idempotency needs of a deleted event stays here, compact: a conversation_id
-- resent after its event was pruned is still a repeat (the same user and
-- payload answer the original processing_id) or a conflict, and is never
-- scored again.
CREATE TABLE pruned_conversations (
    conversation_id TEXT PRIMARY KEY,
    processing_id UUID NOT NULL,
    user_id TEXT NOT NULL,
    -- sha256 of the payload's jsonb text (payload::text): equal payloads,
    -- normalised by the domain and by jsonb, have equal digests.
    payload_digest BYTEA NOT NULL CHECK (octet_length(payload_digest) = 32)
);

-- What the pruning scans: processed events, oldest first, without reading
-- the rest of the table.
CREATE INDEX conversation_events_processed_idx
    ON conversation_events (processed_at) WHERE status = 'processed';

-- The score history explains every score and is kept: it must not hold on to
-- the events it names (their processing_id stays in pruned_conversations).
ALTER TABLE friendship_score_history
    DROP CONSTRAINT friendship_score_history_processing_id_fkey;
