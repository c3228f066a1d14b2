-- Inactivity decay (`decay_after_days`, `decay_points_per_day`): a user who
-- has not talked for more than `decay_after_days` whole days loses
-- `decay_points_per_day` per further day, one history line (cause `decay`)
-- per day. decay_days_applied counts the days of decay applied since the last
-- interaction, on the user's row: friendship::APPLY_CHANGES adds one per decay
-- change and resets it on an interaction, and friendship::CLAIM_DECAY claims a
-- user only for a day not yet counted, so a day is applied once however many
-- scorers and ticks run.
ALTER TABLE friendship_status
    ADD COLUMN decay_days_applied INT4 NOT NULL DEFAULT 0 CHECK (decay_days_applied >= 0);

-- What the decay claim scans: users with points left, longest absent first.
CREATE INDEX friendship_status_decay_idx
    ON friendship_status (last_interaction_date)
    WHERE friendship_score > 0 AND last_interaction_date IS NOT NULL;

-- A third cause of score changes and level transitions.
ALTER TABLE friendship_score_history
    DROP CONSTRAINT friendship_score_history_cause_check,
    ADD CONSTRAINT friendship_score_history_cause_check
        CHECK (cause IN ('conversation', 'service_update', 'decay'));
ALTER TABLE friendship_level_transitions
    DROP CONSTRAINT friendship_level_transitions_cause_check,
    ADD CONSTRAINT friendship_level_transitions_cause_check
        CHECK (cause IN ('conversation', 'service_update', 'decay'));
