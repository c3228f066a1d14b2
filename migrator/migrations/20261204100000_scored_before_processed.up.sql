-- An event whose effect moved its user's level is 'scored' when that effect
-- commits, and becomes 'processed' only once the scorer has dropped the
-- user's cached candidates (computed for the old level). So a client that
-- reads 'processed' can no longer be served candidates of the old level, and
-- a scorer that crashes in between leaves a 'scored' event that the next
-- wake-up finishes. Clients see 'scored' as 'pending'.
ALTER TABLE conversation_events DROP CONSTRAINT conversation_events_status_check;
ALTER TABLE conversation_events ADD CONSTRAINT conversation_events_status_check
    CHECK (status IN ('pending', 'scored', 'processed', 'failed'));
