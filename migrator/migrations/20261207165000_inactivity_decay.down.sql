-- Refused (the constraints fail) while any history line or transition was
-- caused by decay: going down would have to forget why those scores moved.
ALTER TABLE friendship_level_transitions
    DROP CONSTRAINT friendship_level_transitions_cause_check,
    ADD CONSTRAINT friendship_level_transitions_cause_check
        CHECK (cause IN ('conversation', 'service_update'));
ALTER TABLE friendship_score_history
    DROP CONSTRAINT friendship_score_history_cause_check,
    ADD CONSTRAINT friendship_score_history_cause_check
        CHECK (cause IN ('conversation', 'service_update'));
DROP INDEX friendship_status_decay_idx;
ALTER TABLE friendship_status DROP COLUMN decay_days_applied;
