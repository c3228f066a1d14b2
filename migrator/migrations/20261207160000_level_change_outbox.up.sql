-- Level changes published for other services (the Redis Stream
-- `level_changes_stream`), through an outbox: friendship::APPLY_CHANGES writes
-- a row here for each level transition, in the statement that records the
-- transition, so a change and its publication commit together. Scorer
-- wake-ups relay unpublished rows to the stream, oldest first, and mark them
-- (published_at); retention deletes published rows past
-- `event_retention_days`. The transition itself stays (it is the fact; this
-- is only its delivery), and an erased transition takes its row with it.
CREATE TABLE level_change_outbox (
    transition_id BIGINT PRIMARY KEY
        REFERENCES friendship_level_transitions (id) ON DELETE CASCADE,
    published_at TIMESTAMPTZ NULL
);

-- What the relay claims: the unpublished rows, oldest first, without reading
-- the published ones.
CREATE INDEX level_change_outbox_unpublished_idx
    ON level_change_outbox (transition_id) WHERE published_at IS NULL;
-- What retention prunes: published rows, oldest publication first.
CREATE INDEX level_change_outbox_published_idx
    ON level_change_outbox (published_at) WHERE published_at IS NOT NULL;

-- Transitions recorded before the stream existed are not announced now (a
-- consumer would take a months-old level-up for news): the stream starts
-- with the first transition after this migration.
