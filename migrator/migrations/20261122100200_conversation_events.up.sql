-- The durable record of every conversation-end event. Redis only rings the doorbell;
-- the scorer claims due rows from here, so nothing depends on a message arriving.
-- conversation_id is unique across all users: a resent event finds its first record.
CREATE TABLE conversation_events (
    processing_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id TEXT NOT NULL UNIQUE CHECK (char_length(conversation_id) BETWEEN 1 AND 128),
    user_id TEXT NOT NULL CHECK (char_length(user_id) BETWEEN 3 AND 128),
    -- The normalised ConversationEnd metadata (domain serialisation, defaults written out).
    payload JSONB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processed', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error TEXT NULL,
    accepted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at TIMESTAMPTZ NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What the scorer scans: pending events that are due.
CREATE INDEX conversation_events_due_idx ON conversation_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX conversation_events_status_idx ON conversation_events (status);
CREATE INDEX conversation_events_user_idx ON conversation_events (user_id);
