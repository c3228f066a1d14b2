-- Why a score is what it is: one line per applied change, and every level change as a fact.
CREATE TABLE friendship_score_history (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    cause TEXT NOT NULL CHECK (cause IN ('conversation', 'service_update')),
    processing_id UUID NULL REFERENCES conversation_events (processing_id),
    -- The change as requested; score_after - score_before differs when the floor at 0 applied.
    score_change NUMERIC NOT NULL,
    score_before NUMERIC NOT NULL,
    score_after NUMERIC NOT NULL CHECK (score_after >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One history line per event: a second attempt to apply the same event fails here,
-- which is what makes the effect exactly-once.
CREATE UNIQUE INDEX friendship_score_history_processing_id_key
    ON friendship_score_history (processing_id) WHERE processing_id IS NOT NULL;
CREATE INDEX friendship_score_history_user_created_idx ON friendship_score_history (user_id, created_at);

CREATE TABLE friendship_level_transitions (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    from_level TEXT NOT NULL CHECK (from_level IN ('stranger', 'acquaintance', 'friend')),
    to_level TEXT NOT NULL CHECK (to_level IN ('stranger', 'acquaintance', 'friend')),
    score NUMERIC NOT NULL,
    cause TEXT NOT NULL CHECK (cause IN ('conversation', 'service_update')),
    processing_id UUID NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT friendship_level_transitions_changes_level CHECK (from_level <> to_level)
);

CREATE INDEX friendship_level_transitions_user_created_idx ON friendship_level_transitions (user_id, created_at);
