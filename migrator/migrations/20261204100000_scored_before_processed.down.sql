UPDATE conversation_events SET status = 'processed' WHERE status = 'scored';
ALTER TABLE conversation_events DROP CONSTRAINT conversation_events_status_check;
ALTER TABLE conversation_events ADD CONSTRAINT conversation_events_status_check
    CHECK (status IN ('pending', 'processed', 'failed'));
